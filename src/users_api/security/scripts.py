"""Mixed-script detection (Unicode UTS #39, section 5.1), for look-alike addresses.

`admin` with a Cyrillic a (U+0430) reads as `admin`: a string whose letters come from more
than one script is how such look-alikes are made. UTS #39 calls a string single-script
when some script is shared by every character: each character's Script_Extensions,
with Common and Inherited characters (digits, punctuation, most combining marks)
fitting any script, and Han, Hiragana, Katakana, Hangul and Bopomofo augmented with
the writing systems that combine them (Japanese, Korean, Han with Bopomofo), so
a Japanese name in Han and Hiragana is one script and that `admin` is two.

The Unicode data comes from fontTools (`script_extension`), imported on the first
string that is not ASCII: an ASCII string is Latin and Common alone, always one script,
and most addresses are ASCII, so most workers never pay the ~1.4 MiB the tables take.
"""

from __future__ import annotations

from collections.abc import Set
from functools import cache
from types import ModuleType

_ANY = frozenset({"Zyyy", "Zinh"})  # Common, Inherited: fit every script
# UTS #39 §5.1: the augmented script sets.
_AUGMENTED = {
    "Hani": frozenset({"Hani", "Hanb", "Jpan", "Kore"}),
    "Hira": frozenset({"Hira", "Jpan"}),
    "Kana": frozenset({"Kana", "Jpan"}),
    "Hang": frozenset({"Hang", "Kore"}),
    "Bopo": frozenset({"Bopo", "Hanb"}),
}


@cache
def _unicode_data() -> ModuleType:
    from fontTools import unicodedata  # untyped: script_extension(str) -> set[str]

    module: ModuleType = unicodedata
    return module


def _augmented(scripts: Set[str]) -> frozenset[str]:
    augmented = set(scripts)
    for script in scripts:
        augmented |= _AUGMENTED.get(script, frozenset())
    return frozenset(augmented)


def mixed_scripts(text: str) -> list[str]:
    """The names of the scripts `text` mixes, or [] when it is single-script."""
    if text.isascii():
        return []
    data = _unicode_data()
    resolved: frozenset[str] | None = None  # None: every script so far
    named: dict[str, None] = {}  # each character's own script, in order, to name them
    for char in dict.fromkeys(text):
        extensions = data.script_extension(char)
        if extensions <= _ANY:
            continue
        script = data.script(char)
        named.update(dict.fromkeys(sorted(extensions) if script in _ANY else (script,)))
        augmented = _augmented(extensions)
        resolved = augmented if resolved is None else resolved & augmented
    if resolved is None or resolved:
        return []
    return [data.script_name(code, code) for code in named]
