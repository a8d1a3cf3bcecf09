"""Inbound Stripe events: verified, stored by id, loaded through the schema of their type and applied, once.

Every verified event is stored first, then applied in the same transaction; its status says what became of
it: `applied`; `ignored` (a type, or a payment, the program does not act on); `waiting`, when it arrived
before what it depends on (a refund before its payment): it is applied when the payment is recorded, and
listed as overdue when nothing came for `STRIPE_WAITING_OVERDUE_HOURS`; `failed`, when it cannot be applied
(an object that does not fit its schema, an unknown member): kept with the reason and answered 200, since
Stripe's retries could not change the answer. Staff see waiting and failed events and retry them once the
cause is fixed; Stripe delivering a failed event again (its dashboard's "Resend") is a retry too.

A redelivery meets its first delivery on the unique event id (on PostgreSQL, a concurrent one waits for the
first to commit) and changes nothing, unless the first failed. Only a database that is unreachable or busy
answers 500, so that Stripe tries again later. Stripe's API (a Checkout Session's line items) is called
before the transaction begins, and what it answered is kept with the event for any retry.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from marshmallow import Schema, ValidationError
from sqlalchemy import ColumnElement, Select, and_, func, not_, or_, select
from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import with_expression

from loyalty.checkout import service as checkout
from loyalty.checkout.models import Redemption
from loyalty.checkout.schemas import OrderSchema
from loyalty.db import for_update
from loyalty.errors import Conflict, NotFound, Problem, RedemptionNotHeld, flatten_messages
from loyalty.extensions import db
from loyalty.orders.models import Order
from loyalty.pagination import paginate
from loyalty.settings import Settings
from loyalty.webhooks import stripe_api
from loyalty.webhooks.models import RETRYABLE_STATUSES, StripeEvent
from loyalty.webhooks.schemas import (
    ChargeSchema,
    CheckoutSessionSchema,
    DisputeSchema,
    EnvelopeSchema,
    PaymentIntentSchema,
    PaymentObjectSchema,
    StripeObjectSchema,
)

log = logging.getLogger(__name__)


class SignatureInvalid(Problem):
    status, code, title = 400, "signature_invalid", "Signature invalid"


class NotConfigured(Problem):
    status, code, title = 503, "webhook_not_configured", "Webhook not configured"


@dataclass(frozen=True)
class Verified:
    """A delivery whose signature verified: Stripe's event as sent, and its envelope."""

    event_id: str
    type: str
    created: datetime
    livemode: bool
    payload: dict[str, Any]

    @property
    def object(self) -> dict[str, Any]:
        return self.payload["data"]["object"]


@dataclass(frozen=True)
class Outcome:
    status: str  # applied, ignored, waiting, failed
    detail: str
    waiting_for: str | None = None


def verify(payload: bytes, signature: str | None, settings: Settings) -> Verified:
    """The event, if Stripe signed it with this endpoint's secret and it is an event at all (400 otherwise)."""
    secret = settings.stripe_webhook_secret
    if not secret:
        raise NotConfigured("LOYALTY_STRIPE_WEBHOOK_SECRET is not set, so no event can be verified.")
    tolerance = settings.stripe_webhook_tolerance_seconds
    try:  # the check construct_event makes first, alone: so a forgery is never mistaken for a bad event
        stripe.WebhookSignature.verify_header(payload.decode(), signature or "", secret, tolerance=tolerance)
    except Exception:  # a forged header or body can fail in many ways: every one of them is unverified
        raise SignatureInvalid("The Stripe-Signature header does not verify against this endpoint's secret.") \
            from None
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=tolerance)
        event = json.loads(payload, parse_constant=_not_json, parse_float=_finite)
        envelope = EnvelopeSchema().load(event)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError, ValidationError):
        raise SignatureInvalid("The body is not a Stripe event.", code="invalid_payload") from None
    return Verified(envelope["id"], envelope["type"], datetime.fromtimestamp(envelope["created"], tz=UTC),
                    envelope["livemode"], event)


