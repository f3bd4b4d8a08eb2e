"""The token-signing key: from SECRET_KEY, or generated once into the data folder."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from users_api.config import Settings

SECRET_FILE = "secret_key"  # noqa: S105  # a file name, not a secret
MIN_BYTES = 32


class SecretKeyError(RuntimeError):
    """The stored key is unreadable or too short; the message names the file."""


def resolve_secret_key(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    return _stored_key(settings.data_dir / SECRET_FILE)


def _stored_key(path: Path) -> bytes:
    """Read the key, creating it first (mode 0600) if no process has yet.

    The key is written whole to a file of this process's own, which is then linked to
    `path`: a link fails if `path` exists, so several workers starting at once agree on
    one key, and none ever reads a file another has created but not yet written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        draft = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as file:
                file.write(secrets.token_urlsafe(48))
            with contextlib.suppress(FileExistsError):  # another process's came first
                os.link(draft, path)
        finally:
            draft.unlink(missing_ok=True)
    try:
        key = path.read_bytes().strip()
    except OSError as exc:
        raise SecretKeyError(f"cannot read the secret key file {path}: {exc}") from exc
    if len(key) < MIN_BYTES:
        raise SecretKeyError(f"the secret key in {path} is shorter than {MIN_BYTES} bytes")
    return key
