"""Privacy: a member's consent, everything held on them as one export, and erasure. Adds and flushes; never commits.

Where personal data about a member lives, table by table (what `erase` works from):

- members: email, name, birthday, external_id, password_hash, last_login_at: cleared; referral_code: replaced by
  a fresh random code (the old one, printed on receipts or shared in links, no longer leads to the member).
  public_id, status, tier, created_at and referred_by_id stay: pseudonymous, and reports count them.
- stripe_events.payload: what Stripe knows of the buyer (customer_details, billing_details, shipping, emails,
  names, phones, addresses, card details, receipt links, dispute evidence): cleared in the member's events.
- idempotency_keys.body: a stored answer may be a member summary (email, name, ...): redacted in place, so a retry
  still replays an answer, an anonymised one. The caller column holds `anonymous:<ip>` only for a write made
  without credentials, and every @write route requires credentials first: no such row names a member.
- outbox_events.data: ids, points and amounts only, by design (`loyalty.events`); redacted all the same,
  should a personal value ever be written there.
- member_consents: member id, purpose, answer, source and time: no identifier of the person; kept, as the record
  of what the member agreed to and when.
- Free text written by staff or the shop: ledger_transactions.description (adjustment reasons), refunds.reason,
  rule_awards.detail. Kept: the journal is insert-only, and reasons must not name people.
- orders (lines of SKUs, categories, quantities, amounts; Stripe PaymentIntent id), refunds, redemptions,
  coupon_uses, offer_codes, reward_claims, ledger rows, tier rows, expiry_reminders: ids, amounts and times,
  no personal data; kept, so reports' totals do not change.
- Logs: the access log has the route template, status and duration, never a raw path, id, email or address
  (`loyalty.observability`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Text, cast, literal, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased

from loyalty import events
from loyalty.auth.sessions import end_sessions
from loyalty.checkout import service as checkout
from loyalty.checkout.models import Redemption
from loyalty.db import for_update
from loyalty.errors import Conflict
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Hold, JournalTransaction, Lot
from loyalty.members import service as members
from loyalty.members.models import CONSENT_PURPOSES, Member, MemberConsent
from loyalty.offers.models import CouponUse, Offer, OfferCode, Reward, RewardClaim
from loyalty.orders.models import Order, Refund
from loyalty.tiers.models import Tier, TierChange
from loyalty.webhooks.models import OutboxEvent, StripeEvent
from loyalty.writes import StoredResponse

ERASURE_SOURCE = "erasure"
# Keys of a Stripe object that describe the buyer, wherever they are nested; their values are cleared.
STRIPE_PERSONAL_KEYS = frozenset({
    "address", "billing_address", "billing_details", "business_name", "card", "customer", "customer_address",
    "customer_details", "customer_email", "customer_email_address", "customer_name", "customer_phone",
    "customer_purchase_ip", "customer_shipping", "customer_signature", "description", "email", "evidence",
    "individual_name", "ip_address", "name", "payment_method_details", "phone", "receipt_email", "receipt_url",
    "shipping", "shipping_address", "shipping_details", "tax_id", "tax_ids",
})
# The member's own fields in an answer or event about the member.
MEMBER_PERSONAL_KEYS = frozenset({"email", "name", "birthday", "external_id"})
_NEEDLES_PER_QUERY = 200  # SQLite parses a chain of ORs into a tree at most 1000 deep


# --- consent ------------------------------------------------------------------------------------------------

def consent_state(member: Member, history: list[MemberConsent] | None = None) -> dict[str, Any]:
    """The member's consent now, per purpose, and every answer, newest first: one query."""
    history = members.consent_history(member) if history is None else history
    current = members.current_consents(history)
    return {
        "member_id": member.public_id,
        "current": {purpose: {"granted": row.granted if row else False, "source": row.source if row else None,
                              "recorded_at": row.recorded_at if row else None}
                    for purpose, row in current.items()},
        "history": history,
    }


def record_consent(member: Member, purpose: str, granted: bool, *, source: str) -> dict[str, Any]:
    """Record an answer (the same answer again changes nothing); answers the consent state."""
    if member.status == "erased":
        raise Conflict("The member's account was erased.", code="member_erased")
    members.record_consent(member, purpose, granted, source=source)
    return consent_state(member)


