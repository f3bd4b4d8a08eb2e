"""Entity tags: a user's `version` is its ETag, written as a strong tag `"7"`."""

from __future__ import annotations

import re

_TAG = re.compile(r'\s*(?:W/)?"?([^",\s]*)"?\s*')


def format_etag(version: int) -> str:
    return f'"{version}"'


def _versions(header: str) -> frozenset[int]:
    found: set[int] = set()
    for part in header.split(","):
        match = _TAG.fullmatch(part)
        if match and match.group(1).isdigit() and len(match.group(1)) < 19:
            found.add(int(match.group(1)))
    return frozenset(found)


def parse_if_match(header: str | None) -> frozenset[int] | None:
    """None means unconditional (no header, or `*`); an unparsable tag matches nothing."""
    if header is None or header.strip() == "*":
        return None
    return _versions(header)


def if_none_match_hits(header: str | None, version: int) -> bool:
    if header is None:
        return False
    return header.strip() == "*" or version in _versions(header)
