"""Tier qualification, instant upgrades, downgrades after the grace period, and the evaluation job.

A member qualifies for a tier when what they earned (points basis: points earned, less refunds; never
less for spending) or spent (spend basis: paid orders in the tier's currency) over the tier's rolling
window reaches its threshold. Amounts are computed set-based for a batch of members at once.
Adds and flushes; never commits (the evaluation job's batches are each committed by its runner).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import and_, bindparam, case, func, literal, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from loyalty.db import UTCDateTime, for_update
from loyalty.errors import Conflict, NotFound, ValidationProblem

# Announced on every change (`loyalty.events` turns it into a `tier.changed` event for the shop's tools).
from loyalty.events import tier_changed
from loyalty.extensions import db
from loyalty.ledger.models import JournalTransaction
from loyalty.members.models import Member
from loyalty.orders.models import Order
from loyalty.tiers.models import MemberTier, Tier, TierChange
from loyalty.unit_of_work import Batches

Basis = tuple[str, int, str | None]  # (basis, window_days, currency): what one qualifying amount measures


@dataclass(frozen=True)
class Decision:
    member_id: int
    current: Tier
    target: Tier
    amounts: dict[Basis, int]


# --- definitions ------------------------------------------------------------------------------------

def all_tiers() -> list[Tier]:
    return list(db.session.scalars(select(Tier).order_by(Tier.rank)))


def get_tier(public_id: str) -> Tier:
    tier = db.session.scalar(select(Tier).where(Tier.public_id == public_id))
    if tier is None:
        raise NotFound("No tier has this id.")
    return tier


def _basis(tier: Tier) -> Basis:
    return tier.basis, tier.window_days, tier.currency


def _check(fields: dict[str, Any]) -> None:
    if fields.get("rank") == 0 and fields.get("threshold", 0) != 0:
        raise ValidationProblem(errors={"threshold": ["The base tier (rank 0) has threshold 0."]})
    if fields.get("basis") == "spend" and not fields.get("currency"):
        raise ValidationProblem(errors={"currency": ["A spend-based tier counts orders in one currency."]})


def create_tier(fields: dict[str, Any]) -> Tier:
    tiers = all_tiers()
    if not tiers and fields["rank"] != 0:
        raise ValidationProblem(errors={"rank": ["Define the base tier (rank 0, threshold 0) first."]})
    _check(fields)
    tier = Tier(**fields)
    _save(tier)
    return tier


def update_tier(tier: Tier, changes: dict[str, Any]) -> Tier:
    """Edit a tier. Members move only at the next evaluation, never silently now."""
    if tier.rank == 0 and changes.get("rank", 0) != 0:
        raise ValidationProblem(errors={"rank": ["The base tier keeps rank 0."]})
    _check({**{c: getattr(tier, c) for c in ("rank", "threshold", "basis", "currency")}, **changes})
    for name, value in changes.items():
        setattr(tier, name, value)
    _save(tier)
    return tier


def _save(tier: Tier) -> None:
    try:
        with db.session.begin_nested():
            db.session.add(tier)
    except IntegrityError:
        raise Conflict("Another tier already has this code or rank.",
                       errors={"code": ["Must be unique."], "rank": ["Must be unique."]}) from None


# --- qualification ----------------------------------------------------------------------------------

def qualifying_amounts(member_ids: list[int], bases: Iterable[Basis], now: datetime) -> dict[Basis, dict[int, int]]:
    """Per basis, per member: what counts toward tiers over the window ending now. One query per basis."""
    amounts: dict[Basis, dict[int, int]] = {}
    for basis in set(bases):
        kind, window_days, currency = basis
        rows = db.session.execute(_POINTS if kind == "points" else _SPEND, {
            "member_ids": member_ids, "since": now - timedelta(days=window_days), "currency": currency}).all()
        amounts[basis] = {member_id: int(total or 0) for member_id, total in rows}
    return amounts


def _points_query():
    """Points earned less refunds (a clawback counts in full, shortfall included) and reversed earns;
    points spent or expired never count."""
    reversed_earn = aliased(JournalTransaction)
    counted = case(
        (JournalTransaction.kind.in_(("earn", "bonus")), JournalTransaction.points),
        (JournalTransaction.kind == "clawback", JournalTransaction.points - JournalTransaction.shortfall),
        (reversed_earn.kind.in_(("earn", "bonus")), JournalTransaction.points),
        else_=0)
    return (select(JournalTransaction.member_id, func.sum(counted))
            .outerjoin(reversed_earn, reversed_earn.id == JournalTransaction.reverses_id)
            .where(JournalTransaction.created_at >= bindparam("since"),
                   JournalTransaction.member_id.in_(bindparam("member_ids", expanding=True)))
            .group_by(JournalTransaction.member_id))


def _spend_query():
    return (select(Order.member_id, func.sum(Order.total_amount - Order.refunded_amount))
            .where(Order.paid_at >= bindparam("since"), Order.currency == bindparam("currency"),
                   Order.member_id.in_(bindparam("member_ids", expanding=True)))
            .group_by(Order.member_id))


# Built once: a member's summary and every earn ask, and building them costs more than running them.
_POINTS, _SPEND = _points_query(), _spend_query()
_FOLLOWING = select(Tier).where(Tier.rank > bindparam("rank")).order_by(Tier.rank).limit(1)


def decide(member_ids: list[int], tiers: list[Tier], current: dict[int, Tier], now: datetime) -> list[Decision]:
    """The tier each member qualifies for now: the highest whose threshold they reach (rank 0 always)."""
    amounts = qualifying_amounts(member_ids, [_basis(t) for t in tiers], now)
    decisions = []
    for member_id in member_ids:
        mine = {basis: by_member.get(member_id, 0) for basis, by_member in amounts.items()}
        target = max((t for t in tiers if mine[_basis(t)] >= t.threshold), key=lambda t: t.rank)
        decisions.append(Decision(member_id, current.get(member_id, tiers[0]), target, mine))
    return decisions


# --- changing tiers ---------------------------------------------------------------------------------

def _grace(tier: Tier) -> timedelta:
    """How long a tier is kept once earned: by default one more window."""
    days = current_app.config.get("TIER_GRACE_DAYS")
    return timedelta(days=tier.window_days if days is None else int(days))


def _lock_rows(member_ids: list[int], tiers: list[Tier], now: datetime, *, skip_locked: bool = False
               ) -> dict[int, MemberTier]:
    """Each member's tier row, created in the base tier if missing, locked for this transaction."""
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    missing = select(Member.id, literal(tiers[0].id), literal(now, UTCDateTime)).where(Member.id.in_(member_ids))
    db.session.execute(insert(MemberTier).from_select(["member_id", "tier_id", "since"], missing)
                       .on_conflict_do_nothing())
    query = (select(MemberTier).where(MemberTier.member_id.in_(member_ids)).order_by(MemberTier.member_id)
             .execution_options(populate_existing=True))
    return {row.member_id: row for row in db.session.scalars(for_update(query, db.session, skip_locked=skip_locked))}


