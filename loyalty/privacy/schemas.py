"""The shapes of the export and of an erasure."""

from __future__ import annotations

from marshmallow import Schema, fields

from loyalty.checkout.schemas import RedemptionSchema
from loyalty.members.schemas import ConsentStateSchema, MemberSummarySchema, TierChangeSchema, TransactionSchema


class ExportProfileSchema(MemberSummarySchema):
    referred_by = fields.String(allow_none=True, metadata={"description": "The id of the member who referred them."})
    updated_at = fields.DateTime()
    last_login_at = fields.DateTime(allow_none=True)
    erased_at = fields.DateTime(allow_none=True)


class ExportLotSchema(Schema):
    id = fields.String()
    transaction_id = fields.String(metadata={"description": "The transaction that issued the points."})
    amount = fields.Integer()
    remaining = fields.Integer()
    status = fields.String(metadata={"description": "pending, active, expired or spent"})
    activates_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class ExportCouponSchema(Schema):
    id = fields.String()
    code = fields.String()
    offer_id = fields.String()
    offer_name = fields.String()
    active = fields.Boolean()
    expires_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()


class ExportCouponUseSchema(Schema):
    code = fields.String()
    offer_id = fields.String()
    status = fields.String(metadata={"description": "reserved, consumed or released"})
    redemption_id = fields.String()
    created_at = fields.DateTime()
    resolved_at = fields.DateTime(allow_none=True)


class ExportRefundSchema(Schema):
    id = fields.String(attribute="public_id")
    refund_id = fields.String()
    source = fields.String()
    amount = fields.Integer()
    reason = fields.String(allow_none=True)
    points_clawed_back = fields.Integer()
    shortfall = fields.Integer()
    points_restored = fields.Integer()
    created_at = fields.DateTime()


class ExportLineSchema(Schema):
    sku = fields.String()
    category = fields.String(allow_none=True)
    quantity = fields.Integer()
    unit_amount = fields.Integer()
    discount_amount = fields.Integer()


class ExportOrderSchema(Schema):
    order_id = fields.String()
    channel = fields.String()
    currency = fields.String()
    total_amount = fields.Integer()
    shipping_amount = fields.Integer()
    discount_amount = fields.Integer()
    lines = fields.List(fields.Nested(ExportLineSchema))
    status = fields.String()
    paid_at = fields.DateTime()
    points_earned = fields.Integer()
    pending_until = fields.DateTime(allow_none=True)
    rule_version = fields.Integer(allow_none=True)
    refunded_amount = fields.Integer()
    points_clawed_back = fields.Integer()
    points_restored = fields.Integer()
    dispute_status = fields.String(allow_none=True)
    created_at = fields.DateTime()
    refunds = fields.List(fields.Nested(ExportRefundSchema))


class ExportRewardClaimSchema(Schema):
    reward_id = fields.String()
    reward_name = fields.String()
    coupon_code = fields.String()
    transaction_id = fields.String()
    created_at = fields.DateTime()


class ExportEventSchema(Schema):
    id = fields.String(attribute="public_id")
    type = fields.String()
    created_at = fields.DateTime()
    data = fields.Dict()


class ExportSchema(Schema):
    """Everything held on one member. Every list is newest first, as the API's lists are."""

    exported_at = fields.DateTime()
    member = fields.Nested(ExportProfileSchema)
    consents = fields.Nested(ConsentStateSchema)
    transactions = fields.List(fields.Nested(TransactionSchema), metadata={"description": "The whole journal."})
    lots = fields.List(fields.Nested(ExportLotSchema), metadata={
        "description": "The points of each earn or addition, as they are spent and expire."})
    coupons = fields.List(fields.Nested(ExportCouponSchema), metadata={
        "description": "Codes assigned to the member."})
    coupon_uses = fields.List(fields.Nested(ExportCouponUseSchema))
    redemptions = fields.List(fields.Nested(RedemptionSchema))
    orders = fields.List(fields.Nested(ExportOrderSchema), metadata={"description": "With their refunds."})
    reward_claims = fields.List(fields.Nested(ExportRewardClaimSchema))
    tier_history = fields.List(fields.Nested(TierChangeSchema))
    events = fields.List(fields.Nested(ExportEventSchema), metadata={
        "description": "Events about the member sent, or to be sent, to the shop's tools, while they are kept."})


class ErasureSchema(Schema):
    id = fields.String()
    status = fields.String()
    erased_at = fields.DateTime()
    points_forfeited = fields.Integer(metadata={"description": "Available and pending points the member had."})
    redemptions_released = fields.List(fields.String(), metadata={
        "description": "Held redemptions given back (captured ones stay)."})
    member = fields.Nested(MemberSummarySchema, metadata={"description": "The member as they are now: anonymised."})
