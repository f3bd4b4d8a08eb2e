"""Accounts over mail: password reset and email verification, with single-use tokens."""
