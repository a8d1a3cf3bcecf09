"""Order shapes."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from loyalty.checkout.models import CHANNELS
from loyalty.schemas import StrictSchema

MONEY = validate.Range(min=0, max=10**12)
CURRENCY = validate.Regexp(r"^[a-z]{3}$", error="A lowercase ISO 4217 code, e.g. usd.")


class LineSchema(StrictSchema):
    sku = fields.String(required=True, validate=validate.Length(min=1, max=128))
    category = fields.String(validate=validate.Length(min=1, max=128), allow_none=True)
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100_000))
    unit_amount = fields.Integer(required=True, strict=True, validate=MONEY)
    discount_amount = fields.Integer(strict=True, validate=MONEY, load_default=0)


class OrderSchema(StrictSchema):
    order_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    member_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    channel = fields.String(validate=validate.OneOf(CHANNELS), load_default="web",
                            metadata={"description": "Where the order was placed: stores earn like the web."})
    currency = fields.String(required=True, validate=CURRENCY)
    lines = fields.List(fields.Nested(LineSchema), required=True, validate=validate.Length(min=1, max=500))
    total_amount = fields.Integer(required=True, strict=True, validate=MONEY)
    shipping_amount = fields.Integer(strict=True, validate=MONEY, load_default=0)
    discount_amount = fields.Integer(strict=True, validate=MONEY, load_default=0,
                                     metadata={"description": "Order-level discount, spread over the lines."})
    paid_at = fields.AwareDateTime(allow_none=True)


class BreakdownSchema(Schema):
    rule = fields.String()
    points = fields.Integer()
    detail = fields.String()


class OrderResultSchema(Schema):
    order_id = fields.String(attribute="order.order_id")
    member_id = fields.String()
    status = fields.String(attribute="order.status")
    channel = fields.String(attribute="order.channel")
    points_earned = fields.Integer(attribute="order.points_earned")
    pending_until = fields.DateTime(attribute="order.pending_until", allow_none=True)
    rule_version = fields.Integer(attribute="order.rule_version", allow_none=True)
    transaction_id = fields.String(attribute="transaction_public_id", allow_none=True)
    breakdown = fields.List(fields.Nested(BreakdownSchema))
