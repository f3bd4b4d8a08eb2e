"""Summarise a `py-spy record --format raw` file: top frames by own and cumulative time.

    python bench/pyspy_top.py PROFILE.txt [-n 10]

Each line of the raw (collapsed) format is `frame;frame;...;leaf COUNT`. Stacks are split
into the event-loop thread (rooted at the `users-api` module, plus the greenlet stacks
SQLAlchemy's asyncio layer runs on that thread, which py-spy shows with their own root)
and worker threads (rooted at `Thread._bootstrap`). Idle workers (parked in `Queue.get`)
are counted apart. Own time counts the leaf frame; cumulative time counts every distinct
frame of a stack once per sample; start-up frames common to every sample (typer, the
CLI, uvicorn's runner) are left out of the cumulative ranking.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

LINE_NUMBER = re.compile(r":\d+\)$")
# Start-up frames under every event-loop sample: left out of the cumulative ranking.
TRUNK = re.compile(
    r"\((users-api|typer/|users_api/cli\.py|uvicorn/(main|server|_compat)\.py"
    r"|asyncio/runners\.py|threading\.py\)$)"
)


def frame_name(frame: str) -> str:
    """`function (path/to/pkg/file.py:123)` -> `function (pkg/file.py)`."""
    frame = LINE_NUMBER.sub(")", frame)
    name, _, where = frame.partition(" (")
    short = where.rstrip(")").split("site-packages/")[-1].split("/src/")[-1]
    return f"{name} ({short})" if where else name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("profile", type=Path)
    parser.add_argument("-n", type=int, default=10)
    args = parser.parse_args()
    groups: dict[str, tuple[Counter[str], Counter[str]]] = {
        "event-loop thread": (Counter(), Counter()),
        "worker threads (busy)": (Counter(), Counter()),
    }
    totals: Counter[str] = Counter()
    for line in args.profile.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_name(f) for f in stack.split(";") if f]
        if not frames:
            totals["no Python frame"] += count
            continue
        if frames[0].startswith("Thread._bootstrap"):
            if frames[-1].startswith("Condition.wait") and any(
                f.startswith("Queue.get") for f in frames
            ):
                totals["worker threads (idle in Queue.get)"] += count
                continue
            group = "worker threads (busy)"
        else:
            group = "event-loop thread"
        totals[group] += count
        own, cumulative = groups[group]
        own[frames[-1]] += count
        for name in set(frames):
            if not TRUNK.search(name) and not name.startswith("Thread._bootstrap"):
                cumulative[name] += count
    grand = sum(totals.values())
    print(f"{grand} samples: " + ", ".join(f"{k} {v / grand:.1%}" for k, v in totals.items()))
    for group, (own, cumulative) in groups.items():
        total = totals[group]
        if not total:
            continue
        for title, counter in (("own", own), ("cumulative", cumulative)):
            print(f"\n{group}: top {args.n} by {title} time (% of this thread group)")
            for name, count in counter.most_common(args.n):
                print(f"  {count / total:6.1%}  {name}")


if __name__ == "__main__":
    main()
