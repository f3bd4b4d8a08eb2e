"""zxcvbn's strength estimate, in a tenth of its memory and with its cost bounded.

Imported the usual way, zxcvbn builds a dict of every word of its six ranked lists
(94,000 words: common passwords, English, names, surnames, film and TV) and keeps it
for the life of the process: ~11 MiB, a worker's whole margin under 100 MiB. Here each
list becomes a `RankedWords`: the words' hashes, sorted, with their ranks, and a bitmap
that answers "not a word" for almost every substring without a search (~1.4 MiB for
all six). zxcvbn reads a dictionary only through `word in d` and `d[word]`, so its
own matching, scoring and feedback run unchanged on them.

Its cost is bounded twice, as zxcvbn's maintained TypeScript port (zxcvbn-ts) also
bounds it, since zxcvbn is quadratic in the length and its l33t matcher tries every
combination of substitutions (736 for `%1+[<!47[<{(%3!!(580@2%+9|06$$7@`: 1.7 s):

- the first 100 combinations are tried (zxcvbn-ts's `l33tMaxSubstitutions`);
- the first `ESTIMATED_LENGTH` (32) characters are rated, as zxcvbn's authors advise
  for long input: a password is at least as hard to guess as its beginning, so a long
  password is refused only when its beginning is weak.

The worst input found then costs ~0.25 s of CPU here, a 32-character password from a
password manager ~15 ms, a passphrase 3-8 ms.

zxcvbn keeps the user inputs of the estimate under way in a module global: estimates
run one at a time (`_ONE_AT_A_TIME`).
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.util
import sys
import threading
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

# zxcvbn's scores run from 0 to 4; 3 is "safely unguessable: moderate protection from an
# offline slow-hash scenario" (at least 10^8 guesses).
MIN_SCORE = 3
ESTIMATED_LENGTH = 32
L33T_SUBSTITUTIONS = 100
COMMON_PASSWORDS_COUNT = 10_000

_ONE_AT_A_TIME = threading.Lock()
_BITS_PER_WORD = 16  # two probes at 16 bits a word: ~1.4 % of misses reach the search


class HashFilter:
    """Whether a hash may be among those added: two bits a hash, in a bitmap of
    `_BITS_PER_WORD` bits per hash. Never a false "no"; ~1.4 % false "maybe"."""

    __slots__ = ("_bits", "_mask")

    def __init__(self, count: int) -> None:
        size = 8
        while size < _BITS_PER_WORD * count:
            size *= 2
        self._mask = size - 1
        self._bits = bytearray(size // 8)

    def add(self, values: Iterable[int]) -> None:
        mask, bits = self._mask, self._bits
        for value in values:
            for probe in (value & mask, (value >> 32) & mask):
                bits[probe >> 3] |= 1 << (probe & 7)

    def may_hold(self, value: int) -> bool:
        mask, bits = self._mask, self._bits
        low, high = value & mask, (value >> 32) & mask
        return bool(bits[low >> 3] >> (low & 7) & 1 and bits[high >> 3] >> (high & 7) & 1)


class RankedWords:
    """One ranked word list as zxcvbn reads it: `word in words`, `words[word]` (its rank,
    from 1). Words are told apart by their hash (64 bits: a false match is a 1 in 10^14
    chance over a whole estimate, and would only make a password look weaker); a
    `HashFilter` answers "not a word" for almost every substring without a search."""

    __slots__ = ("_count", "_filter", "_hashes", "_ranks")

    def __init__(self, ranked: Iterable[str]) -> None:
        # What is kept is made first, and grows in place: the words, and the numbers made
        # to sort them, live and die after it, so the heap they took empties whole and
        # goes back to the system (objects kept in its midst would hold it).
        self._hashes = array("q")
        self._ranks = array("I")
        hashes = array("q", map(hash, ranked))  # one word at a time: none are kept
        order = sorted(range(len(hashes)), key=hashes.__getitem__)
        self._hashes.extend(map(hashes.__getitem__, order))
        self._ranks.extend(index + 1 for index in order)
        del order
        self._count = len(hashes)
        self._filter = HashFilter(self._count)
        self._filter.add(hashes)

    def _index(self, word: object) -> int:
        """Where the word's hash is, or -1."""
        value = hash(word)
        if not self._filter.may_hold(value):
            return -1
        index = bisect_left(self._hashes, value)
        return index if index < self._count and self._hashes[index] == value else -1

    def __contains__(self, word: object) -> bool:
        return self._index(word) >= 0

    def __getitem__(self, word: str) -> int:
        index = self._index(word)
        if index < 0:
            raise KeyError(word)
        return self._ranks[index]

    def rank(self, word: str) -> int | None:
        index = self._index(word)
        return None if index < 0 else self._ranks[index]

    get = rank  # as a dict's, for `_dictionary_match`

    def hashes(self) -> Sequence[int]:
        return self._hashes