def _move(row: MemberTier, decision: Decision, *, reason: str, now: datetime) -> None:
    """Change the tier, record it in the history, keep the new tier for its grace, and announce it."""
    measured = decision.target if decision.target.rank > decision.current.rank else decision.current
    amount = decision.amounts[_basis(measured)]
    reason = f"{reason}: {_describe(measured, amount)}"
    db.session.add(TierChange(member_id=row.member_id, from_tier_id=decision.current.id,
                              to_tier_id=decision.target.id, reason=reason, qualifying_amount=amount, at=now))
    row.tier_id, row.since, row.retained_until = decision.target.id, now, now + _grace(decision.target)
    tier_changed.send(current_app._get_current_object(), member_id=row.member_id,
                      from_tier=decision.current.code, to_tier=decision.target.code, reason=reason, at=now)


def _describe(tier: Tier, amount: int) -> str:
    unit = "points earned" if tier.basis == "points" else f"{tier.currency.upper()} minor units spent"
    return f"{amount} {unit} in {tier.window_days} days; {tier.name} needs {tier.threshold}"


def upgrade_if_qualified(member: Member, now: datetime) -> Decision | None:
    """After an earn or a paid order: move up at once when a higher threshold is crossed. Never down."""
    tiers = all_tiers()
    if not tiers:
        return None
    row = _lock_rows([member.id], tiers, now)[member.id]
    by_id = {t.id: t for t in tiers}
    [decision] = decide([member.id], tiers, {member.id: by_id[row.tier_id]}, now)
    if decision.target.rank <= decision.current.rank:
        return None
    _move(row, decision, reason="Upgraded", now=now)
    db.session.flush()
    return decision


