"""Shapes of webhook endpoints and their delivery log; of Stripe's events as the program reads them, and of the
stored events staff look after."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validate

from loyalty.events import EVENT_TYPES
from loyalty.schemas import CURRENCY, MONEY, UNSTORABLE, ListArgsSchema, Pattern, StrictSchema
from loyalty.webhooks.models import EVENT_STATUSES

EVENT_TYPE_LIST = fields.List(fields.String(validate=validate.OneOf(EVENT_TYPES)), validate=validate.Length(max=20),
                              metadata={"description": "The event types to send; empty or absent: all of them."})


class EndpointInputSchema(StrictSchema):
    url = fields.String(validate=validate.Length(min=1, max=2000))
    description = fields.String(validate=validate.Length(max=300), allow_none=True)
    event_types = EVENT_TYPE_LIST
    enabled = fields.Boolean()


class EndpointCreateSchema(EndpointInputSchema):
    url = fields.String(required=True, validate=validate.Length(min=1, max=2000),
                        metadata={"description": "http(s); in production never a private or loopback address."})


class EndpointSchema(Schema):
    id = fields.String(attribute="public_id")
    url = fields.String()
    description = fields.String(allow_none=True)
    event_types = fields.List(fields.String())
    enabled = fields.Boolean()
    failing = fields.Boolean(metadata={"description": "Set after repeated failed attempts; cleared by a success."})
    consecutive_failures = fields.Integer()
    created_at = fields.DateTime()


class EndpointCreatedSchema(EndpointSchema):
    secret = fields.String(metadata={"description": "Signs every delivery (Loyalty-Signature). Shown only now."})


class EndpointPageSchema(Schema):
    data = fields.List(fields.Nested(EndpointSchema))
    has_more = fields.Boolean()


class DeliveryArgsSchema(ListArgsSchema):
    status = fields.String(validate=validate.OneOf(("pending", "delivered", "failed")))


class DeliverySchema(Schema):
    id = fields.String(attribute="public_id")
    event_id = fields.String(attribute="event.public_id")
    event_type = fields.String(attribute="event.type")
    status = fields.String()
    attempts = fields.Integer()
    next_attempt_at = fields.DateTime()
    last_attempt_at = fields.DateTime(allow_none=True)
    last_status_code = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class DeliveryPageSchema(Schema):
    data = fields.List(fields.Nested(DeliverySchema))
    has_more = fields.Boolean()


# --- Stripe's events, as the program reads them ----------------------------------------------------------------
# Each handled type's object is loaded through its schema before anything is applied: what does not fit is
# stored as a failed event with the schema's reasons, never a 500. Bounds are those of the columns the values
# end up in (an order_id in orders.order_id, a PaymentIntent id in orders.payment_intent_id).

# Stripe's ids and event types: printable ASCII without spaces.
_STRIPE_ID = re.compile(r"[\x21-\x7e]+")


def _storable(value: str) -> None:
    if UNSTORABLE.search(value):
        raise ValidationError("Must not contain NUL characters or lone surrogates.")


def _text(max_length: int, error: str | None = None, **options: Any) -> fields.String:
    return fields.String(validate=[validate.Length(max=max_length, error=error), _storable], **options)


def _stripe_id(**options: Any) -> fields.String:
    """An object's id: at most 128 characters (Stripe's are under 70), so that what is derived from it fits its
    column: an order id when the metadata names none, a refund id of the charge and its amount refunded."""
    return fields.String(validate=[validate.Length(min=1, max=128), Pattern(_STRIPE_ID)], **options)


def _money(**options: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=MONEY, **options)


class StripeObjectSchema(Schema):
    """Stripe's objects carry many fields the program does not read: those are left out, not refused."""

    class Meta:
        unknown = EXCLUDE


class EventDataSchema(StripeObjectSchema):
    object = fields.Dict(required=True)


