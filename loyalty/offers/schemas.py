"""Offer and code shapes."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from loyalty.offers.models import OFFER_KINDS
from loyalty.schemas import COUNT, CURRENCY, MONEY, POSITIVE_COUNT, POSITIVE_MONEY, Moment, Pattern, StrictSchema

NAMES = fields.List(fields.String(validate=validate.Length(min=1, max=128)), validate=validate.Length(max=1000))
TIER_CODE = fields.String(validate=validate.Length(min=1, max=40))
MAX_USES_PER_CODE = 10_000  # a code for more orders than this is a public code


class ScopeSchema(StrictSchema):
    include_skus = NAMES
    include_categories = NAMES
    exclude_skus = NAMES
    exclude_categories = NAMES


class OfferInputSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(max=1000), allow_none=True)
    kind = fields.String(required=True, validate=validate.OneOf(OFFER_KINDS))
    percent = fields.Integer(strict=True, validate=validate.Range(min=1, max=100), allow_none=True)
    amount = fields.Integer(strict=True, validate=POSITIVE_MONEY, allow_none=True)
    currency = fields.String(validate=CURRENCY, allow_none=True)
    min_order_amount = fields.Integer(strict=True, validate=MONEY)
    scope = fields.Nested(ScopeSchema)
    starts_at = Moment(allow_none=True)
    ends_at = Moment(allow_none=True)
    eligible_tiers = fields.List(TIER_CODE, validate=validate.Length(max=100),
                                 metadata={"description": "Only these tiers may use it: an exclusive discount."})
    early_access = fields.Dict(keys=TIER_CODE, values=fields.Integer(strict=True, allow_none=True,
                                                                    validate=validate.Range(min=0, max=24 * 90)),
                               metadata={"description": "Tier -> hours before starts_at (null: the tier's own)."})
    usage_limit_total = fields.Integer(strict=True, validate=POSITIVE_COUNT, allow_none=True)
    usage_limit_per_member = fields.Integer(strict=True, validate=POSITIVE_COUNT, allow_none=True)
    combines_with_points = fields.Boolean()
    combines_with_tier_discount = fields.Boolean()
    uses_per_code = fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_USES_PER_CODE), allow_none=True,
                                   metadata={"description": "Orders one unique code may pay for (default 1; null: "
                                                            "no limit of its own). A public code has none."})
    active = fields.Boolean()
    code = fields.String(validate=Pattern(r"^[A-Za-z0-9 -]{3,64}$"), load_only=True,
                         metadata={"description": "A public code for this offer, e.g. BLACKFRIDAY."})


class OfferPatchSchema(OfferInputSchema):
    """Any subset of the fields."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, partial=True, **kwargs)


class OfferSchema(Schema):
    id = fields.String(attribute="public_id")
    name = fields.String()
    description = fields.String(allow_none=True)
    kind = fields.String()
    percent = fields.Integer(allow_none=True)
    amount = fields.Integer(allow_none=True)
    currency = fields.String(allow_none=True)
    min_order_amount = fields.Integer()
    scope = fields.Dict()
    starts_at = fields.DateTime(allow_none=True)
    ends_at = fields.DateTime(allow_none=True)
    eligible_tiers = fields.List(fields.String())
    early_access = fields.Dict()
    usage_limit_total = fields.Integer(allow_none=True)
    usage_limit_per_member = fields.Integer(allow_none=True)
    uses_per_code = fields.Integer(allow_none=True)
    combines_with_points = fields.Boolean()
    combines_with_tier_discount = fields.Boolean()
    active = fields.Boolean()
    created_at = fields.DateTime()


class OfferPageSchema(Schema):
    data = fields.List(fields.Nested(OfferSchema))
    has_more = fields.Boolean()


class GenerateCodesSchema(StrictSchema):
    count = fields.Integer(strict=True, validate=validate.Range(min=1, max=100_000))
    member_ids = fields.List(fields.String(validate=validate.Length(min=1, max=64)),
                             validate=validate.Length(min=1, max=100_000),
                             metadata={"description": "One code assigned to each of these members."})
    expires_at = Moment(allow_none=True)

    @validates_schema
    def _count_or_members(self, data: dict[str, Any], **kwargs: Any) -> None:
        if bool(data.get("member_ids")) == bool(data.get("count")):
            raise ValidationError("Give either count or member_ids.", field_name="count")


class GeneratedSchema(Schema):
    generated = fields.Integer()