def revert_if_unqualified(member_id: int, *, since: datetime, now: datetime) -> Decision | None:
    """After a refund took points back: a tier reached since `since` (when the refunded order was paid) that
    the member no longer qualifies for was bought with points they did not keep. It goes at once, without
    grace, back to the tier held when the order was paid (or the higher one still qualified for)."""
    tiers = all_tiers()
    if not tiers:
        return None
    row = _lock_rows([member_id], tiers, now)[member_id]
    by_id = {t.id: t for t in tiers}
    current = by_id[row.tier_id]
    if row.since < since:
        return None
    [decision] = decide([member_id], tiers, {member_id: current}, now)
    # Every tier reached since the order was paid rode on it: back to the one held before its first change since.
    held_before = db.session.scalar(select(TierChange.from_tier_id).where(
        TierChange.member_id == member_id, TierChange.at >= since).order_by(TierChange.id).limit(1))
    target = max(decision.target, by_id.get(held_before, tiers[0]), key=lambda t: t.rank)
    if target.rank >= current.rank:
        return None
    decision = Decision(member_id, current, target, decision.amounts)
    _move(row, decision, reason="Refunded", now=now)
    db.session.flush()
    return decision


def outcome(decision: Decision, retained_until: datetime | None, now: datetime) -> str:
    """What the evaluation does with a member: "up"; "down" once their tier's grace has passed; "kept" when
    they requalify (the grace is extended); "grace" when they no longer qualify but are inside the grace.
    The evaluation acts on it and the preview counts it, so the preview says exactly what will happen."""
    if decision.target.rank > decision.current.rank:
        return "up"
    if decision.target.rank == decision.current.rank:
        return "kept"
    return "down" if retained_until is None or now >= retained_until else "grace"


def evaluate(member_ids: list[int], now: datetime, *, skip_locked: bool = True) -> dict[str, int]:
    """Evaluate members: upgrade who qualifies higher; downgrade who no longer qualifies once their
    tier's grace has passed; keep (and extend the grace of) who requalifies. Rows another worker holds
    are skipped, so several workers can run at once."""
    tiers = all_tiers()
    counts = {"evaluated": 0, "upgraded": 0, "downgraded": 0}
    if not tiers:
        return counts
    rows = _lock_rows(member_ids, tiers, now, skip_locked=skip_locked)
    by_id = {t.id: t for t in tiers}
    for decision in decide(list(rows), tiers, {m: by_id[r.tier_id] for m, r in rows.items()}, now):
        row = rows[decision.member_id]
        counts["evaluated"] += 1
        verdict = outcome(decision, row.retained_until, now)
        if verdict == "up":
            _move(row, decision, now=now, reason="Upgraded at evaluation")
            counts["upgraded"] += 1
        elif verdict == "kept":
            kept_until = now + _grace(decision.current)
            # Extended a day at a time at most, so a daily run rewrites each row once a day, not more.
            if row.retained_until is None or kept_until - row.retained_until >= timedelta(days=1):
                row.retained_until = kept_until
        elif verdict == "down":
            _move(row, decision, now=now, reason="Downgraded after the grace period")
            counts["downgraded"] += 1
    db.session.flush()
    return counts


def evaluate_all(now: datetime, *, batch_size: int = 1000) -> Batches:
    """The job: every member, in batches by id (each its own transaction: `loyalty.unit_of_work.run_batches`)."""
    for ids in _member_batches(batch_size):
        yield evaluate(ids, now)


def _member_batches(batch_size: int) -> Iterator[list[int]]:
    """The ids of the members the evaluation job evaluates, in batches, in id order."""
    after = 0
    while ids := list(db.session.scalars(select(Member.id).where(Member.id > after, Member.status != "erased")
                                         .order_by(Member.id).limit(batch_size))):
        yield ids
        after = ids[-1]


def preview(now: datetime, *, limit: int = 20, starting_after: str | None = None,
            batch_size: int = 1000) -> dict[str, Any]:
    """What the next evaluation would do under the tiers as they stand (saved or not yet committed), decided
    by `outcome` as the evaluation decides it, grace included; nothing is written. Counts every member
    moving up and down, and lists those who would move (`limit` of them after the member `starting_after`),
    in member order."""
    after = 0
    if starting_after is not None:
        after = db.session.scalar(select(Member.id).where(Member.public_id == starting_after))
        if after is None:
            raise ValidationProblem(errors={"starting_after": ["No such id in this list."]})
    tiers = all_tiers()
    moves: dict[str, Any] = {"up": 0, "down": 0, "data": [], "has_more": False}
    if not tiers:
        return moves
    by_id = {t.id: t for t in tiers}
    listed: list[tuple[Decision, str]] = []
    for ids in _member_batches(batch_size):
        rows = {member_id: (tier_id, retained_until) for member_id, tier_id, retained_until in db.session.execute(
            select(MemberTier.member_id, MemberTier.tier_id, MemberTier.retained_until)
            .where(MemberTier.member_id.in_(ids)))}
        current = {m: by_id[rows[m][0]] if m in rows else tiers[0] for m in ids}
        for decision in decide(ids, tiers, current, now):
            verdict = outcome(decision, rows.get(decision.member_id, (None, None))[1], now)
            if verdict in ("up", "down"):
                moves[verdict] += 1
                if decision.member_id > after and len(listed) <= limit:
                    listed.append((decision, verdict))
    moves["has_more"] = len(listed) > limit
    shown = [d.member_id for d, _ in listed[:limit]]
    people = dict(db.session.execute(select(Member.id, Member).where(Member.id.in_(shown))).all()) if shown else {}
    moves["data"] = [{"member": people[d.member_id], "from_tier": d.current, "to_tier": d.target,
                      "direction": verdict} for d, verdict in listed[:limit]]
    return moves