class EnvelopeSchema(StripeObjectSchema):
    """What makes a body a Stripe event at all; a signed body that lacks it is refused, not stored."""

    id = fields.String(required=True, validate=[validate.Length(max=255), Pattern(_STRIPE_ID)])
    type = fields.String(required=True, validate=[validate.Length(max=100), Pattern(_STRIPE_ID)])
    created = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=253_402_300_799))
    livemode = fields.Boolean(load_default=False)
    data = fields.Nested(EventDataSchema, required=True)


class MetadataSchema(StripeObjectSchema):
    """The keys the shop puts in a payment's metadata for the program; Stripe allows values of up to 500
    characters, the program keeps fewer."""

    error_messages = {"type": "Must be an object of keys and values."}

    loyalty_member_id = _text(64)
    order_id = _text(128, "At most {max} characters: the program keeps order ids of up to {max}.")
    loyalty_redemption_id = _text(32)


class PaymentObjectSchema(StripeObjectSchema):
    """Every handled object: its metadata, an object whether Stripe sends one or null."""

    metadata = fields.Nested(MetadataSchema, load_default=dict)

    @pre_load
    def _null_metadata_is_empty(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, dict) and data.get("metadata", {}) is None:
            return {**data, "metadata": {}}
        return data


class TotalDetailsSchema(StripeObjectSchema):
    amount_shipping = _money(load_default=0, allow_none=True)
    amount_discount = _money(load_default=0, allow_none=True)


class CheckoutSessionSchema(PaymentObjectSchema):
    id = _stripe_id(required=True)
    mode = fields.String(load_default="payment")
    payment_status = fields.String(required=True)
    currency = fields.String(required=True, validate=CURRENCY, allow_none=True)
    amount_subtotal = _money(load_default=None, allow_none=True)
    amount_total = _money(load_default=None, allow_none=True)
    total_details = fields.Nested(TotalDetailsSchema, load_default=dict, allow_none=True)
    payment_intent = _stripe_id(load_default=None, allow_none=True)


class PaymentIntentSchema(PaymentObjectSchema):
    id = _stripe_id(required=True)
    amount_received = _money(required=True)
    currency = fields.String(required=True, validate=CURRENCY)


class ChargeSchema(PaymentObjectSchema):
    id = _stripe_id(required=True)
    amount_refunded = _money(required=True)
    payment_intent = _stripe_id(load_default=None, allow_none=True)


class DisputeSchema(PaymentObjectSchema):
    id = _stripe_id(required=True)
    status = fields.String(required=True, validate=validate.Length(max=40))
    amount = _money(load_default=0)
    payment_intent = _stripe_id(load_default=None, allow_none=True)


# --- Stored Stripe events, for staff ---------------------------------------------------------------------------

class StripeEventArgsSchema(ListArgsSchema):
    status = fields.String(validate=validate.OneOf(EVENT_STATUSES))
    overdue = fields.Boolean(metadata={"description": "Only waiting events past `LOYALTY_STRIPE_WAITING_OVERDUE_HOURS` "
                                                      "(true), or all but those (false)."})
    starting_after = fields.String(validate=validate.Length(min=1, max=255))


class StripeEventSchema(Schema):
    id = fields.String(attribute="event_id", metadata={"description": "Stripe's event id."})
    type = fields.String()
    object_id = fields.String(allow_none=True, metadata={"description": "The id of the object the event is about."})
    livemode = fields.Boolean()
    created = fields.DateTime(attribute="stripe_created", metadata={"description": "When Stripe created it."})
    status = fields.String(metadata={"description": "applied, ignored (not a type or payment the program acts on), "
                                                    "waiting (for its payment) or failed."})
    detail = fields.String(allow_none=True, metadata={"description": "What was done, or why it failed."})
    waiting_for = fields.String(allow_none=True)
    overdue = fields.Boolean(metadata={"description": "Waiting longer than `LOYALTY_STRIPE_WAITING_OVERDUE_HOURS`: "
                                                      "its payment may never come."})
    received_at = fields.DateTime()
    applied_at = fields.DateTime(allow_none=True)


class StripeEventPageSchema(Schema):
    data = fields.List(fields.Nested(StripeEventSchema))
    has_more = fields.Boolean()
