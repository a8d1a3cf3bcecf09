"""Shapes of webhook endpoints and their delivery log."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from loyalty.schemas import ListArgsSchema, StrictSchema
from loyalty.webhooks.outbox import EVENT_TYPES

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