# --- export -------------------------------------------------------------------------------------------------

def export_filename(member: Member, now: datetime) -> str:
    return f"loyalty-export-{member.public_id}-{now:%Y%m%d}.json"


def export_json(member: Member, now: datetime) -> str:
    """The export as the API answers it, for pages that offer it as a file."""
    from loyalty.privacy.schemas import ExportSchema

    return json.dumps(ExportSchema().dump(export(member, now)), indent=2, ensure_ascii=False)


def export(member: Member, now: datetime) -> dict[str, Any]:
    """Everything held on the member, one query per section (a handful for the profile), every list newest first.
    Built in memory: it is one member's history."""
    return {
        "exported_at": now,
        "member": _profile(member),
        "consents": consent_state(member),
        "transactions": list(db.session.scalars(
            select(JournalTransaction).where(JournalTransaction.member_id == member.id)
            .order_by(JournalTransaction.id.desc()))),
        "lots": _lots(member),
        "coupons": _coupons(member),
        "coupon_uses": _coupon_uses(member),
        "redemptions": list(db.session.scalars(
            select(Redemption).where(Redemption.member_id == member.id).order_by(Redemption.id.desc()))),
        "orders": _orders(member),
        "reward_claims": _reward_claims(member),
        "tier_history": _tier_history(member),
        "events": list(db.session.scalars(
            select(OutboxEvent).where(OutboxEvent.member_id == member.id).order_by(OutboxEvent.id.desc()))),
    }


def _profile(member: Member) -> dict[str, Any]:
    referrer = db.session.scalar(select(Member.public_id).where(Member.id == member.referred_by_id)) \
        if member.referred_by_id else None
    return {**members.summary(member), "referred_by": referrer, "updated_at": member.updated_at,
            "last_login_at": member.last_login_at, "erased_at": member.erased_at}


def _lots(member: Member) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(Lot, JournalTransaction.public_id).join(JournalTransaction, JournalTransaction.id == Lot.transaction_id)
        .where(Lot.member_id == member.id).order_by(Lot.id.desc())).all()
    return [{"id": lot.public_id, "transaction_id": txn, "amount": lot.amount, "remaining": lot.remaining,
             "status": lot.status, "activates_at": lot.activates_at, "expires_at": lot.expires_at,
             "created_at": lot.created_at} for lot, txn in rows]


def _coupons(member: Member) -> list[dict[str, Any]]:
    """Codes assigned to the member (unique codes, and those bought with points)."""
    rows = db.session.execute(
        select(OfferCode, Offer.public_id, Offer.name).join(Offer, Offer.id == OfferCode.offer_id)
        .where(OfferCode.member_id == member.id).order_by(OfferCode.id.desc())).all()
    return [{"id": code.public_id, "code": code.code, "offer_id": offer_id, "offer_name": offer_name,
             "active": code.active, "expires_at": code.expires_at, "created_at": code.created_at}
            for code, offer_id, offer_name in rows]


def _coupon_uses(member: Member) -> list[dict[str, Any]]:
    """Every use of a code by the member. Uses are made by checkouts, each under its redemption's reference: read
    through the unique reference index rather than a scan of every use."""
    references = select(literal("redemption:") + Redemption.public_id).where(Redemption.member_id == member.id)
    rows = db.session.execute(
        select(CouponUse, OfferCode.code, Offer.public_id)
        .join(OfferCode, OfferCode.id == CouponUse.code_id).join(Offer, Offer.id == CouponUse.offer_id)
        .where(CouponUse.reference.in_(references), CouponUse.member_id == member.id)
        .order_by(CouponUse.id.desc())).all()
    return [{"code": code, "offer_id": offer_id, "status": use.status,
             "redemption_id": use.reference.removeprefix("redemption:"), "created_at": use.created_at,
             "resolved_at": use.resolved_at} for use, code, offer_id in rows]


