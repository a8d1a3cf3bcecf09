"""Report windows cut into buckets (days, weeks, months) of the program's calendar.

A bucket is a range of local calendar dates; its bounds are the UTC instants of their local midnights,
worked out here with `zoneinfo` so daylight saving time is right on every database (SQLite knows no time
zones, and PostgreSQL's own zone database could differ from Python's). The database only compares a
timestamp with those instants: `Buckets.index` is a balanced CASE that names a row's bucket in about
log2(buckets) comparisons, so every figure is one grouped query whatever the period, and distinct counts
(members active in a week) are exact per bucket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import and_, case, literal_column
from sqlalchemy.sql import ColumnElement

PERIODS = ("day", "week", "month")
# A leap year: a year of days, or a year of weeks or months, in one report.
MAX_DAYS = 366
# Dates outside these years are refused: nobody reports on them, and date arithmetic stays in range.
FIRST_DATE, LAST_DATE = date(2000, 1, 1), date(2100, 12, 31)


def program_zone(name: object) -> ZoneInfo:
    """The IANA time zone called `name` (PROGRAM_TIMEZONE); ValueError when there is none."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"PROGRAM_TIMEZONE must be an IANA time zone name such as 'Europe/Paris', not {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"PROGRAM_TIMEZONE {name!r} is not an IANA time zone name such as 'Europe/Paris'") \
            from None


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant a local calendar day begins. Where clocks skip midnight, the day begins when
    they jump, which is what zoneinfo answers for the skipped time."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class Bucket:
    start: date  # the first local day in it
    end: date  # the first local day after it
    starts_at: datetime  # UTC
    ends_at: datetime  # UTC


@dataclass(frozen=True)
class Buckets:
    """Consecutive buckets covering [starts_at, ends_at)."""

    items: tuple[Bucket, ...]

    @classmethod
    def calendar(cls, start: date, end: date, period: str, zone: ZoneInfo) -> Buckets:
        """Local days, weeks (Monday first) or months from `start` to `end` (exclusive), the first and
        last clipped to the window."""
        if period not in PERIODS:
            raise ValueError(f"period must be one of {PERIODS}")
        if end <= start:
            raise ValueError("end must be after start")
        starts = [start]
        while (following := _next_start(starts[-1], period)) < end:
            starts.append(following)
        edges = [*starts, end]
        instants = [local_midnight(day, zone) for day in edges]
        return cls(tuple(Bucket(edges[i], edges[i + 1], instants[i], instants[i + 1]) for i in range(len(starts))))

    @classmethod
    def utc_days(cls, first: date, count: int) -> Buckets:
        return cls.calendar(first, first + timedelta(days=count), "day", ZoneInfo("UTC"))

    @property
    def starts_at(self) -> datetime:
        return self.items[0].starts_at

    @property
    def ends_at(self) -> datetime:
        return self.items[-1].ends_at

    def whole(self) -> Buckets:
        """The whole window as one bucket: for totals that cannot be summed from buckets (distinct counts)."""
        first, last = self.items[0], self.items[-1]
        return Buckets((Bucket(first.start, last.end, first.starts_at, last.ends_at),))

    def within(self, column: ColumnElement) -> ColumnElement[bool]:
        """Whether a timestamp falls in the window: a range an index on the column answers."""
        return and_(column >= self.starts_at, column < self.ends_at)

    def index(self, column: ColumnElement) -> ColumnElement[int]:
        """The bucket (0, 1, ...) a timestamp within the window falls in."""
        return _bucket_case(column, [bucket.starts_at for bucket in self.items[1:]], 0)

    def __len__(self) -> int:
        return len(self.items)


def _next_start(day: date, period: str) -> date:
    if period == "day":
        return day + timedelta(days=1)
    if period == "week":
        return day + timedelta(days=7 - day.weekday())
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def _bucket_case(column: ColumnElement, boundaries: Sequence[datetime], first: int) -> ColumnElement[int]:
    """How many of `boundaries` (sorted) are at or before the timestamp, plus `first`: a binary search
    written as nested CASEs. Bucket numbers are our own integers, so they are written into the SQL."""
    if not boundaries:
        return literal_column(str(int(first)))
    middle = len(boundaries) // 2
    return case((column < boundaries[middle], _bucket_case(column, boundaries[:middle], first)),
                else_=_bucket_case(column, boundaries[middle + 1:], first + middle + 1))
