"""Namespaces (the first key) of the transaction-scoped advisory locks we take."""

LOGIN_LOCK_CLASS = 1  # second key: hashtext(account key); serializes one account's logins
ADMIN_SET_LOCK_CLASS = 2  # second key: 0; serializes changes to the set of active admins
MIGRATIONS_LOCK_CLASS = 3  # second key: 0; one migration run at a time
IDENTITY_LOCK_CLASS = 4  # second key: 0; serializes changes of emails and usernames
SIGN_UP_LOCK_CLASS = 5  # second key: hashtext(client address); serializes its sign-ups' count
PASSWORD_RESET_LOCK_CLASS = 6  # second key: hashtext(client address); its reset requests' count
SIGN_IN_NAME_LOCK_CLASS = 7  # second key: hashtext(lower(name)); an email or username claimed