def _orders(member: Member) -> list[dict[str, Any]]:
    """Orders with their refunds: two queries."""
    refunds: dict[int, list[Refund]] = {}
    for refund in db.session.scalars(select(Refund).where(Refund.member_id == member.id)
                                     .order_by(Refund.id.desc())):
        refunds.setdefault(refund.order_id, []).append(refund)
    orders = db.session.scalars(select(Order).where(Order.member_id == member.id).order_by(Order.id.desc()))
    return [{name: getattr(order, name) for name in _ORDER_FIELDS} | {"refunds": refunds.get(order.id, [])}
            for order in orders]


_ORDER_FIELDS = ("order_id", "channel", "currency", "total_amount", "shipping_amount", "discount_amount", "lines",
                 "status", "paid_at", "points_earned", "pending_until", "rule_version", "refunded_amount",
                 "points_clawed_back", "points_restored", "dispute_status", "created_at")


def _reward_claims(member: Member) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(RewardClaim, Reward.public_id, Reward.name, OfferCode.code, JournalTransaction.public_id)
        .join(Reward, Reward.id == RewardClaim.reward_id).join(OfferCode, OfferCode.id == RewardClaim.code_id)
        .join(JournalTransaction, JournalTransaction.id == RewardClaim.transaction_id)
        .where(RewardClaim.member_id == member.id).order_by(RewardClaim.id.desc())).all()
    return [{"reward_id": reward_id, "reward_name": name, "coupon_code": code, "transaction_id": txn,
             "created_at": claim.created_at} for claim, reward_id, name, code, txn in rows]


def _tier_history(member: Member) -> list[dict[str, Any]]:
    before, after = aliased(Tier), aliased(Tier)
    rows = db.session.execute(
        select(TierChange, before.code, after.code)
        .outerjoin(before, before.id == TierChange.from_tier_id).join(after, after.id == TierChange.to_tier_id)
        .where(TierChange.member_id == member.id).order_by(TierChange.id.desc())).all()
    return [{"from": old, "to": new, "reason": change.reason, "at": change.at} for change, old, new in rows]


# --- erasure ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Erasure:
    member: Member
    points_forfeited: int
    redemptions_released: list[str]


def erase(member: Member, now: datetime, by: str) -> Erasure:
    """Erase the member's personal data for good, keeping the ledger's sums and the orders reports count.

    Live holds are released first (a captured redemption stays captured), then every outstanding point is
    forfeited through the ledger, then personal data is scrubbed wherever the app keeps it, then the member's own
    fields are cleared. The member can no longer sign in, and every open session ends. Erasing an erased member
    changes nothing and answers the same. `by` says who asked: member, staff or api.

    The member's row is locked first, then redemptions, offers and accounts in the order checkout takes them,
    so an erasure and a checkout never wait on each other in a circle."""
    member = db.session.scalar(for_update(select(Member).where(Member.id == member.id)
                                          .execution_options(populate_existing=True), db.session))
    if member.status != "erased":
        _release_holds(member, now)
        ledger.forfeit(member.id, now=now, reference=_forfeit_reference(member))
        for purpose in CONSENT_PURPOSES:
            members.record_consent(member, purpose, False, source=ERASURE_SOURCE)
        _scrub_elsewhere(member)
        _anonymise(member, now)
        end_sessions(member)
        events.emit("member.erased", {"by": by, "erased_at": now.isoformat()}, member_id=member.id)
    return _erasure(member)


def _forfeit_reference(member: Member) -> str:
    return f"erase:{member.public_id}"


def _release_holds(member: Member, now: datetime) -> None:
    """Held redemptions go back (points and coupon), as an abandoned checkout's would."""
    held = db.session.scalars(for_update(
        select(Redemption).where(Redemption.member_id == member.id, Redemption.status == "held")
        .order_by(Redemption.id).execution_options(populate_existing=True), db.session)).all()
    for redemption in held:
        checkout.cancel(redemption.public_id, now=now, reason="erased")
    for hold in db.session.scalars(select(Hold).where(Hold.member_id == member.id, Hold.status == "held")).all():
        ledger.release(hold, now=now, reason="erased")  # a hold no redemption owns: none is made so today


def _anonymise(member: Member, now: datetime) -> None:
    member.email = member.name = member.birthday = member.external_id = member.password_hash = None
    member.last_login_at = None
    member.status, member.erased_at = "erased", now
    db.session.flush()
    for _ in range(5):
        try:
            with db.session.begin_nested():
                member.referral_code = members.new_referral_code()
                db.session.flush()
            return
        except IntegrityError:
            continue  # another member drew the same code: draw again
    raise RuntimeError("could not draw a unique referral code")


