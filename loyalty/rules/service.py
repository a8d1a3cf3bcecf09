"""Rule versions (draft, publish, in force), the member context the engine reads, and awarding points
by the rules. The engine itself (`loyalty.rules.engine`) is pure; this module feeds it and records
what it decided. Adds and flushes; never commits."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer

from loyalty.errors import Conflict, NotFound, ValidationProblem
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.ledger.models import JournalTransaction
from loyalty.members.models import Member
from loyalty.orders.models import Order
from loyalty.rules import engine
from loyalty.rules.document import dump_document, validate_document
from loyalty.rules.models import RuleAward, RuleVersion
from loyalty.rules.orders import engine_order, engine_order_from
from loyalty.schemas import INT4_MAX
from loyalty.tiers import service as tiers

# Published documents never change, so each is parsed once per process (keyed by row and publication,
# which a reused row id cannot repeat).
_parsed: dict[tuple[int, datetime], dict[str, Any]] = {}


# --- versions ---------------------------------------------------------------------------------------

def get_version(version: int) -> RuleVersion:
    found = None
    if 0 < version <= INT4_MAX:  # past the column's range (a URL, a query) it names none, and PostgreSQL refuses it
        found = db.session.scalar(select(RuleVersion).where(RuleVersion.version == version))
    if found is None:
        raise NotFound("No rule version has this number.")
    return found


def list_versions(*, limit: int, starting_after: int | None = None) -> dict:
    """Newest first."""
    query = select(RuleVersion).order_by(RuleVersion.version.desc()).limit(limit + 1)
    if starting_after is not None:
        query = query.where(RuleVersion.version < starting_after)
    rows = list(db.session.scalars(query))
    return {"data": rows[:limit], "has_more": len(rows) > limit}


def validated(document: dict, *, field: str = "document") -> dict[str, Any]:
    """The loaded document; errors name their place under `field` (`document.earn.rates.usd`)."""
    try:
        return validate_document(document)
    except ValidationProblem as problem:
        errors = {f"{field}.{path}": messages for path, messages in (problem.errors or {}).items()}
        raise ValidationProblem("The rules document is invalid; see errors.", errors=errors) from None


def create_draft(document: dict, *, note: str | None, staff_id: int | None) -> RuleVersion:
    canonical = dump_document(validated(document))
    for _ in range(5):
        number = (db.session.scalar(select(func.max(RuleVersion.version))) or 0) + 1
        draft = RuleVersion(version=number, status="draft", note=note, document=canonical, created_by_id=staff_id)
        try:
            with db.session.begin_nested():
                db.session.add(draft)
        except IntegrityError:
            continue  # another draft took this number at the same moment
        return draft
    raise Conflict("Could not number the new version; try again.")


def get_draft(version: int) -> RuleVersion:
    """A version that may still change; a published one is a conflict."""
    draft = get_version(version)
    if draft.status != "draft":
        raise Conflict("A published version cannot change; create a new draft.", code="version_published")
    return draft


def update_draft(version: int, document: dict, *, note: str | None) -> RuleVersion:
    draft = get_draft(version)
    draft.document = dump_document(validated(document))
    draft.note = note
    db.session.flush()
    return draft


def publish(version: int, *, effective_from: datetime | None, staff_id: int | None, now: datetime) -> RuleVersion:
    draft = get_version(version)
    if draft.status != "draft":
        raise Conflict("This version is already published.", code="version_published")
    effective_from = effective_from or now
    if effective_from < now - timedelta(seconds=5):
        raise ValidationProblem(errors={"effective_from": ["Cannot take effect in the past."]})
    validate_document(draft.document)  # stored drafts were valid; the engine must never meet a bad one
    draft.status, draft.effective_from = "published", effective_from
    draft.published_at, draft.published_by_id = now, staff_id
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError:
        raise Conflict("Another version takes effect at that very moment.",
                       errors={"effective_from": ["Already taken by another version."]}) from None
    return draft


# Built once, as every checkout asks. The document loads only when read: checkout reads it parsed, from
# `_parsed`, once per process.
_IN_FORCE = (select(RuleVersion).where(RuleVersion.status == "published", RuleVersion.effective_from <= bindparam("at"))
             .order_by(RuleVersion.effective_from.desc()).limit(1).options(defer(RuleVersion.document)))


def in_force(at: datetime) -> RuleVersion | None:
    return db.session.scalar(_IN_FORCE, {"at": at})


def inactivity_days(at: datetime) -> int | None:
    """The days without activity after which points expire, when the rules in force say so."""
    version = in_force(at)
    expiry = parsed(version)["expiry"] if version is not None else None
    return expiry["days"] if expiry and expiry["policy"] == "inactivity" else None


def parsed(version: RuleVersion) -> dict[str, Any]:
    if version.status != "published":
        return validate_document(version.document)
    key = (version.id, version.published_at)
    if key not in _parsed:
        _parsed[key] = validate_document(version.document)
    return _parsed[key]


# --- the member as the engine sees them -----------------------------------------------------------

def member_context(member: Member, now: datetime, *, exclude_order: int | None = None) -> engine.MemberContext:
    """What the engine needs to know about a member, read from awards, the journal and orders."""
    # The day is UTC's whatever offset `now` was given with, or a caller could pick the day a cap counts.
    day_start = datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)
    that_day = and_(RuleAward.created_at >= day_start, RuleAward.created_at < day_start + timedelta(days=1))
    awards = db.session.execute(
        select(RuleAward.rule, func.sum(func.coalesce(RuleAward.kept, RuleAward.points)), func.count(),
               func.max(RuleAward.created_at), func.sum(case((that_day, 1), else_=0)))
        .where(RuleAward.member_id == member.id).group_by(RuleAward.rule)).all()
    campaign_points = {rule.removeprefix("campaign."): int(points) for rule, points, *_ in awards
                       if rule.startswith("campaign.")}
    # Awards are named "event.review" or "event.custom.<name>"; the engine counts "review", "custom:<name>".
    event_counts, events_today = {}, {}
    for rule, _, count, _, today in awards:
        if rule.startswith("event."):
            event = rule.removeprefix("event.").replace("custom.", "custom:", 1)
            event_counts[event] = count
            if today:
                events_today[event] = int(today)
    last_birthday = next((at for rule, _, _, at, _ in awards if rule == "event.birthday"), None)
    earned_today = db.session.scalar(
        select(func.coalesce(func.sum(JournalTransaction.points), 0))
        .where(JournalTransaction.member_id == member.id, JournalTransaction.kind.in_(("earn", "bonus")),
               JournalTransaction.created_at >= day_start))
    orders = select(func.count()).select_from(Order).where(Order.member_id == member.id)
    if exclude_order is not None:
        orders = orders.where(Order.id != exclude_order)
    tier, _ = tiers.current_tier(member)
    return engine.MemberContext(
        tier=tier.code if tier else None, tier_multiplier=tier.earn_multiplier if tier else Decimal(1),
        birthday=member.birthday, earned_today=int(earned_today),
        campaign_points=campaign_points, orders_paid=db.session.scalar(orders),
        event_counts=event_counts, events_today=events_today,
        last_birthday_award=last_birthday.date() if last_birthday else None,
        referrals_rewarded=event_counts.get("referral_referrer", 0),
    )


# --- earning by the rules --------------------------------------------------------------------------

def record_awards(member_id: int, txn: JournalTransaction, result: engine.EarnResult) -> None:
    db.session.add_all(
        RuleAward(member_id=member_id, transaction_id=txn.id, rule=item.rule, points=item.points,
                  kept=result.campaign_points.get(item.rule.removeprefix("campaign."), 0)
                  if item.rule.startswith("campaign.") else None,
                  detail=item.detail[:300], created_at=txn.created_at)
        for item in result.breakdown)


def earn(member: Member, result: engine.EarnResult, *, kind: str, reference: str, description: str,
         now: datetime, version: RuleVersion | None, order_id: str | None = None,
         activity: bool = True) -> JournalTransaction | None:
    """Move what the engine decided through the ledger and record why. Nothing to move: None."""
    if result.points <= 0:
        return None
    txn = ledger.earn(
        member.id, result.points, reference=reference, description=description, now=now, kind=kind,
        pending_until=result.pending_until, expires_at=result.expires_at, order_id=order_id,
        rule_version=version.version if version else None, activity=activity)
    if not db.session.scalar(select(RuleAward.id).where(RuleAward.transaction_id == txn.id).limit(1)):
        record_awards(member.id, txn, result)
    return txn


def award_event(member: Member, event: str, *, now: datetime, reference: str, order_id: str | None = None,
                paid_at: datetime | None = None, pays_once: bool = False) -> tuple[engine.EarnResult, Any]:
    """Evaluate an event reward (signup, birthday, review, referral, custom:<name>) and pay it. A reward an
    order triggered (`order_id`, paid at `paid_at`) is linked to it and pending for its return window, so a
    refund of the order finds it and takes it back. With `pays_once`, the reference pays once: asked again,
    the award answers what it paid the first time."""
    version = in_force(now)
    if version is None:
        return _no_rules(), None
    document = parsed(version)
    # The member's accounts first: two events at once are then counted one after the other (daily caps), and
    # the second of two with one reference finds the first (the reference's unique key has the last word).
    ledger.lock_members([member.id])
    if pays_once and (first := db.session.scalar(select(JournalTransaction).where(
            JournalTransaction.reference == reference))) is not None:
        return _paid(first), first
    result = engine.evaluate_event(event, member_context(member, now), document, now)
    if paid_at is not None and result.points:
        result = replace(result, pending_until=engine.pending_until(paid_at, document))
    # A birthday bonus comes whatever the member does, so it does not count as their activity.
    txn = earn(member, result, kind="bonus", reference=reference, now=now, version=version, order_id=order_id,
               description=_event_description(event, result), activity=event != "birthday")
    if txn is not None:
        tiers.upgrade_if_qualified(member, now)
    return result, txn


def _paid(txn: JournalTransaction) -> engine.EarnResult:
    """What an award paid, read back from its transaction and its breakdown."""
    items = tuple(engine.BreakdownItem(award.rule, award.points, award.detail) for award in db.session.scalars(
        select(RuleAward).where(RuleAward.transaction_id == txn.id).order_by(RuleAward.id)))
    return engine.EarnResult(points=txn.points, breakdown=items, pending_until=None, expires_at=None,
                             campaign_points={})


def _event_description(event: str, result: engine.EarnResult) -> str:
    names = {"signup": "Welcome bonus", "birthday": "Birthday bonus", "review": "Review bonus",
             "referral_referrer": "Referral bonus: a friend you referred placed their first order",
             "referral_referred": "Referral bonus for your first order"}
    return names.get(event, f"Bonus for {event.removeprefix('custom:')}") + f" ({result.points} points)"


def _no_rules() -> engine.EarnResult:
    return engine.EarnResult(points=0, breakdown=(engine.BreakdownItem("rules", 0, "No rules are in force."),),
                             pending_until=None, expires_at=None, campaign_points={})


def evaluate_order(member: Member, order: engine.Order, at: datetime, *, exclude_order: int | None = None
                   ) -> tuple[engine.EarnResult, RuleVersion | None]:
    version = in_force(at)
    if version is None:
        return _no_rules(), None
    context = member_context(member, at, exclude_order=exclude_order)
    return engine.evaluate_earn(order, context, parsed(version), at), version


def simulation_rules(*, document: dict[str, Any] | None, version: int | None, at: datetime
                     ) -> tuple[dict[str, Any], RuleVersion | None]:
    """The rules a simulation runs under, and their stored version: the `document` given (its errors under
    `rules`), else stored `version`, else the version in force `at`."""
    if document is not None:
        return validated(document, field="rules"), None
    stored = get_version(version) if version else in_force(at)
    if stored is None:
        raise ValidationProblem(errors={"rules": ["No rules are in force; send a document or a version."]})
    return parsed(stored), stored


def simulate(document: dict[str, Any], order: Mapping[str, Any], member: Member | None, at: datetime
             ) -> engine.EarnResult:
    """What an order given as the API's fields would earn under `document` (already validated): nothing is
    written."""
    context = member_context(member, at) if member else engine.MemberContext()
    return engine.evaluate_earn(engine_order_from(order), context, document, at)


def impact(version: RuleVersion, *, last: int, now: datetime) -> dict[str, Any]:
    """Replay the last `last` paid orders under `version` and under the rules each was earned with."""
    orders = list(db.session.scalars(select(Order).order_by(Order.paid_at.desc(), Order.id.desc()).limit(last)))
    document = parsed(version)
    proposed = 0
    for order in orders:
        member = db.session.get(Member, order.member_id)
        context = member_context(member, order.paid_at, exclude_order=order.id)
        proposed += engine.evaluate_earn(engine_order(order), context, document, order.paid_at).points
    current = sum(order.points_earned for order in orders)
    return {"version": version.version, "orders": len(orders), "current_points": current,
            "proposed_points": proposed, "change": proposed - current}


# --- for the console's editors ------------------------------------------------------------------------

# The smallest valid document: one earning rate, every other setting at its default.
STARTER_DOCUMENT: dict[str, Any] = {"earn": {"rates": {"usd": "1"}}}

# The settings the console edits in a form, as paths into the document; the JSON editor covers the rest.
MAIN_SETTINGS = ("earn.rates", "earn.pending_days", "expiry", "redeem.point_values", "redeem.min_points",
                 "redeem.step", "redeem.max_share_percent")


def starting_document(version: int | None, now: datetime) -> tuple[dict[str, Any], int | None]:
    """What a new draft starts from, and the version it is a copy of: the given version, else the one in
    force, else (None) the starter document with every default written out."""
    source = get_version(version) if version is not None else in_force(now)
    if source is not None:
        return copy.deepcopy(source.document), source.version
    return dump_document(validate_document(STARTER_DOCUMENT)), None


def main_settings(document: dict[str, Any]) -> dict[str, Any]:
    """The main settings of a stored document, by path (`"earn.pending_days": 14`); absent ones are None."""
    settings = {}
    for path in MAIN_SETTINGS:
        value: Any = document
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        settings[path] = copy.deepcopy(value)
    return settings


def with_main_settings(document: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """A copy of `document` with the given main settings written in. None drops a setting, so its default
    applies. Not validated here: `create_draft` and `update_draft` validate whatever they store."""
    changed = copy.deepcopy(document)
    for path, value in settings.items():
        if path not in MAIN_SETTINGS:
            raise ValueError(f"{path} is not one of the main settings")
        *parents, last = path.split(".")
        section = changed
        for key in parents:
            if not isinstance(section.get(key), dict):
                section[key] = {}
            section = section[key]
        if value is None:
            section.pop(last, None)
        else:
            section[last] = copy.deepcopy(value)
    return changed
