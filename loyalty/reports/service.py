"""The figures every report shares, each one grouped query; never a walk over members or the journal in
Python. The console dashboard is assembled here; the full summary (`summary.py`) and the liability
(`liability.py`) build on the same queries.

Balances come from the ledger's cached account rows, never from summing the journal. Points moved are read
from postings on the program's accounts, in both directions: what left `issued` was issued (earns and
bonuses) and what came back to it was clawed back (refunds, reversals); what reached `redeemed` was
redeemed and what left it was restored (refunds of orders paid with points); what reached `expired`
expired (nothing leaves it); what left `adjusted` was added by staff and what reached it was removed.

Windows are cut into buckets by `periods.Buckets`; the queries filter on the indexed timestamp of each
table (the journal's `created_at` above all), so they read the window rather than the whole history.
Read-only: no writes here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import Select, case, func, select
from sqlalchemy.sql import ColumnElement, Subquery

from loyalty.errors import ValidationProblem
from loyalty.extensions import db
from loyalty.ledger.models import MEMBER_ACCOUNTS, PROGRAM_ACCOUNTS, Account, JournalTransaction, Posting
from loyalty.members.models import Member
from loyalty.reports.periods import Buckets, program_zone
from loyalty.tiers.models import MemberTier, Tier

MAX_DAYS = 90
# What a member does that makes them active: earning or spending points, not what happens to them.
ACTIVITY_KINDS = ("earn", "bonus", "redeem", "reward")
# (program account, posting sign) -> the flow it is: see the module's docstring.
FLOW_OF = {
    ("issued", -1): "issued", ("issued", 1): "clawed_back",
    ("redeemed", 1): "redeemed", ("redeemed", -1): "restored",
    ("expired", 1): "expired",
    ("adjusted", -1): "adjusted_added", ("adjusted", 1): "adjusted_removed",
}


@dataclass(frozen=True)
class Flows:
    """Points moved in one bucket, each figure gross and non-negative."""

    issued: int = 0
    clawed_back: int = 0
    redeemed: int = 0
    restored: int = 0
    expired: int = 0
    adjusted_added: int = 0
    adjusted_removed: int = 0

    @property
    def net_issued(self) -> int:
        return self.issued - self.clawed_back

    @property
    def net_redeemed(self) -> int:
        return self.redeemed - self.restored

    @property
    def adjusted_net(self) -> int:
        return self.adjusted_added - self.adjusted_removed

    def __add__(self, other: Flows) -> Flows:
        return Flows(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class DayPoints:
    day: date
    issued: int = 0
    redeemed: int = 0
    expired: int = 0


@dataclass(frozen=True)
class TierCount:
    code: str
    name: str
    rank: int
    members: int


@dataclass(frozen=True)
class Dashboard:
    since: datetime  # the first day's midnight (UTC); the window runs to the end of today
    days: tuple[DayPoints, ...]
    members: int  # everyone but erased accounts
    suspended: int
    active_members: int  # earned or redeemed within the window
    available: int
    pending: int
    held: int
    tiers: tuple[TierCount, ...]

    @property
    def liability(self) -> int:
        """Points the program owes: what members may spend now or once their return window closes."""
        return self.available + self.pending

    def total(self, flow: str) -> int:
        return sum(getattr(day, flow) for day in self.days)


def dashboard(now: datetime, days: int = 30) -> Dashboard:
    """The figures of the last `days` UTC days, today included."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise ValidationProblem(errors={"days": [f"Must be a whole number from 1 to {MAX_DAYS}."]})
    buckets = Buckets.utc_days(now.astimezone(UTC).date() - timedelta(days=days - 1), days)
    members, suspended = member_counts()
    balances = member_balances()
    flows = point_flows(buckets)
    return Dashboard(
        since=datetime.combine(buckets.items[0].start, time(), UTC),
        days=tuple(DayPoints(b.start, f.issued, f.redeemed, f.expired) for b, f in zip(buckets.items, flows,
                                                                                        strict=True)),
        members=members, suspended=suspended, active_members=active_members(buckets.whole())[0],
        available=balances["available"], pending=balances["pending"], held=balances["held"],
        tiers=tier_distribution(members),
    )


def program_timezone() -> ZoneInfo:
    """The zone the program's calendar days are in: PROGRAM_TIMEZONE, checked when the app starts."""
    return program_zone(current_app.config.get("PROGRAM_TIMEZONE", "UTC"))


# --- now -----------------------------------------------------------------------------------------------

