"""Summarise a `py-spy record --format raw` file: top frames by own and cumulative time.

    python bench/pyspy_top.py PROFILE.txt [-n 10]

Each line of the raw (collapsed) format is `frame;frame;...;leaf COUNT`. Own time counts
the leaf frame; cumulative time counts every distinct frame on the stack once per sample.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

LINE_NUMBER = re.compile(r":\d+\)$")


def frame_name(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"; line numbers split hairs
    frame = LINE_NUMBER.sub(")", frame)
    name, _, where = frame.partition(" (")
    short = where.rstrip(")").split("site-packages/")[-1].split("/src/")[-1]
    return f"{name} ({short})" if where else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("-n", type=int, default=10)
    args = parser.parse_args()
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            cumulative[name] += count
    print(f"{total} samples")
    for title, counter in (("own", own), ("cumulative", cumulative)):
        print(f"\ntop {args.n} by {title} time:")
        for name, count in counter.most_common(args.n):
            print(f"  {count / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
