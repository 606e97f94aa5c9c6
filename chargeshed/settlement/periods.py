"""Statement periods: closed ranges of the compound's local calendar days."""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from flask_babel import lazy_gettext as _l

from chargeshed.timeutil import LOCAL_TZ, to_local

MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
# Statements cover this century: outside it a date is a typing mistake.
FIRST_YEAR, LAST_YEAR = 2000, 2099


class SettlementRefused(Exception):
    """A settlement request that must not happen; `message` says why, for the person who asked."""

    def __init__(self, message):
        super().__init__(str(message))
        self.message = message


@dataclass(frozen=True)
class Period:
    """Local calendar days from `start` to `end`, both included."""

    start: date
    end: date

    def __post_init__(self):
        if self.end < self.start:
            raise SettlementRefused(_l("The period ends before it starts."))

    @classmethod
    def month(cls, text: str) -> Period:
        """The calendar month written as YYYY-MM."""
        found = MONTH_RE.match((text or "").strip())
        year, month = (int(found.group(1)), int(found.group(2))) if found else (0, 0)
        if not (1 <= month <= 12 and FIRST_YEAR <= year <= LAST_YEAR):
            raise SettlementRefused(_l("Write the month as YYYY-MM, for example 2026-10."))
        return cls(date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1]))

    @property
    def is_month(self) -> bool:
        """True when the period is exactly one calendar month."""
        last = calendar.monthrange(self.start.year, self.start.month)[1]
        return self.start.day == 1 and self.end == self.start.replace(day=last)

    @property
    def label(self) -> str:
        """2026-10 for a month, else 2026-10-01 – 2026-10-15."""
        if self.is_month:
            return self.start.strftime("%Y-%m")
        return f"{self.start.isoformat()} – {self.end.isoformat()}"

    @property
    def key(self) -> str:
        """The period in URLs and file names: 2026-10, or 2026-10-01_2026-10-15."""
        return self.start.strftime("%Y-%m") if self.is_month else f"{self.start}_{self.end}"

    def days(self) -> Iterator[date]:
        """Every day of the period, in order."""
        day = self.start
        while day <= self.end:
            yield day
            day += timedelta(days=1)

    def utc_bounds(self) -> tuple[datetime, datetime]:
        """The period as naive-UTC [first instant, instant after the last day), like stored times."""
        return local_midnight_utc(self.start), local_midnight_utc(self.end + timedelta(days=1))

    def contains(self, day: date) -> bool:
        """True when `day` is one of the period's days."""
        return self.start <= day <= self.end

    def is_closed(self, now: datetime) -> bool:
        """True once the last day is over in the compound's time zone."""
        return self.end < to_local(now).date()


def local_midnight_utc(day: date) -> datetime:
    """The start of a local calendar day as naive UTC."""
    local = datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ)
    return local.astimezone(UTC).replace(tzinfo=None)


def local_offset_hours() -> int:
    """The compound's offset from UTC in whole hours (China has one offset all year, +8)."""
    return int(datetime(2000, 1, 1, tzinfo=LOCAL_TZ).utcoffset().total_seconds() // 3600)


def ensure_closed(period: Period, now: datetime) -> None:
    """Refuse a statement for a period that is not over yet."""
    if not period.is_closed(now):
        raise SettlementRefused(
            _l(
                "The period %(period)s is not finished yet: a statement can be made from %(day)s.",
                period=period.label,
                day=(period.end + timedelta(days=1)).isoformat(),
            )
        )


def parse_period(month: str | None = None, start: str | None = None, end: str | None = None) -> Period:
    """A period from a month (YYYY-MM) or from two ISO dates; refuses anything else clearly."""
    if month:
        return Period.month(month)
    try:
        first, last = date.fromisoformat(start or ""), date.fromisoformat(end or "")
    except ValueError:
        raise SettlementRefused(_l("Choose a month, or a first and a last day (YYYY-MM-DD).")) from None
    if not (FIRST_YEAR <= first.year <= LAST_YEAR and FIRST_YEAR <= last.year <= LAST_YEAR):
        raise SettlementRefused(
            _l("Choose days between the years %(first)d and %(last)d.", first=FIRST_YEAR, last=LAST_YEAR)
        )
    if (last - first).days > 366:
        raise SettlementRefused(_l("A statement covers at most one year."))
    return Period(first, last)


def parse_key(key: str) -> Period:
    """The period from its `key` (2026-10 or 2026-10-01_2026-10-15)."""
    if "_" in key:
        start, _sep, end = key.partition("_")
        return parse_period(start=start, end=end)
    return Period.month(key)