def _erasure(member: Member) -> Erasure:
    points = db.session.scalar(select(JournalTransaction.points).where(
        JournalTransaction.reference == _forfeit_reference(member)))
    released = db.session.scalars(select(Redemption.public_id).where(
        Redemption.member_id == member.id, Redemption.release_reason == "erased").order_by(Redemption.id)).all()
    return Erasure(member, -(points or 0), list(released))


# --- scrubbing personal data kept elsewhere -------------------------------------------------------------------

@dataclass(frozen=True)
class _Personal:
    """The member's identifying values, read before they are cleared."""

    public_id: str
    email: str | None
    external_id: str | None

    @property
    def identifiers(self) -> set[str]:
        return {value.lower() for value in (self.email, self.external_id) if value}

    def is_about(self, obj: dict[str, Any]) -> bool:
        return self.public_id in (obj.get("id"), obj.get("member_id"))


def _scrub_elsewhere(member: Member) -> None:
    personal = _Personal(member.public_id, member.email, member.external_id)
    _scrub_stripe_events(member, personal)
    for event in db.session.scalars(select(OutboxEvent).where(OutboxEvent.member_id == member.id)):
        data = _redacted(event.data, personal, about=True)
        if data != event.data:
            event.data = data
    _scrub_stored_responses(personal)


def _scrub_stripe_events(member: Member, personal: _Personal) -> None:
    """Stripe's events name the member by public id, redemption id or PaymentIntent (a refund's charge only by
    the latter), and sometimes only by the buyer's email. Stored events carry no member column, so this reads
    the payloads: a scan of stripe_events, acceptable for something as rare as an erasure."""
    needles = [member.public_id, *(v for v in (member.email, member.external_id) if v)]
    needles += db.session.scalars(select(Redemption.public_id).where(Redemption.member_id == member.id)).all()
    needles += db.session.scalars(select(Order.payment_intent_id).where(
        Order.member_id == member.id, Order.payment_intent_id.is_not(None))).all()
    text = cast(StripeEvent.payload, Text)
    for start in range(0, len(needles), _NEEDLES_PER_QUERY):
        chunk = needles[start:start + _NEEDLES_PER_QUERY]
        for event in db.session.scalars(select(StripeEvent).where(
                or_(*(text.contains(needle, autoescape=True) for needle in chunk)))):
            payload = _stripped(event.payload, personal)  # an event found twice is unchanged the second time
            if payload != event.payload:
                event.payload = payload


def _scrub_stored_responses(personal: _Personal) -> None:
    """Stored answers that mention the member: their personal fields are redacted, so a replay answers what an
    erased member's answer is now."""
    mentions = [StoredResponse.body.contains(personal.public_id, autoescape=True)]
    mentions += [StoredResponse.body.contains(value, autoescape=True) for value in (personal.email,) if value]
    for stored in db.session.scalars(select(StoredResponse).where(or_(*mentions))):
        try:
            body = json.loads(stored.body)
        except ValueError:
            continue
        redacted = _redacted(body, personal)
        if redacted != body:
            stored.body = json.dumps(redacted)


def _redacted(value: Any, personal: _Personal, *, about: bool = False) -> Any:
    """`value` without the member's personal data: the member's own fields in objects about the member (`about`,
    or naming the member by id) cleared, and the member's email or external id cleared wherever it appears."""
    if isinstance(value, dict):
        about = about or personal.is_about(value)
        return {key: None if about and key in MEMBER_PERSONAL_KEYS else _redacted(item, personal)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_redacted(item, personal) for item in value]
    if isinstance(value, str) and value.lower() in personal.identifiers:
        return None
    return value


def _stripped(value: Any, personal: _Personal) -> Any:
    """A Stripe payload without what describes the buyer (keys kept, values cleared) nor the member's own values."""
    if isinstance(value, dict):
        return {key: None if key in STRIPE_PERSONAL_KEYS else _stripped(item, personal) for key, item in value.items()}
    if isinstance(value, list):
        return [_stripped(item, personal) for item in value]
    return _redacted(value, personal)

