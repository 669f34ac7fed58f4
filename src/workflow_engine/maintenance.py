"""The maintenance window: a daily span of wall-clock time (in a time zone) during which
schedule ticks are recorded as ``skipped`` instead of run (the seed's
``shouldSkipScheduledTask``)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_SPAN = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ``ValueError`` when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    start: time
    end: time
    tz: ZoneInfo

    @classmethod
    def parse(cls, text: str, tz: str = "UTC") -> MaintenanceWindow:
        """``"22:00-23:30"``; a window may cross midnight (``"23:00-01:00"``)."""
        match = _SPAN.match(text)
        if match is None:
            raise ValueError(f"maintenance window {text!r} is not HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
            raise ValueError(f"maintenance window {text!r} has an invalid time")
        return cls(time(h1, m1), time(h2, m2), zone(tz))

    def contains(self, moment: datetime) -> bool:
        """Whether ``moment`` (timezone-aware) falls in the window (start included, end not)."""
        local = moment.astimezone(self.tz).time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.tz.key}"