class CodeSchema(Schema):
    id = fields.String(attribute="public_id")
    code = fields.String()
    kind = fields.String()
    member_id = fields.String(allow_none=True)
    active = fields.Boolean()
    expires_at = fields.DateTime(allow_none=True)
    uses = fields.Integer(metadata={"description": "Uses counting now: consumed, and reserved by running checkouts."})
    state = fields.String(metadata={"description": "unused, reserved, used, partly_used or expired."})
    orders = fields.List(fields.String(), metadata={"description": "The orders a unique code's uses are for."})


class CodePageSchema(Schema):
    data = fields.List(fields.Nested(CodeSchema))
    has_more = fields.Boolean()


class RewardInputSchema(StrictSchema):
    offer_id = fields.String(required=True, validate=validate.Length(min=1, max=64))
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(max=1000), allow_none=True)
    points_cost = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=10**9))
    stock = fields.Integer(strict=True, validate=COUNT, allow_none=True)
    per_member_limit = fields.Integer(strict=True, validate=POSITIVE_COUNT, allow_none=True)
    coupon_valid_days = fields.Integer(strict=True, validate=validate.Range(min=1, max=3660))
    active = fields.Boolean()


class RewardPatchSchema(StrictSchema):
    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(validate=validate.Length(max=1000), allow_none=True)
    points_cost = fields.Integer(strict=True, validate=validate.Range(min=1, max=10**9))
    stock = fields.Integer(strict=True, validate=COUNT, allow_none=True)
    per_member_limit = fields.Integer(strict=True, validate=POSITIVE_COUNT, allow_none=True)
    coupon_valid_days = fields.Integer(strict=True, validate=validate.Range(min=1, max=3660))
    active = fields.Boolean()


class RewardSchema(Schema):
    id = fields.String(attribute="public_id")
    offer_id = fields.Method("_offer_id")
    name = fields.String()
    description = fields.String(allow_none=True)
    points_cost = fields.Integer()
    stock = fields.Integer(allow_none=True)
    claimed = fields.Integer()
    remaining = fields.Method("_remaining", allow_none=True)
    per_member_limit = fields.Integer(allow_none=True)
    coupon_valid_days = fields.Integer()
    active = fields.Boolean()

    def _offer_id(self, reward) -> str:
        from loyalty.extensions import db
        from loyalty.offers.models import Offer

        return db.session.get(Offer, reward.offer_id).public_id

    def _remaining(self, reward) -> int | None:
        return None if reward.stock is None else reward.stock - reward.claimed


class RewardPageSchema(Schema):
    data = fields.List(fields.Nested(RewardSchema))
    has_more = fields.Boolean()


class CatalogRewardSchema(RewardSchema):
    """A reward as the member sees it: locked when they could not use its coupon now."""

    locked = fields.Boolean(metadata={"description": "The member could not use its coupon now: a claim is refused."})
    locked_code = fields.String(allow_none=True, metadata={
        "description": "Why, as the checkout's error code: tier_required, coupon_expired, coupon_not_started, "
                       "early_access_only, usage_limit_reached."})
    locked_reason = fields.String(allow_none=True, metadata={"description": "Why, in words."})


class CatalogPageSchema(Schema):
    data = fields.List(fields.Nested(CatalogRewardSchema))
    has_more = fields.Boolean()


class ClaimedSchema(Schema):
    reward_id = fields.String()
    code = fields.String()
    expires_at = fields.DateTime()
    points_spent = fields.Integer()
    transaction_id = fields.String()


class CouponOfferSchema(OfferSchema):
    """What a member sees of an offer."""

    class Meta:
        exclude = ("scope", "eligible_tiers", "early_access", "usage_limit_total", "usage_limit_per_member",
                   "uses_per_code", "combines_with_points", "combines_with_tier_discount", "active", "created_at")


class MemberCouponSchema(Schema):
    code = fields.String()
    offer = fields.Nested(CouponOfferSchema)
    assigned = fields.Boolean(metadata={"description": "A code of the member's own (e.g. a reward)."})
    open = fields.Boolean()
    opens_at = fields.DateTime(allow_none=True, metadata={"description": "When it opens for this member."})
    expires_at = fields.DateTime(allow_none=True)
    uses_left = fields.Integer(allow_none=True, metadata={
        "description": "How many more orders this code may pay for; null: no limit of its own (a public code)."})


class MemberCouponListSchema(Schema):
    data = fields.List(fields.Nested(MemberCouponSchema))
    has_more = fields.Boolean()