def _not_json(constant: str) -> None:
    """NaN and Infinity: Python reads them, but they are not JSON, and no database JSON column stores them."""
    raise ValueError(f"{constant} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999 reads as infinity, which no JSON column stores either
        raise ValueError(f"{text} is past any float")
    return number


def line_items(event: Verified, settings: Settings) -> list[dict[str, Any]] | None:
    """A paid Checkout Session's line items from Stripe's API, or None (no API key, Stripe did not answer, or
    not such an event). Call it before any transaction begins: a slow Stripe must never hold a lock."""
    if event.type not in SESSION_PAID_TYPES:
        return None
    try:
        session = CheckoutSessionSchema().load(event.object)
    except ValidationError:
        return None  # it fails when applied, with the reasons
    return stripe_api.session_lines(session["id"], settings) if _session_paid(session) else None


def receive(event: Verified, fetched_lines: list[dict[str, Any]] | None, *, now: datetime) -> str:
    """Store and apply one verified delivery; answers its status, or `duplicate`. Adds and flushes; the caller
    commits."""
    row = StripeEvent(event_id=event.event_id, type=event.type, object_id=_object_id(event.object),
                      livemode=event.livemode, stripe_created=event.created, status="waiting",
                      payload=event.payload, line_items=fetched_lines, received_at=now)
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        return _redelivered(event.event_id, now)
    _apply(row, now)
    return row.status


def _object_id(obj: dict[str, Any]) -> str | None:
    object_id = obj.get("id")
    return object_id if isinstance(object_id, str) and 0 < len(object_id) <= 255 and object_id.isprintable() \
        else None


def _redelivered(event_id: str, now: datetime) -> str:
    """Stripe sent a stored event again: that changes nothing, unless it failed; then it is tried again."""
    row = _locked(event_id)
    if row.status != "failed":
        return "duplicate"
    _apply(row, now)
    return row.status


def _locked(event_id: str) -> StripeEvent | None:
    """The stored event, locked, as it is now: whoever tries it again waits for whoever is trying it."""
    return db.session.scalar(for_update(select(StripeEvent).where(StripeEvent.event_id == event_id)
                                        .execution_options(populate_existing=True), db.session))


def _apply(row: StripeEvent, now: datetime) -> None:
    """Load the event's object through its type's schema and apply it, in a savepoint: whatever refuses it is
    rolled back and kept as the reason it failed."""
    try:
        with db.session.begin_nested():
            outcome = _handle(row, now)
    except ValidationError as invalid:
        outcome = Outcome("failed", f"invalid_payload: {_reasons(flatten_messages(invalid.messages))}")
    except Problem as refusal:
        reasons = f" ({_reasons(refusal.errors)})" if refusal.errors else ""
        outcome = Outcome("failed", f"{refusal.code}: {refusal.detail or refusal.title}{reasons}")
    except (OperationalError, InterfaceError):
        raise  # the database is unreachable or busy: Stripe's own retry will do
    except Exception as error:  # a bug: kept, so staff see it and retry it once it is fixed, not 500 for days
        log.exception("stripe event %s (%s) could not be applied", row.event_id, row.type)
        outcome = Outcome("failed", f"internal_error: {type(error).__name__} while applying it; see the logs.")
    if outcome.status == "failed":
        log.warning("stripe event %s (%s) failed: %s", row.event_id, row.type, outcome.detail)
    row.status, row.detail, row.waiting_for = outcome.status, outcome.detail[:500], outcome.waiting_for
    row.applied_at = now if outcome.status == "applied" else None
    db.session.flush()


def _handle(row: StripeEvent, now: datetime) -> Outcome:
    handling = HANDLERS.get(row.type)
    if handling is None:
        return Outcome("ignored", "Not an event the loyalty program acts on.")
    schema, handler = handling
    return handler(schema().load(row.payload["data"]["object"]), row, now)


def _reasons(errors: dict[str, list[str]]) -> str:
    return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())


def _apply_waiting(payment_intent: str | None, now: datetime) -> None:
    """Apply the events that arrived before this payment, in the order Stripe created them."""
    if not payment_intent:
        return
    waiting = db.session.scalars(select(StripeEvent).where(
        StripeEvent.status == "waiting", StripeEvent.waiting_for == _waiting_key(payment_intent))
        .order_by(StripeEvent.stripe_created, StripeEvent.id)).all()
    for row in waiting:
        _apply(row, now)


