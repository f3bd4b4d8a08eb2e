"""What protects accounts without touching the database: password hashing and policy,
signed access tokens, the signing key. `users` and `auth` both build on it."""