def member_counts() -> tuple[int, int]:
    """Members (erased accounts are no longer members) and, of them, the suspended."""
    by_status = dict(db.session.execute(select(Member.status, func.count()).group_by(Member.status)).all())
    return by_status.get("active", 0) + by_status.get("suspended", 0), by_status.get("suspended", 0)


def member_balances() -> dict[str, int]:
    """Every member's available, pending and held points, summed from the cached account balances."""
    return balances_and_holders()[0]


def balances_and_holders() -> tuple[dict[str, int], dict[str, int]]:
    """Per kind of member account: the points held, and the members holding any. Only positive balances are
    read (member accounts are never negative, the database sees to it): one range of the index per kind."""
    rows = db.session.execute(
        select(Account.kind, func.sum(Account.balance), func.count())
        .where(Account.kind.in_(MEMBER_ACCOUNTS), Account.balance > 0).group_by(Account.kind)).all()
    found = {kind: (int(points), holders) for kind, points, holders in rows}
    return ({kind: found.get(kind, (0, 0))[0] for kind in MEMBER_ACCOUNTS},
            {kind: found.get(kind, (0, 0))[1] for kind in MEMBER_ACCOUNTS})


def tier_distribution(members: int) -> tuple[TierCount, ...]:
    """Members per tier, lowest rank first, out of `members` (erased accounts excluded). Members without a
    tier row are in the base (rank 0) tier."""
    tiers = list(db.session.scalars(select(Tier).order_by(Tier.rank)))
    if not tiers:
        return ()
    placed = dict(db.session.execute(
        select(MemberTier.tier_id, func.count())
        .join(Member, Member.id == MemberTier.member_id).where(Member.status != "erased")
        .group_by(MemberTier.tier_id)
    ).all())
    unplaced = members - sum(placed.values())
    return tuple(TierCount(t.code, t.name, t.rank, placed.get(t.id, 0) + (unplaced if t.rank == 0 else 0))
                 for t in tiers)


# --- per bucket ----------------------------------------------------------------------------------------

def in_buckets(query: Select, buckets: Buckets, at: ColumnElement) -> Subquery:
    """`query`'s rows whose `at` falls in the window, each with its bucket number as the column `bucket`.
    Outer queries group by that column (a CASE with bound values cannot be repeated in GROUP BY)."""
    return query.add_columns(buckets.index(at).label("bucket")).where(buckets.within(at)).subquery()


def spread(rows: Iterable[tuple[Any, ...]], buckets: Buckets, default: Any = 0) -> list[Any]:
    """(bucket, value) rows as a list with one value per bucket, `default` where a bucket has no row."""
    values = [default] * len(buckets)
    for bucket, value in rows:
        values[int(bucket)] = value
    return values


def point_flows(buckets: Buckets) -> tuple[Flows, ...]:
    """Points issued, clawed back, redeemed, restored, expired and adjusted in each bucket."""
    moved = in_buckets(
        select(Account.kind.label("kind"), Posting.amount.label("amount")).select_from(Posting)
        .join(JournalTransaction, JournalTransaction.id == Posting.transaction_id)
        .join(Account, Account.id == Posting.account_id).where(Account.kind.in_(PROGRAM_ACCOUNTS)),
        buckets, JournalTransaction.created_at)
    rows = db.session.execute(
        select(moved.c.bucket, moved.c.kind,
               func.sum(case((moved.c.amount > 0, moved.c.amount), else_=0)),
               func.sum(case((moved.c.amount < 0, -moved.c.amount), else_=0)))
        .group_by(moved.c.bucket, moved.c.kind)
    ).all()
    found: list[dict[str, int]] = [{} for _ in buckets.items]
    for bucket, kind, inflow, outflow in rows:
        for sign, points in ((1, inflow), (-1, outflow)):
            if (flow := FLOW_OF.get((kind, sign))) and points:
                found[int(bucket)][flow] = int(points)
    return tuple(Flows(**values) for values in found)


def active_members(buckets: Buckets) -> list[int]:
    """Members who earned or spent points in each bucket (erased since or not: it happened)."""
    acts = in_buckets(select(JournalTransaction.member_id.label("member_id"))
                      .where(JournalTransaction.kind.in_(ACTIVITY_KINDS)), buckets, JournalTransaction.created_at)
    return spread(db.session.execute(select(acts.c.bucket, func.count(func.distinct(acts.c.member_id)))
                                     .group_by(acts.c.bucket)).all(), buckets)
