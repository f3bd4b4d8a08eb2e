"""Imports that leave out what a library would load for features this service never uses.

Three libraries import optional dependencies at import time whenever they are installed:
structlog imports Rich (and Pygments) to draw tracebacks in colour and greenlet for its
deprecated thread-locals; httpx imports Rich and Pygments for its command-line client;
PyJWT imports `cryptography` for the RSA and EC algorithms. The service writes
plain-text tracebacks, sends webhooks without a terminal and signs HS256 only, yet all
are installed (Typer brings Rich, SQLAlchemy's asyncio layer greenlet; the second
factor's secrets are sealed with `cryptography`): ~4, 1.6 and 7 MiB of every worker's
memory, measured. Imported inside `leaving_out`, such a library finds them "not
installed"; afterwards they import as usual for whoever needs them (`security/mfa.py`
loads `cryptography` at its first use).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def leaving_out(*names: str) -> Iterator[None]:
    """While the block runs, `import name` fails for each of `names` not yet imported."""
    hidden = [name for name in names if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # "not installed", by design
    try:
        yield
    finally:
        for name in hidden:
            if sys.modules.get(name, ...) is None:
                del sys.modules[name]
