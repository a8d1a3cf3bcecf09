"""Checkout shapes: quotes, redemptions, orders and refunds."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from loyalty.orders.models import CHANNELS
from loyalty.rules.document import DecimalString
from loyalty.rules.schemas import BreakdownSchema, order_lines
from loyalty.schemas import CURRENCY, MONEY, POINTS, POSITIVE_MONEY, Moment, StrictSchema


class OrderSchema(StrictSchema):
    order_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    member_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    channel = fields.String(validate=validate.OneOf(CHANNELS), load_default="web",
                            metadata={"description": "Where the order was placed: stores earn like the web."})
    currency = fields.String(required=True, validate=CURRENCY)
    lines = order_lines(required=True)
    total_amount = fields.Integer(required=True, strict=True, validate=MONEY)
    shipping_amount = fields.Integer(strict=True, validate=MONEY, load_default=0)
    discount_amount = fields.Integer(strict=True, validate=MONEY, load_default=0,
                                     metadata={"description": "Order-level discount, spread over the lines."})
    paid_at = Moment(allow_none=True)
    redemption_id = fields.String(validate=validate.Length(min=1, max=32), allow_none=True,
                                  metadata={"description": "The redemption the order was paid with: it is captured."})

    class Meta(StrictSchema.Meta):
        description = ("Lines at their prices; `total_amount` is what was paid. The order earns on what was paid, "
                       "so what points and coupons paid does not earn.")


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
    total_amount = fields.Integer(attribute="order.total_amount")
    refunded_amount = fields.Integer(attribute="order.refunded_amount")


CODE = fields.String(validate=validate.Length(min=1, max=64))


class QuoteRequestSchema(StrictSchema):
    member_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    currency = fields.String(required=True, validate=CURRENCY)
    lines = order_lines(required=True)
    shipping_amount = fields.Integer(strict=True, validate=MONEY, load_default=0)
    discount_amount = fields.Integer(strict=True, validate=MONEY, load_default=0,
                                     metadata={"description": "The shop's own order-level discount."})
    coupon_code = CODE
    points = fields.Integer(strict=True, validate=POINTS, metadata={"description": "Points the member would use."})


class QuoteEarnSchema(Schema):
    points = fields.Integer()
    pending_until = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    breakdown = fields.List(fields.Nested(BreakdownSchema))


class QuoteRedeemSchema(Schema):
    max_points = fields.Integer()
    value_per_point = DecimalString(metadata={"description": "Minor units one point is worth."})
    max_discount_amount = fields.Integer()
    min_points = fields.Integer()
    step = fields.Integer()
    available_points = fields.Integer()
    reason = fields.String(allow_none=True, metadata={"description": "Why no points may pay, when none may."})
    points = fields.Integer(metadata={"description": "The points asked for, when asked."})
    discount_amount = fields.Integer(metadata={"description": "What the points asked for take off."})
    error = fields.String(allow_none=True, metadata={"description": "Why the points asked for may not pay."})


class QuoteCouponSchema(Schema):
    code = fields.String()
    valid = fields.Boolean()
    code_error = fields.String(allow_none=True)
    detail = fields.String()
    discount_amount = fields.Integer()
    opens_at = fields.DateTime(allow_none=True)


class TierDiscountSchema(Schema):
    percent = fields.Integer()
    amount = fields.Integer()


class QuoteSchema(Schema):
    member_id = fields.String()
    currency = fields.String()
    subtotal_amount = fields.Integer(metadata={"description": "Lines plus shipping less the shop's discounts."})
    earn = fields.Nested(QuoteEarnSchema)
    redeem = fields.Nested(QuoteRedeemSchema)
    coupon = fields.Nested(QuoteCouponSchema, allow_none=True)
    tier_discount = fields.Nested(TierDiscountSchema, allow_none=True)
    total_amount = fields.Integer(metadata={"description": "What is left to pay after every discount."})


class RedemptionRequestSchema(StrictSchema):
    member_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    order_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    currency = fields.String(required=True, validate=CURRENCY)
    amount = fields.Integer(required=True, strict=True, validate=MONEY,
                            metadata={"description": "The order's amount before loyalty discounts."})
    points = fields.Integer(strict=True, validate=POINTS)
    coupon_code = CODE
    lines = order_lines(metadata={"description": "The order's lines, for coupons limited to some products."})
    shipping_amount = fields.Integer(strict=True, validate=MONEY, load_default=0)


class RedemptionSchema(Schema):
    id = fields.String(attribute="public_id")
    status = fields.String(metadata={"description": "held, captured or released"})
    member_id = fields.String(attribute="member.public_id")
    order_id = fields.String()
    currency = fields.String()
    amount = fields.Integer()
    points = fields.Integer()
    points_discount_amount = fields.Integer()
    coupon_code = fields.String(allow_none=True)
    coupon_discount_amount = fields.Integer()
    discount_amount = fields.Integer()
    expires_at = fields.DateTime()
    created_at = fields.DateTime()
    resolved_at = fields.DateTime(allow_none=True)
    release_reason = fields.String(allow_none=True)
    problem = fields.String(allow_none=True)


class RefundRequestSchema(StrictSchema):
    refund_id = fields.String(required=True, validate=validate.Length(min=1, max=128))
    amount = fields.Integer(required=True, strict=True, validate=POSITIVE_MONEY,
                            metadata={"description": "Minor units refunded, at most what is left of the total."})
    reason = fields.String(validate=validate.Length(max=300))


class RefundSchema(Schema):
    id = fields.String(attribute="public_id")
    order_id = fields.String(attribute="order.order_id")
    refund_id = fields.String()
    amount = fields.Integer()
    points_clawed_back = fields.Integer()
    shortfall = fields.Integer(metadata={"description": "Points the member had already spent and so kept."})
    points_restored = fields.Integer()
    order_status = fields.String(attribute="order.status")
    order_refunded_amount = fields.Integer(attribute="order.refunded_amount")
    created_at = fields.DateTime()
