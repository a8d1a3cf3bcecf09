"""`POST /v1/webhooks/stripe`: Stripe's deliveries, verified by signature rather than a key."""

from __future__ import annotations

from flask import request
from marshmallow import Schema, fields

from loyalty.clock import now
from loyalty.extensions import Blueprint, db
from loyalty.webhooks import inbound

blp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks", description="Inbound webhooks")


class ReceivedSchema(Schema):
    received = fields.Boolean()
    event_id = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "applied, ignored, waiting, failed or duplicate"})


@blp.post("/stripe")
@blp.response(200, ReceivedSchema)
def stripe_event():
    """A Stripe event, verified with the `Stripe-Signature` header against `LOYALTY_STRIPE_WEBHOOK_SECRET`
    (a wrong secret, a stale timestamp or an altered body answer `400 signature_invalid`). It is stored and
    applied in one transaction: a redelivery answers 200 `duplicate` and changes nothing."""
    status, event_id = inbound.receive(request.get_data(), request.headers.get("Stripe-Signature"), now=now())
    db.session.commit()
    return {"received": True, "event_id": event_id, "status": status}
