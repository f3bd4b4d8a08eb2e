"""users-api: an async user-management REST service."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("users-api")
except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
    __version__ = "0.0.0"