def _waiting_key(payment_intent: str) -> str:
    return f"payment_intent:{payment_intent}"


# --- staff: waiting and failed events, and retrying them ---------------------------------------------------

def _overdue(now: datetime, after: timedelta) -> ColumnElement[bool]:
    """Waiting longer than `after` (the configured time): the payment it waits for may never come."""
    since = now - after
    return and_(StripeEvent.status == "waiting", StripeEvent.received_at <= since)


def _events(now: datetime, overdue_after: timedelta) -> Select:
    """Stored events, each saying whether it is overdue."""
    return select(StripeEvent).options(with_expression(StripeEvent.overdue, _overdue(now, overdue_after)))


def list_events(*, now: datetime, overdue_after: timedelta, limit: int, starting_after: str | None = None,
                status: str | None = None, overdue: bool | None = None) -> dict:
    """Stored events, newest first."""
    query, overdue_now = _events(now, overdue_after), _overdue(now, overdue_after)
    if status:
        query = query.where(StripeEvent.status == status)
    if overdue is not None:
        query = query.where(overdue_now if overdue else not_(overdue_now))
    return paginate(query, StripeEvent, limit=limit, starting_after=starting_after, newest_first=True)


def needing_attention(now: datetime, overdue_after: timedelta) -> dict[str, int]:
    """How many events failed, wait, and wait past the configured time: counted on the status index, never over
    the applied ones."""
    counts = dict(db.session.execute(select(StripeEvent.status, func.count()).where(
        StripeEvent.status.in_(RETRYABLE_STATUSES)).group_by(StripeEvent.status)).all())
    overdue = db.session.scalar(select(func.count()).select_from(StripeEvent).where(_overdue(now, overdue_after)))
    return {"failed": counts.get("failed", 0), "waiting": counts.get("waiting", 0), "overdue": overdue}


def retry(event_id: str, now: datetime, overdue_after: timedelta) -> StripeEvent:
    """Apply a failed or waiting event again, as if it had just arrived; it changes nothing when it fails again
    or still waits. Answers it as it is now."""
    row = _locked(event_id)
    if row is None:
        raise NotFound("No Stripe event has this id.")
    if row.status not in RETRYABLE_STATUSES:
        raise Conflict(f"This event was {row.status}: only failed and waiting events are tried again.",
                       code="stripe_event_settled")
    _apply(row, now)
    return db.session.scalar(_events(now, overdue_after).where(StripeEvent.id == row.id)
                             .execution_options(populate_existing=True))


# --- payments ----------------------------------------------------------------------------------------------

SESSION_PAID_TYPES = ("checkout.session.completed", "checkout.session.async_payment_succeeded")


def _session_paid(session: dict[str, Any]) -> bool:
    return session["mode"] != "setup" and session["payment_status"] in ("paid", "no_payment_required")


def _session_completed(session: dict[str, Any], row: StripeEvent, now: datetime) -> Outcome:
    if not _session_paid(session):
        return Outcome("ignored", "Not paid yet (an asynchronous payment method, waiting for "
                                  "checkout.session.async_payment_succeeded), or a setup session that takes none.")
    if session["currency"] is None:
        raise ValidationError({"currency": ["A paid session has a currency."]})
    totals = session["total_details"] or {}
    lines = row.line_items or [
        {"sku": "checkout_session", "quantity": 1, "unit_amount": session["amount_subtotal"] or 0}]
    return _paid(session, row, now, currency=session["currency"], total=session["amount_total"] or 0,
                 lines=lines, shipping=totals.get("amount_shipping") or 0,
                 discount=totals.get("amount_discount") or 0, payment_intent=session["payment_intent"])


def _intent_succeeded(intent: dict[str, Any], row: StripeEvent, now: datetime) -> Outcome:
    amount = intent["amount_received"]
    return _paid(intent, row, now, currency=intent["currency"], total=amount,
                 lines=[{"sku": "payment_intent", "quantity": 1, "unit_amount": amount}], shipping=0, discount=0,
                 payment_intent=intent["id"])


