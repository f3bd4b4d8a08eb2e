"""The failed-login throttle: one count per account and per client address, in PostgreSQL.

Shared by everything that checks a password for someone who claims an account: the
password grant (`auth`) and the `current_password` of a password change (`users`).
It depends on `db` alone, so both may use it without `users` importing `auth`.
"""
