"""TOTP second factor: enrolment, recovery codes, the code check of the two-step login."""
