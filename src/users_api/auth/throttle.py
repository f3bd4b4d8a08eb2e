"""Login throttling, kept in PostgreSQL so every worker and replica sees one count.

The failures live in `login_failures`; `login.py` counts them under the account's
advisory lock. What is left here is the rule: how long to wait.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class ThrottleRules:
    per_account: int
    per_address: int
    window: timedelta


def seconds_to_wait(
    marks: Iterable[datetime | None], *, now: datetime, window: timedelta
) -> int | None:
    """Seconds until a login may be tried again, or None when it may be tried now.

    `marks` are when the limit-th newest failure (of the account, of the address)
    happened within the window; None where there were fewer. The newest mark decides.
    """
    blocked = [moment for moment in marks if moment is not None]
    if not blocked:
        return None
    wait = (max(blocked) + window - now).total_seconds()
    return max(1, math.ceil(wait))
