"""Examples of the MFA bodies for the OpenAPI document (see `users/examples.py`); the
secret and codes are made up, in the shape the service makes them."""

from __future__ import annotations

from typing import Any

from users_api.users.examples import PASSWORD

CURRENT_PASSWORD: dict[str, Any] = {"current_password": PASSWORD}
CODE: dict[str, Any] = {"code": "492039"}
PASSWORD_AND_CODE: dict[str, Any] = {"current_password": PASSWORD, "code": "492039"}
ENROLMENT: dict[str, Any] = {
    "secret": "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP",
    "otpauth_uri": "otpauth://totp/users-api:ada%40example.com"
    "?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=users-api",
}
RECOVERY_CODES: dict[str, Any] = {
    "recovery_codes": [f"k7qm-{n}x2d-9fhp-c4w{n}" for n in range(2, 10)]
    + ["a3bc-defg-hjk2-mn34", "pq5r-stuv-wxy6-z789"]
}
