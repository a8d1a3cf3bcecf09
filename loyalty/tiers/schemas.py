"""Tier shapes: the API nests the benefits."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from loyalty.rules.document import MULTIPLIER, DecimalString
from loyalty.schemas import CURRENCY, Pattern, StrictSchema


class BenefitsSchema(StrictSchema):
    earn_multiplier = DecimalString(validate=MULTIPLIER, load_default=None,
                                    metadata={"description": "A decimal string, e.g. \"1.5\"."})
    discount_percent = fields.Integer(strict=True, validate=validate.Range(min=0, max=100), load_default=None)
    early_access_hours = fields.Integer(strict=True, validate=validate.Range(min=0, max=24 * 90), load_default=None)
    perks = fields.String(validate=validate.Length(max=1000), allow_none=True, load_default=None)


class TierInputSchema(StrictSchema):
    code = fields.String(required=True, validate=Pattern(r"^[a-z0-9_-]{1,40}$"))
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    rank = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=1000))
    threshold = fields.Integer(required=True, strict=True, validate=validate.Range(min=0, max=10**12))
    basis = fields.String(required=True, validate=validate.OneOf(("points", "spend")))
    currency = fields.String(validate=CURRENCY, allow_none=True)
    window_days = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=3660))
    benefits = fields.Nested(BenefitsSchema)


class TierPatchSchema(TierInputSchema):
    """Any subset of the fields."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, partial=True, **kwargs)


class BenefitsOutSchema(Schema):
    earn_multiplier = DecimalString()
    discount_percent = fields.Integer()
    early_access_hours = fields.Integer()
    perks = fields.String(allow_none=True)


class MoveSchema(Schema):
    member_id = fields.Function(lambda move: move["member"].public_id)
    email = fields.Function(lambda move: move["member"].email)
    from_tier = fields.Function(lambda move: move["from_tier"].code)
    to_tier = fields.Function(lambda move: move["to_tier"].code)
    direction = fields.String(metadata={"description": "up or down"})


class MovesSchema(Schema):
    up = fields.Integer(metadata={"description": "Members the next evaluation would move up."})
    down = fields.Integer(metadata={"description": "Members it would move down: their grace has passed."})
    data = fields.List(fields.Nested(MoveSchema), metadata={"description": "Those members, one page."})
    has_more = fields.Boolean()


class TierSchema(Schema):
    id = fields.String(attribute="public_id")
    code = fields.String()
    name = fields.String()
    rank = fields.Integer()
    threshold = fields.Integer()
    basis = fields.String()
    currency = fields.String(allow_none=True)
    window_days = fields.Integer()
    benefits = fields.Method("_benefits")
    would_move = fields.Nested(MovesSchema, metadata={
        "description": "After a create or an edit: what the next evaluation would do, grace included, and the "
                       "first page of the members it would move (the rest: GET /v1/admin/tiers/moves). "
                       "Nobody moves now."})

    def _benefits(self, tier) -> dict:
        return BenefitsOutSchema().dump(tier)


class TierPageSchema(Schema):
    data = fields.List(fields.Nested(TierSchema))
    has_more = fields.Boolean()
