"""A node's sleep schedule: hours in which it takes no work ("mon-fri 09:00-18:00 off").

Pure functions over plain values: `parse_schedule` checks the text once (the node's option),
`resting` answers for a moment (the server, before it hands out a chunk).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RULE = re.compile(
    r"^\s*(?P<days>[a-z,\-*]+)\s+(?P<h1>\d{1,2}):(?P<m1>\d\d)\s*-\s*(?P<h2>\d{1,2}):(?P<m2>\d\d)"
    r"(?:\s+off)?\s*$"
)


@dataclass(frozen=True)
class RestRule:
    """On `days` (0 = Monday) from minute `start` to minute `end` of the day (past midnight
    when end <= start), the node rests."""

    days: frozenset[int]
    start: int
    end: int


def _days(text: str) -> frozenset[int]:
    if text in ("*", "daily", "every"):
        return frozenset(range(7))
    out: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            if a not in DAYS or b not in DAYS:
                raise ValueError(f"unknown day in {part!r} (use mon, tue, ... sun)")
            i, j = DAYS.index(a), DAYS.index(b)
            out.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
        elif part in DAYS:
            out.add(DAYS.index(part))
        else:
            raise ValueError(f"unknown day {part!r} (use mon, tue, ... sun, or daily)")
    return frozenset(out)


def parse_schedule(text: str) -> list[RestRule]:
    """Rules separated by ';', each 'DAYS HH:MM-HH:MM off'; ValueError with a sentence."""
    rules = []
    for raw in filter(None, (r.strip().lower() for r in text.split(";"))):
        m = _RULE.match(raw)
        if not m:
            raise ValueError(f"a schedule rule looks like 'mon-fri 09:00-18:00 off', not {raw!r}")
        h1, m1, h2, m2 = (int(m[k]) for k in ("h1", "m1", "h2", "m2"))
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
            raise ValueError(f"{raw!r} holds a time that is not one")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if start == end:
            raise ValueError(f"{raw!r} is an empty span of time")
        rules.append(RestRule(_days(m["days"]), start, end))
    return rules


def resting(rules: list[RestRule], moment: datetime) -> bool:
    """Whether a node with `rules` rests at `moment` (its local time)."""
    minute = moment.hour * 60 + moment.minute
    today, yesterday = moment.weekday(), (moment - timedelta(days=1)).weekday()
    for rule in rules:
        if rule.start < rule.end:
            if today in rule.days and rule.start <= minute < rule.end:
                return True
        elif (today in rule.days and minute >= rule.start) or (
            yesterday in rule.days and minute < rule.end
        ):
            return True
    return False


def node_rests(schedule: str, moment: datetime) -> bool:
    """Whether a node's sleep schedule (as it sent it) says it rests at `moment`; a schedule
    that does not parse never rests it (the node checks it before sending)."""
    if not schedule:
        return False
    try:
        return resting(parse_schedule(schedule), moment)
    except ValueError:
        return False
