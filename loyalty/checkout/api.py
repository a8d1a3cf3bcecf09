"""Checkout endpoints for the shop's server."""

from __future__ import annotations

from loyalty.auth.access import require
from loyalty.checkout import service
from loyalty.checkout.schemas import OrderResultSchema, OrderSchema
from loyalty.clock import now
from loyalty.extensions import Blueprint, db

blp = Blueprint("checkout", __name__, url_prefix="/v1", description="Checkout")


@blp.post("/orders")
@require(scope="checkout")
@blp.arguments(OrderSchema)
@blp.response(201, OrderResultSchema)
def record_order(payload: dict):
    """A paid order from a shop not on Stripe, online or in store: earns pending points by the rules
    in force when it was paid. The same order_id again answers the first result and earns nothing more."""
    result = service.record_paid_order(payload, now=now())
    db.session.commit()
    return {"member_id": payload["member_id"], "order": result.order, "breakdown": result.breakdown,
            "transaction_public_id": result.transaction_public_id}
