"""Inbound Stripe events: verified, stored by id and applied in one transaction, exactly once.

A redelivery meets its first delivery on the unique event id (on PostgreSQL, a concurrent one waits for the
first to commit) and changes nothing. An event that arrives before what it depends on (a refund before its
payment) is stored as `waiting` and applied when the payment is recorded. An event whose effect is refused
for good (an unknown member, say) is stored as `failed` with the reason and answered 200, since Stripe's
retries could not change the answer; anything unexpected rolls back and answers 500, so Stripe retries.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from flask import current_app
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from loyalty.checkout import service as checkout
from loyalty.checkout.models import Order, Redemption
from loyalty.db import for_update
from loyalty.errors import Conflict, Problem, RedemptionNotHeld
from loyalty.extensions import db
from loyalty.webhooks import stripe_api
from loyalty.webhooks.models import StripeEvent

log = logging.getLogger(__name__)


class SignatureInvalid(Problem):
    status, code, title = 400, "signature_invalid", "Signature invalid"


class NotConfigured(Problem):
    status, code, title = 503, "webhook_not_configured", "Webhook not configured"


@dataclass(frozen=True)
class Outcome:
    status: str  # applied, ignored, waiting
    detail: str
    waiting_for: str | None = None


def receive(payload: bytes, signature: str | None, *, now: datetime) -> tuple[str, str | None]:
    """Verify, store and apply one delivery; answers (status, event id). Adds and flushes; the caller commits."""
    secret = current_app.config["STRIPE_WEBHOOK_SECRET"]
    if not secret:
        raise NotConfigured("LOYALTY_STRIPE_WEBHOOK_SECRET is not set, so no event can be verified.")
    tolerance = current_app.config["STRIPE_WEBHOOK_TOLERANCE_SECONDS"]
    try:  # the check construct_event makes first, alone: so a forgery is never mistaken for a bad event
        stripe.WebhookSignature.verify_header(payload.decode(), signature or "", secret, tolerance=tolerance)
    except Exception:  # a forged header or body can fail in many ways: every one of them is unverified
        raise SignatureInvalid("The Stripe-Signature header does not verify against this endpoint's secret.") \
            from None
    try:
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=tolerance)
        event = json.loads(payload)
        obj = event["data"]["object"]
        row = StripeEvent(event_id=str(event["id"])[:255], type=str(event["type"])[:100],
                          object_id=str(obj.get("id"))[:255] if obj.get("id") else None,
                          livemode=bool(event.get("livemode")), stripe_created=_time(event["created"]),
                          status="waiting", payload=event, received_at=now)
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError):
        raise SignatureInvalid("The body is not a Stripe event.", code="invalid_payload") from None
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        return "duplicate", row.event_id
    _apply(row, now)
    return row.status, row.event_id


def _time(seconds: int) -> datetime:
    return datetime.fromtimestamp(int(seconds), tz=UTC)


def _apply(row: StripeEvent, now: datetime) -> None:
    handler = HANDLERS.get(row.type)
    try:
        with db.session.begin_nested():
            outcome = handler(row.payload["data"]["object"], row, now) if handler else \
                Outcome("ignored", "Not an event the loyalty program acts on.")
    except Problem as refusal:
        outcome = Outcome("failed", f"{refusal.code}: {refusal.detail or refusal.title}")
        log.warning("stripe event %s (%s) failed: %s", row.event_id, row.type, outcome.detail)
    row.status, row.detail, row.waiting_for = outcome.status, outcome.detail[:500], outcome.waiting_for
    row.applied_at = now if outcome.status == "applied" else None
    db.session.flush()


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


# --- payments ----------------------------------------------------------------------------------------------

def _session_completed(session: dict[str, Any], row: StripeEvent, now: datetime) -> Outcome:
    if session.get("payment_status") not in ("paid", "no_payment_required"):
        return Outcome("ignored", "Not paid yet (an asynchronous payment method); waiting for "
                                  "checkout.session.async_payment_succeeded.")
    totals = session.get("total_details") or {}
    lines = stripe_api.session_lines(session["id"]) or [
        {"sku": "checkout_session", "quantity": 1, "unit_amount": session.get("amount_subtotal") or 0}]
    return _paid(session, row, now, currency=session["currency"], total=session.get("amount_total") or 0,
                 lines=lines, shipping=totals.get("amount_shipping") or 0,
                 discount=totals.get("amount_discount") or 0, payment_intent=session.get("payment_intent"))


def _intent_succeeded(intent: dict[str, Any], row: StripeEvent, now: datetime) -> Outcome:
    amount = intent.get("amount_received") or 0
    return _paid(intent, row, now, currency=intent["currency"], total=amount,
                 lines=[{"sku": "payment_intent", "quantity": 1, "unit_amount": amount}], shipping=0, discount=0,
                 payment_intent=intent["id"])


def _paid(obj: dict[str, Any], row: StripeEvent, now: datetime, *, currency: str, total: int,
          lines: list[dict[str, Any]], shipping: int, discount: int, payment_intent: str | None) -> Outcome:
    """Capture the redemption and earn on the amount paid; the second event of one purchase (a session and
    its PaymentIntent) finds the order recorded and only links the PaymentIntent."""
    metadata = obj.get("metadata") or {}
    redemption = _redemption(metadata)
    member_id = metadata.get("loyalty_member_id") or (redemption.member.public_id if redemption else None)
    if not member_id:
        return Outcome("ignored", "No loyalty_member_id in the metadata: not a member's purchase.")
    order_id = metadata.get("order_id") or (redemption.order_id if redemption else obj["id"])
    paid_at = min(row.stripe_created, now)
    # The other event of the purchase may have named no order_id: its PaymentIntent finds the order then.
    if (order := _recorded_order(order_id, payment_intent)) is not None:
        return _already_recorded(order, redemption, payment_intent, paid_at, now)
    try:
        result = checkout.record_paid_order({
            "order_id": order_id, "member_id": member_id, "channel": "web", "currency": currency, "lines": lines,
            "total_amount": total, "shipping_amount": shipping, "discount_amount": discount, "paid_at": paid_at,
            "redemption_id": redemption.public_id if redemption else None,
        }, now=now, payment_intent_id=payment_intent)
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
        redemption = _redemption(obj.get("metadata") or {})
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
    order = _order_paid_by(charge.get("payment_intent"), charge.get("metadata") or {})
    if order is None:
        return _not_yet(charge.get("payment_intent"), "A refund")
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
    order = _order_paid_by(dispute.get("payment_intent"), dispute.get("metadata") or {})
    if order is None:
        return _not_yet(dispute.get("payment_intent"), "A dispute")
    if order.dispute_status in ("won", "lost"):  # a charge has one dispute: its closing came first
        return Outcome("applied", f"Order {order.order_id}'s dispute was already closed ({order.dispute_status}).")
    checkout.open_dispute(order)
    return Outcome("applied", f"Order {order.order_id} disputed: its pending points are frozen.")


def _dispute_closed(dispute: dict[str, Any], row: StripeEvent, now: datetime) -> Outcome:
    order = _order_paid_by(dispute.get("payment_intent"), dispute.get("metadata") or {})
    if order is None:
        return _not_yet(dispute.get("payment_intent"), "A dispute's outcome")
    lost = dispute.get("status") == "lost"
    checkout.close_dispute(order, dispute_id=dispute["id"], lost=lost,
                           amount=dispute.get("amount") or 0, now=now)
    return Outcome("applied", f"Dispute {dispute.get('status')}: " +
                   ("the points follow the money back." if lost else "the points go on as before."))


HANDLERS: dict[str, Callable[[dict[str, Any], StripeEvent, datetime], Outcome]] = {
    "checkout.session.completed": _session_completed,
    "checkout.session.async_payment_succeeded": _session_completed,
    "checkout.session.expired": _released("session_expired"),
    "checkout.session.async_payment_failed": _released("payment_failed"),
    "payment_intent.succeeded": _intent_succeeded,
    "payment_intent.canceled": _released("payment_canceled"),
    "payment_intent.payment_failed": _payment_failed,
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _dispute_created,
    "charge.dispute.closed": _dispute_closed,
}
