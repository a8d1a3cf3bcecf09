"""`POST /v1/webhooks/stripe` (Stripe's deliveries, verified by signature rather than a key) and the stored
Stripe events staff look after; the endpoints staff register for outbound events, with their delivery log."""

from __future__ import annotations

from datetime import timedelta

from flask import request
from marshmallow import Schema, fields

from loyalty.auth.access import require
from loyalty.clock import now
from loyalty.extensions import Blueprint
from loyalty.schemas import ListArgsSchema
from loyalty.settings import settings
from loyalty.unit_of_work import unit_of_work
from loyalty.webhooks import inbound, outbound
from loyalty.webhooks.schemas import (
    DeliveryArgsSchema,
    DeliveryPageSchema,
    DeliverySchema,
    EndpointCreatedSchema,
    EndpointCreateSchema,
    EndpointInputSchema,
    EndpointPageSchema,
    EndpointSchema,
    StripeEventArgsSchema,
    StripeEventPageSchema,
    StripeEventSchema,
)
from loyalty.writes import write

blp = Blueprint("webhooks", __name__, url_prefix="/v1/webhooks", description="Inbound webhooks")


class ReceivedSchema(Schema):
    received = fields.Boolean()
    event_id = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "applied, ignored, waiting, failed or duplicate"})


@blp.post("/stripe")
@blp.response(200, ReceivedSchema)
def stripe_event():
    """A Stripe event, verified with the `Stripe-Signature` header against `LOYALTY_STRIPE_WEBHOOK_SECRET`
    (a wrong secret, a stale timestamp or an altered body answer `400 signature_invalid`; a signed body that is
    no event at all, `400 invalid_payload`). Every event is stored, then applied in the same transaction: one
    that cannot be applied is kept `failed` with the reason, for staff to retry, and answered 200 all the same.
    A redelivery answers `duplicate` and changes nothing, unless the event had failed: then it is tried again."""
    event = inbound.verify(request.get_data(), request.headers.get("Stripe-Signature"), settings())
    fetched_lines = inbound.line_items(event, settings())  # before the transaction begins: Stripe never holds a lock
    with unit_of_work():
        status = inbound.receive(event, fetched_lines, now=now())
    return {"received": True, "event_id": event.event_id, "status": status}


stripe_events_blp = Blueprint("stripe_events", __name__, url_prefix="/v1/admin/stripe-events",
                              description="Stripe events as received: the waiting and failed ones, and retrying them")


@stripe_events_blp.get("")
@require(scope="admin")
@stripe_events_blp.arguments(StripeEventArgsSchema, location="query")
@stripe_events_blp.response(200, StripeEventPageSchema)
def list_stripe_events(args: dict):
    """Stored Stripe events, newest first: `?status=failed` for those that could not be applied (with the
    reason), `?status=waiting` for those waiting for their payment, `overdue` once they have waited longer than
    `LOYALTY_STRIPE_WAITING_OVERDUE_HOURS`."""
    return inbound.list_events(now=now(), overdue_after=_overdue_after(), **args)


@stripe_events_blp.post("/<string:event_id>/retry")
@require(scope="admin")
@write
@stripe_events_blp.response(200, StripeEventSchema)
def retry_stripe_event(event_id: str):
    """Apply a failed or waiting event again, once its cause is fixed; it answers its new status (a settled
    event answers `409 stripe_event_settled`). Applying it still happens once: it is locked while tried."""
    return inbound.retry(event_id, now(), _overdue_after())


def _overdue_after() -> timedelta:
    return timedelta(hours=settings().stripe_waiting_overdue_hours)


endpoints_blp = Blueprint("webhook_endpoints", __name__, url_prefix="/v1/admin/webhook-endpoints",
                          description="Outbound webhook endpoints and their delivery log")


@endpoints_blp.get("")
@require(scope="admin")
@endpoints_blp.arguments(ListArgsSchema, location="query")
@endpoints_blp.response(200, EndpointPageSchema)
def list_endpoints(args: dict):
    return outbound.list_endpoints(**args)


@endpoints_blp.post("")
@require(scope="admin")
@write
@endpoints_blp.arguments(EndpointCreateSchema)
@endpoints_blp.response(201, EndpointCreatedSchema)
def create_endpoint(payload: dict):
    """Register a URL for events. The answer holds the signing secret, shown this once."""
    return outbound.create_endpoint(payload, allow_private=settings().webhook_allow_private_urls)


@endpoints_blp.get("/<string:endpoint_id>")
@require(scope="admin")
@endpoints_blp.response(200, EndpointSchema)
def get_endpoint(endpoint_id: str):
    return outbound.get_endpoint(endpoint_id)


@endpoints_blp.patch("/<string:endpoint_id>")
@require(scope="admin")
@write
@endpoints_blp.arguments(EndpointInputSchema)
@endpoints_blp.response(200, EndpointSchema)
def update_endpoint(payload: dict, endpoint_id: str):
    """Change the URL or the event types, or disable; enabling again clears `failing`."""
    return outbound.update_endpoint(outbound.get_endpoint(endpoint_id), payload,
                                    allow_private=settings().webhook_allow_private_urls)


@endpoints_blp.get("/<string:endpoint_id>/deliveries")
@require(scope="admin")
@endpoints_blp.arguments(DeliveryArgsSchema, location="query")
@endpoints_blp.response(200, DeliveryPageSchema)
def list_deliveries(args: dict, endpoint_id: str):
    """The delivery log, newest first: status, attempts, the last answer or error."""
    return outbound.list_deliveries(outbound.get_endpoint(endpoint_id), **args)


@endpoints_blp.post("/<string:endpoint_id>/deliveries/<string:delivery_id>/replay")
@require(scope="admin")
@write
@endpoints_blp.response(200, DeliverySchema)
def replay_delivery(endpoint_id: str, delivery_id: str):
    """Send a delivery again at the worker's next look, whatever became of it."""
    return outbound.replay(outbound.get_endpoint(endpoint_id), delivery_id, now())