def _paid(obj: dict[str, Any], row: StripeEvent, now: datetime, *, currency: str, total: int,
          lines: list[dict[str, Any]], shipping: int, discount: int, payment_intent: str | None) -> Outcome:
    """Capture the redemption and earn on the amount paid; the second event of one purchase (a session and
    its PaymentIntent) finds the order recorded and only links the PaymentIntent."""
    metadata = obj["metadata"]
    redemption = _redemption(metadata)
    member_id = metadata.get("loyalty_member_id") or (redemption.member.public_id if redemption else None)
    if not member_id:
        return Outcome("ignored", "No loyalty_member_id in the metadata: not a member's purchase.")
    order_id = metadata.get("order_id") or (redemption.order_id if redemption else obj["id"])
    paid_at = min(row.stripe_created, now)
    # The other event of the purchase may have named no order_id: its PaymentIntent finds the order then.
    if (order := _recorded_order(order_id, payment_intent)) is not None:
        return _already_recorded(order, redemption, payment_intent, paid_at, now)
    order = {"order_id": order_id, "member_id": member_id, "channel": "web", "currency": currency, "lines": lines,
             "total_amount": total, "shipping_amount": shipping, "discount_amount": discount, "paid_at": paid_at,
             "redemption_id": redemption.public_id if redemption else None}
    if errors := OrderSchema().validate(order):  # what the API would refuse in a paid order, as it would
        raise ValidationError(errors)
    try:
        result = checkout.record_paid_order(order, now=now, payment_intent_id=payment_intent)
    except Conflict as conflict:  # the purchase's other event recorded it at the same moment
        order = _recorded_order(order_id, payment_intent)
        if conflict.code != "order_conflict" or order is None:
            raise
        return _already_recorded(order, redemption, payment_intent, paid_at, now)
    _apply_waiting(payment_intent, now)
    return Outcome("applied", f"Order {order_id} earned {result.order.points_earned} points.")


def _already_recorded(order: Order, redemption: Redemption | None, payment_intent: str | None, paid_at: datetime,
                      now: datetime) -> Outcome:
    """Link what this event adds to the order: its PaymentIntent, and a redemption named only here."""
    if order.payment_intent_id is None and payment_intent:
        order.payment_intent_id = payment_intent
    if redemption is not None and order.redemption_id is None:
        checkout.pay(redemption, paid_at=paid_at, now=now)
        order.redemption_id = redemption.id  # so a refund restores the points it redeemed
    _apply_waiting(payment_intent, now)
    return Outcome("applied", f"Order {order.order_id} was already recorded.")


def _redemption(metadata: dict[str, Any]) -> Redemption | None:
    public_id = metadata.get("loyalty_redemption_id")
    return db.session.scalar(select(Redemption).where(Redemption.public_id == public_id)) if public_id else None


def _released(reason: str) -> Callable[[dict[str, Any], StripeEvent, datetime], Outcome]:
    def release(obj: dict[str, Any], row: StripeEvent, now: datetime) -> Outcome:
        redemption = _redemption(obj["metadata"])
        if redemption is None:
            return Outcome("ignored", "No loyalty_redemption_id in the metadata: nothing was held.")
        try:
            checkout.cancel(redemption.public_id, now=now, reason=reason)
        except RedemptionNotHeld:
            return Outcome("ignored", f"Redemption {redemption.public_id} was already captured.")
        return Outcome("applied", f"Redemption {redemption.public_id} released ({reason}).")
    return release


def _payment_failed(intent: dict[str, Any], row: StripeEvent, now: datetime) -> Outcome:
    return Outcome("ignored", "A failed attempt changes nothing: the hold stays for the customer's retry "
                              "until it succeeds, is canceled or expires.")


# --- refunds and disputes ----------------------------------------------------------------------------------

def _recorded_order(order_id: str, payment_intent: str | None) -> Order | None:
    """The order a purchase was recorded as: by its order_id, else by its PaymentIntent. One read, since
    nearly every purchase is new and both answers are then none."""
    by_id = Order.order_id == order_id
    if not payment_intent:
        return checkout.find_order(order_id)
    return db.session.scalars(select(Order).where(or_(by_id, Order.payment_intent_id == payment_intent))
                              .order_by(by_id.desc()).limit(1)).first()


