"""Checkout endpoints for the shop's server: quote, redemptions, paid orders and refunds."""

from __future__ import annotations

from datetime import timedelta

from loyalty.auth.access import require
from loyalty.checkout import service
from loyalty.checkout.schemas import (
    OrderResultSchema,
    OrderSchema,
    QuoteRequestSchema,
    QuoteSchema,
    RedemptionRequestSchema,
    RedemptionSchema,
    RefundRequestSchema,
    RefundSchema,
)
from loyalty.clock import now
from loyalty.extensions import Blueprint
from loyalty.settings import settings
from loyalty.unit_of_work import unit_of_work
from loyalty.writes import write

blp = Blueprint("checkout", __name__, url_prefix="/v1", description="Checkout")


@blp.post("/checkout/quote")
@require(scope="checkout")
@blp.arguments(QuoteRequestSchema)
@blp.response(200, QuoteSchema)
def quote(payload: dict):
    """What an order would earn (with why, and when the points activate), how many points may pay for it
    and what they are worth, whether a coupon applies and what it takes off, and the tier discount.
    Changes nothing."""
    return service.quote(payload, now=now())


@blp.post("/redemptions")
@require(scope="checkout")
@write(key_required=True)
@blp.arguments(RedemptionRequestSchema)
@blp.response(201, RedemptionSchema)
def create_redemption(payload: dict):
    """Hold points and/or reserve a coupon use for an order while it is paid, until `expires_at`.
    Requires `Idempotency-Key`. Capture it when the payment succeeds, cancel it when it is abandoned;
    a failed payment attempt changes nothing, so the same redemption serves the retry."""
    hold_for = timedelta(minutes=settings().redemption_hold_minutes)
    return service.create_redemption(payload, now=now(), hold_for=hold_for)


@blp.get("/redemptions/<string:redemption_id>")
@require(scope="checkout")
@blp.response(200, RedemptionSchema)
def get_redemption(redemption_id: str):
    """A redemption as it stands; one past `expires_at` is released on the spot."""
    with unit_of_work():  # a read that may write: the release
        redemption = service.settle_if_expired(service.get_redemption(redemption_id), now=now())
    return redemption


@blp.post("/redemptions/<string:redemption_id>/capture")
@require(scope="checkout")
@write
@blp.response(200, RedemptionSchema)
def capture_redemption(redemption_id: str):
    """The payment succeeded: the points are redeemed and the coupon use counts. Capturing twice answers
    the same; after `expires_at` it is `hold_expired`, and a released redemption is `redemption_not_held`."""
    return service.capture(redemption_id, now=now())


@blp.post("/redemptions/<string:redemption_id>/cancel")
@require(scope="checkout")
@write
@blp.response(200, RedemptionSchema)
def cancel_redemption(redemption_id: str):
    """The checkout was abandoned: points and coupon go back. Canceling twice answers the same."""
    return service.cancel(redemption_id, now=now())


@blp.post("/orders")
@require(scope="checkout")
@write
@blp.arguments(OrderSchema)
@blp.response(201, OrderResultSchema)
def record_order(payload: dict):
    """A paid order from a shop not on Stripe, online or in store: captures its redemption and earns
    pending points on what was paid, by the rules in force when it was paid. The same order_id again
    answers the first result and earns nothing more."""
    result = service.record_paid_order(payload, now=now())
    return {"member_id": payload["member_id"], "order": result.order, "breakdown": result.breakdown,
            "transaction_public_id": result.transaction_public_id}


@blp.post("/orders/<string:order_id>/refunds")
@require(scope="checkout")
@write
@blp.arguments(RefundRequestSchema)
@blp.response(201, RefundSchema)
def refund_order(payload: dict, order_id: str):
    """Money given back, in full or in part: earned points are clawed back (from pending first; what the
    member already spent is recorded as shortfall, never below zero) and redeemed points restored, both in
    proportion. The same refund_id again answers the first result."""
    return service.refund(order_id, payload, now=now())