def any_word(lists: Sequence[RankedWords]) -> HashFilter:
    """Whether a word's hash may be in any of `lists`: one filter over all of them.

    zxcvbn looks every substring of a password up in each of its six lists in turn, ~5,000
    lookups an estimate, ~5 ms of a sign-up; nearly every substring is in none, which one
    hash and two bit tests tell here (a false "maybe" only costs the lookups).
    """
    found = HashFilter(sum(len(words.hashes()) for words in lists))
    for words in lists:
        found.add(words.hashes())
    return found


@dataclass(frozen=True, slots=True)
class Estimate:
    """zxcvbn's verdict: its score (0-4) and, below 3, its feedback."""

    score: int
    warning: str
    suggestions: tuple[str, ...]


def _ranked_lists() -> Iterator[tuple[str, Iterable[str]]]:
    """zxcvbn's ranked lists, each word by word, from `zxcvbn/frequency_lists.py`.

    The module is read, not run: run, it makes its 94,000 words at once (and, imported
    through the package, `zxcvbn/__init__.py` would import `matching`, which builds its
    dicts of every list). Each list is written there as one comma-separated string; the
    words are cut from it one at a time, and each is gone once hashed.
    """
    name = "zxcvbn.frequency_lists"
    package = importlib.util.find_spec("zxcvbn")  # finds it without running __init__.py
    folders = package.submodule_search_locations if package else None
    spec = importlib.machinery.PathFinder.find_spec(name, folders) if folders else None
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    for statement in tree.body:
        match statement:
            case ast.Assign(targets=[ast.Name(id="FREQUENCY_LISTS")], value=ast.Dict() as lists):
                for key, value in zip(lists.keys, lists.values, strict=True):
                    match key, value:
                        case (
                            ast.Constant(value=str(list_name)),
                            ast.Call(
                                func=ast.Attribute(value=ast.Constant(str(text)), attr="split"),
                                args=[ast.Constant(",")],
                            ),
                        ):
                            yield list_name, _split(text)
                        case _:
                            raise ValueError(f"{spec.origin}: a list written another way")
                return
    raise ValueError(f"{spec.origin}: no FREQUENCY_LISTS")


def _split(text: str) -> Iterator[str]:
    """`text.split(",")`, one piece at a time."""
    start = 0
    while (end := text.find(",", start)) >= 0:
        yield text[start:end]
        start = end + 1
    yield text[start:]


