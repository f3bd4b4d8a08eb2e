"""Entity tags: a user's `version` is its ETag, written as a strong tag `"7"`."""

from __future__ import annotations

import re

# RFC 9110 entity-tag: [W/] DQUOTE etagc DQUOTE. Bare digits are tolerated (clients that
# echo `version` unquoted mean the same); an unbalanced quote is not a tag at all.
_TAG = re.compile(r'\s*(W/)?(?:"(\d{1,18})"|(\d{1,18}))\s*')


def format_etag(version: int) -> str:
    return f'"{version}"'


def _versions(header: str, *, weak: bool) -> frozenset[int]:
    """The versions `header` names; with `weak=False` a `W/` tag names none (RFC 9110 13.1.1)."""
    found: set[int] = set()
    for part in header.split(","):
        match = _TAG.fullmatch(part)
        if match and (weak or not match.group(1)):
            found.add(int(match.group(2) or match.group(3)))
    return frozenset(found)


def parse_if_match(header: str | None, *, weak: bool = False) -> frozenset[int] | None:
    """None means unconditional (no header, or `*`); an unparsable tag matches nothing.
    `weak`: `W/` tags count too (SCIM's `meta.version` is one, RFC 7644 3.14)."""
    if header is None or header.strip() == "*":
        return None
    return _versions(header, weak=weak)


def if_none_match_hits(header: str | None, version: int) -> bool:
    if header is None:
        return False
    return header.strip() == "*" or version in _versions(header, weak=True)
