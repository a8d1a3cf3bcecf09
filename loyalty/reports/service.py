"""The dashboard's figures, each one grouped query; never a walk over members in Python.

Balances come from the ledger's cached account rows, never from summing the journal. Points moved per day
are read from postings: issued is what left the program's `issued` accounts (earns and bonuses), redeemed and
expired what reached the `redeemed` and `expired` accounts. These are gross flows: a clawback or a restore
shows in the liability, not as a negative bar. Days are UTC calendar days. Read-only: no writes here.

The two windowed queries filter the journal on `created_at`; an index on it keeps them proportional to the
window rather than to the whole journal.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Date, case, cast, func, literal_column, select
from sqlalchemy.sql import ColumnElement

from loyalty.errors import ValidationProblem
from loyalty.extensions import db
from loyalty.ledger.models import Account, JournalTransaction, Posting
from loyalty.members.models import Member
from loyalty.tiers.models import MemberTier, Tier

MAX_DAYS = 90
# What a member does that makes them active: earning or spending points, not what happens to them.
ACTIVITY_KINDS = ("earn", "bonus", "redeem", "reward")
# Per program account, the sign of a posting that counts as a flow of that kind.
FLOWS = {"issued": -1, "redeemed": 1, "expired": 1}


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
    today = datetime.combine(now.astimezone(UTC).date(), time(), UTC)
    since, until = today - timedelta(days=days - 1), today + timedelta(days=1)
    members, suspended = member_counts()
    balances = member_balances()
    return Dashboard(
        since=since, days=points_per_day(since, until), members=members, suspended=suspended,
        active_members=active_members(since, until), available=balances["available"],
        pending=balances["pending"], held=balances["held"], tiers=tier_distribution(members),
    )


def member_counts() -> tuple[int, int]:
    """Members (erased accounts are no longer members) and, of them, the suspended."""
    by_status = dict(db.session.execute(select(Member.status, func.count()).group_by(Member.status)).all())
    return by_status.get("active", 0) + by_status.get("suspended", 0), by_status.get("suspended", 0)


def member_balances() -> dict[str, int]:
    """Every member's available, pending and held points, summed from the cached account balances."""
    rows = dict(db.session.execute(
        select(Account.kind, func.sum(Account.balance))
        .where(Account.kind.in_(("available", "pending", "held"))).group_by(Account.kind)
    ).all())
    return {kind: int(rows.get(kind) or 0) for kind in ("available", "pending", "held")}


def active_members(since: datetime, until: datetime) -> int:
    return db.session.scalar(
        select(func.count(func.distinct(JournalTransaction.member_id)))
        .where(JournalTransaction.created_at >= since, JournalTransaction.created_at < until,
               JournalTransaction.kind.in_(ACTIVITY_KINDS))
    ) or 0


def points_per_day(since: datetime, until: datetime) -> tuple[DayPoints, ...]:
    """Points issued, redeemed and expired on each day of [since, until), days without any included."""
    flow = case(*((Account.kind == kind, sign * Posting.amount) for kind, sign in FLOWS.items()))
    day = _utc_day(JournalTransaction.created_at).label("day")
    rows = db.session.execute(
        select(day, Account.kind, func.sum(flow))
        .select_from(Posting)
        .join(JournalTransaction, JournalTransaction.id == Posting.transaction_id)
        .join(Account, Account.id == Posting.account_id)
        .where(JournalTransaction.created_at >= since, JournalTransaction.created_at < until,
               Account.kind.in_(tuple(FLOWS)), flow > 0)
        .group_by(day, Account.kind)
    ).all()
    found: dict[date, dict[str, int]] = {}
    for value, kind, points in rows:
        found.setdefault(_as_date(value), {})[kind] = int(points)
    count = (until - since).days
    return tuple(DayPoints(d, **found.get(d, {})) for d in (since.date() + timedelta(days=i) for i in range(count)))


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


def _utc_day(column: ColumnElement) -> ColumnElement:
    """The UTC calendar day of a timestamp column, on the database at hand. SQLite stores UTC text;
    PostgreSQL converts a timestamptz in the session's time zone unless told UTC. The literal (not a
    bound parameter) keeps the expression identical in SELECT and GROUP BY."""
    if db.session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone(literal_column("'UTC'"), column), Date)
    return func.date(column)


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)