@cache
def _zxcvbn() -> tuple[Callable[..., dict[str, Any]], dict[str, RankedWords]]:
    """zxcvbn's estimate, over compact dictionaries; built once per process."""
    ranked = {name: RankedWords(words) for name, words in _ranked_lists()}
    if "zxcvbn.matching" not in sys.modules:
        # `matching` builds its dicts from this module at import: give it none to build.
        stub = ModuleType("zxcvbn.frequency_lists")
        stub.FREQUENCY_LISTS = {}  # type: ignore[attr-defined]  # a module's global
        sys.modules["zxcvbn.frequency_lists"] = stub
    import zxcvbn
    from zxcvbn import matching

    # Every matcher's default argument is this very dict: fill it in place.
    matching.RANKED_DICTIONARIES.clear()
    matching.RANKED_DICTIONARIES.update(ranked)
    if not hasattr(matching.dictionary_match, "zxcvbn_own"):
        matching.dictionary_match = _fast_dictionary_match(
            matching.dictionary_match, any_word(list(ranked.values())), matching.RANKED_DICTIONARIES
        )
    enumerate_all: Callable[[Any], list[Any]] = matching.enumerate_l33t_subs
    if not getattr(enumerate_all, "capped", False):

        def enumerate_some(table: Any) -> list[Any]:
            return enumerate_all(table)[:L33T_SUBSTITUTIONS]

        enumerate_some.capped = True  # type: ignore[attr-defined]  # once per process
        matching.enumerate_l33t_subs = enumerate_some
    estimate: Callable[..., dict[str, Any]] = zxcvbn.zxcvbn
    return estimate, ranked


def _fast_dictionary_match(
    own: Callable[..., list[dict[str, Any]]], in_any: HashFilter, defaults: dict[str, Any]
) -> Callable[..., list[dict[str, Any]]]:
    """zxcvbn's `dictionary_match` (`own`), with its answer unchanged: the same matches in
    the same order (a test holds the two side by side), but each substring is hashed and
    tested against `in_any` once, and looked up in the compact lists only when it may be
    in one. The user inputs' list is a plain dict, looked up always, as zxcvbn does."""

    def dictionary_match(
        password: str, _ranked_dictionaries: dict[str, Any] = defaults
    ) -> list[dict[str, Any]]:
        dictionaries = list(_ranked_dictionaries.items())
        plain = [
            (name, words) for name, words in dictionaries if not isinstance(words, RankedWords)
        ]
        may_hold = in_any.may_hold
        lower = password.lower()
        length = len(password)
        matches = []
        for i in range(length):
            for j in range(i, length):
                word = lower[i : j + 1]
                for name, words in dictionaries if may_hold(hash(word)) else plain:
                    rank = words.get(word)
                    if rank is not None:
                        matches.append(
                            {
                                "pattern": "dictionary",
                                "i": i,
                                "j": j,
                                "token": password[i : j + 1],
                                "matched_word": word,
                                "rank": rank,
                                "dictionary_name": name,
                                "reversed": False,
                                "l33t": False,
                            }
                        )
        return sorted(matches, key=lambda match: (match["i"], match["j"]))

    dictionary_match.zxcvbn_own = own  # type: ignore[attr-defined]  # for the test, and once
    return dictionary_match


def load() -> None:
    """Build the dictionaries now (at start-up), not during the first request."""
    _zxcvbn()


def common_rank(lowered: str) -> int | None:
    """The rank of a lower-cased password among zxcvbn's common passwords, or None."""
    return _zxcvbn()[1]["passwords"].rank(lowered)


def is_common(lowered: str) -> bool:
    """One of the `COMMON_PASSWORDS_COUNT` most common passwords (lower-cased)."""
    rank = common_rank(lowered)
    return rank is not None and rank <= COMMON_PASSWORDS_COUNT


def estimate(password: str, *, user_inputs: Sequence[str]) -> Estimate:
    """zxcvbn's score and feedback for the password's first `ESTIMATED_LENGTH` characters,
    with `user_inputs` (the email, the username) counted as the most guessable words.

    CPU-bound, in pure Python (it holds the GIL): run it off the event loop.
    """
    zxcvbn, _ = _zxcvbn()
    with _ONE_AT_A_TIME:
        result = zxcvbn(
            password[:ESTIMATED_LENGTH],
            user_inputs=list(user_inputs),
            max_length=ESTIMATED_LENGTH,
        )
    feedback = result["feedback"]
    return Estimate(
        score=int(result["score"]),
        warning=str(feedback["warning"]),
        suggestions=tuple(str(text) for text in feedback["suggestions"]),
    )