# --- reading ----------------------------------------------------------------------------------------

# The member's tier row and tier, or the base tier when they have no row: one read, built once.
_CURRENT_TIER = (
    select(Tier, MemberTier)
    .outerjoin(MemberTier, and_(MemberTier.tier_id == Tier.id, MemberTier.member_id == bindparam("member_id")))
    .where(or_(MemberTier.member_id.is_not(None), Tier.rank == 0))
    .order_by(MemberTier.member_id.is_(None)).limit(1))


def current_tier(member: Member) -> tuple[Tier | None, MemberTier | None]:
    held = db.session.execute(_CURRENT_TIER, {"member_id": member.id}).first()
    return (held.Tier, held.MemberTier) if held is not None else (None, None)


def summary(member: Member, now: datetime) -> dict[str, Any]:
    """The tier part of the member summary: the tier, the next one and how far it is, and until when
    the current tier is kept."""
    tier, row = current_tier(member)
    if tier is None:
        return {"tier": None, "next_tier": None, "tier_retained_until": None}
    following = db.session.scalar(_FOLLOWING, {"rank": tier.rank})
    next_tier = None
    if following is not None:
        amount = qualifying_amounts([member.id], [_basis(following)], now)[_basis(following)].get(member.id, 0)
        next_tier = {"code": following.code, "name": following.name,
                     "remaining": max(following.threshold - amount, 0), "basis": following.basis}
    return {"tier": {"code": tier.code, "name": tier.name}, "next_tier": next_tier,
            "tier_retained_until": row.retained_until if row else None}


def history(member: Member) -> list[dict[str, Any]]:
    names = {t.id: t.code for t in all_tiers()}
    return [{"from": names.get(c.from_tier_id), "to": names[c.to_tier_id], "reason": c.reason, "at": c.at}
            for c in db.session.scalars(select(TierChange).where(TierChange.member_id == member.id)
                                        .order_by(TierChange.id.desc()))]


# --- for the console ----------------------------------------------------------------------------------

def member_counts(tiers: list[Tier]) -> dict[int, int]:
    """Members in each tier, by tier id; erased members are left out. A member with no tier row is in the
    base tier. Two grouped counts, whatever the number of members."""
    in_rows = dict(db.session.execute(
        select(MemberTier.tier_id, func.count()).join(Member, Member.id == MemberTier.member_id)
        .where(Member.status != "erased").group_by(MemberTier.tier_id)).all())
    base = next((t for t in tiers if t.rank == 0), None)
    if base is not None:
        without_row = db.session.scalar(
            select(func.count()).select_from(Member).outerjoin(MemberTier, MemberTier.member_id == Member.id)
            .where(MemberTier.member_id.is_(None), Member.status != "erased"))
        in_rows[base.id] = in_rows.get(base.id, 0) + int(without_row or 0)
    return {t.id: int(in_rows.get(t.id, 0)) for t in tiers}


def grace_days(tier: Tier) -> int:
    """Days a member keeps this tier after last qualifying: the configured grace, else one window."""
    return _grace(tier).days


# --- for the member's pages ---------------------------------------------------------------------------

def progress(next_tier: dict[str, Any] | None) -> dict[str, Any] | None:
    """How far a member is on the way to the next tier (`summary`'s next_tier), against its threshold:
    the tier, and a value out of a positive max, as a progress bar shows it."""
    if next_tier is None:
        return None
    tier = db.session.scalar(select(Tier).where(Tier.code == next_tier["code"]))
    if tier is None:
        return None
    threshold = max(tier.threshold, 1)  # a progress bar needs a positive max
    return {"tier": tier, "max": threshold, "value": max(threshold - next_tier["remaining"], 0),
            "remaining": next_tier["remaining"]}