def _order_paid_by(payment_intent: str | None, metadata: dict[str, Any]) -> Order | None:
    """The order a charge or dispute is about, locked: by its PaymentIntent, else by the order_id it names."""
    if payment_intent:
        order = db.session.scalar(for_update(select(Order).where(Order.payment_intent_id == payment_intent)
                                             .execution_options(populate_existing=True), db.session))
        if order is not None:
            return order
    return checkout.find_order(metadata["order_id"], lock=True) if metadata.get("order_id") else None


def _not_yet(payment_intent: str | None, what: str) -> Outcome:
    if not payment_intent:
        return Outcome("ignored", f"{what} for a payment the loyalty program never saw.")
    return Outcome("waiting", f"{what} arrived before its payment; applied once the payment is recorded.",
                   waiting_for=_waiting_key(payment_intent))


def _charge_refunded(charge: dict[str, Any], row: StripeEvent, now: datetime) -> Outcome:
    """`amount_refunded` is cumulative: apply only what is new since the refunds seen so far."""
    order = _order_paid_by(charge["payment_intent"], charge["metadata"])
    if order is None:
        return _not_yet(charge["payment_intent"], "A refund")
    new = min(charge["amount_refunded"] - checkout.refunded_by(order, "stripe"),
              order.total_amount - order.refunded_amount)
    if new <= 0:
        return Outcome("applied", "Nothing new refunded since the refunds already seen.")
    refund = checkout.refund_order(order, {"refund_id": f"{charge['id']}:{charge['amount_refunded']}",
                                              "amount": new, "reason": "refunded in Stripe"}, now=now,
                             source="stripe")
    return Outcome("applied", f"Refunded {new}: {refund.points_clawed_back} points clawed back, "
                              f"{refund.points_restored} restored.")


def _dispute_created(dispute: dict[str, Any], row: StripeEvent, now: datetime) -> Outcome:
    order = _order_paid_by(dispute["payment_intent"], dispute["metadata"])
    if order is None:
        return _not_yet(dispute["payment_intent"], "A dispute")
    if order.dispute_status in ("won", "lost"):  # a charge has one dispute: its closing came first
        return Outcome("applied", f"Order {order.order_id}'s dispute was already closed ({order.dispute_status}).")
    checkout.open_dispute(order)
    return Outcome("applied", f"Order {order.order_id} disputed: its pending points are frozen.")


def _dispute_closed(dispute: dict[str, Any], row: StripeEvent, now: datetime) -> Outcome:
    order = _order_paid_by(dispute["payment_intent"], dispute["metadata"])
    if order is None:
        return _not_yet(dispute["payment_intent"], "A dispute's outcome")
    lost = dispute["status"] == "lost"
    checkout.close_dispute(order, dispute_id=dispute["id"], lost=lost, amount=dispute["amount"], now=now)
    return Outcome("applied", f"Dispute {dispute['status']}: " +
                   ("the points follow the money back." if lost else "the points go on as before."))


# Each handled type: the schema its object is loaded through, and what applies it.
HANDLERS: dict[str, tuple[type[Schema], Callable[[dict[str, Any], StripeEvent, datetime], Outcome]]] = {
    "checkout.session.completed": (CheckoutSessionSchema, _session_completed),
    "checkout.session.async_payment_succeeded": (CheckoutSessionSchema, _session_completed),
    "checkout.session.expired": (PaymentObjectSchema, _released("session_expired")),
    "checkout.session.async_payment_failed": (PaymentObjectSchema, _released("payment_failed")),
    "payment_intent.succeeded": (PaymentIntentSchema, _intent_succeeded),
    "payment_intent.canceled": (PaymentObjectSchema, _released("payment_canceled")),
    "payment_intent.payment_failed": (StripeObjectSchema, _payment_failed),
    "charge.refunded": (ChargeSchema, _charge_refunded),
    "charge.dispute.created": (DisputeSchema, _dispute_created),
    "charge.dispute.closed": (DisputeSchema, _dispute_closed),
}
