"""TOTP (RFC 6238: SHA-1, 6 digits, 30 s steps, with pyotp), recovery codes, and the box
that keeps TOTP secrets encrypted at rest. No database, no HTTP.

The box's key is derived from SECRET_KEY with HKDF (SHA-256, its own `info`, so it is
no other use's key); each secret is sealed with AES-GCM under a fresh nonce, with the
user's id as associated data, so a sealed secret copied to another user does not open.
A rotation of SECRET_KEY keeps the old key as `MFA_PREVIOUS_SECRET_KEY`: sealed secrets
still open, and each is sealed again under the new key when it is next used.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyotp

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

STEP_SECONDS = 30
DIGITS = 6
# A code is accepted for the step before and after the current one (clock drift).
DRIFT_STEPS = 1
ISSUER = "users-api"
RECOVERY_CODES = 10
_VERSION = b"\x01"  # the sealing's layout: version, nonce (12 bytes), ciphertext and tag
_NONCE_BYTES = 12
_KEY_INFO = b"users-api mfa totp secrets v1"


class SecretBoxError(RuntimeError):
    """A sealed secret opens under none of the keys (SECRET_KEY changed, no previous)."""


def _derived(key: bytes, info: bytes) -> AESGCM:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    material = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(key)
    return AESGCM(material)


class SecretBox:
    """Seals with the current key; opens with it or any previous one.

    The keys are derived at the first use: `cryptography` takes 7 MiB of a worker's
    memory, and only a worker that handles a second factor needs it (`lean.py`).
    `info` makes the key one use's own (TOTP secrets, webhook signing secrets).
    """

    def __init__(
        self, key: bytes, previous: Sequence[bytes] = (), *, info: bytes = _KEY_INFO
    ) -> None:
        self._keys = [key, *previous]
        self._info = info
        self._boxes: list[AESGCM] = []

    def _derived_boxes(self) -> list[AESGCM]:
        """The current key's box first, then the previous keys'."""
        if not self._boxes:
            self._boxes = [_derived(key, self._info) for key in self._keys]
        return self._boxes

    def seal(self, secret: str, user_id: uuid.UUID) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._derived_boxes()[0].encrypt(nonce, secret.encode(), user_id.bytes)
        return _VERSION + nonce + sealed

    def open(self, sealed: bytes, user_id: uuid.UUID) -> tuple[str, bool]:
        """The secret, and whether it was sealed under the current key (else: seal it
        again)."""
        if sealed[:1] != _VERSION:
            raise SecretBoxError("unknown sealing")
        from cryptography.exceptions import InvalidTag

        nonce, body = sealed[1 : 1 + _NONCE_BYTES], sealed[1 + _NONCE_BYTES :]
        for index, box in enumerate(self._derived_boxes()):
            try:
                return box.decrypt(nonce, body, user_id.bytes).decode(), index == 0
            except InvalidTag:
                continue
        raise SecretBoxError("the sealed secret opens under no key")


def new_secret() -> str:
    """160 random bits in base32, as RFC 4226 recommends for SHA-1."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str) -> str:
    """The `otpauth://totp/...` URI an authenticator app reads (as a QR code)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account, issuer_name=ISSUER
    )


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def matching_step(
    secret: str, code: str, *, after: int | None, now: float | None = None
) -> int | None:
    """The time step (within ±DRIFT_STEPS of now, and later than `after`) whose code
    `code` is; None when there is none. Compared in constant time."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    step = current_step(now)
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if after is not None and candidate <= after:
            continue
        if hmac.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


@dataclass(frozen=True, slots=True)
class RecoveryCodes:
    """Codes as shown once to the user, and their hashes, as stored."""

    codes: list[str]
    hashes: list[str]


_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"  # 32 symbols, no 0/o, 1/l: 5 bits each


def new_recovery_codes(count: int = RECOVERY_CODES) -> RecoveryCodes:
    """`count` codes of 16 symbols (80 random bits), written `xxxx-xxxx-xxxx-xxxx`."""
    codes = []
    for _ in range(count):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(16))
        codes.append("-".join(raw[i : i + 4] for i in range(0, 16, 4)))
    return RecoveryCodes(codes=codes, hashes=[hash_recovery_code(code) for code in codes])


def hash_recovery_code(code: str) -> str:
    """SHA-256 of the code as typed, without dashes, spaces or case: enough for 80
    random bits (nothing to guess offline)."""
    normal = "".join(code.split()).replace("-", "").lower()
    return hashlib.sha256(normal.encode("utf-8", "surrogatepass")).hexdigest()
