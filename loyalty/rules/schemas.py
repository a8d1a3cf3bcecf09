"""Rule version and simulation shapes, and an order's lines and breakdown as the engine reads and explains them
(checkout's schemas use them too). The document itself is validated by `loyalty.rules.document`."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate

from loyalty.schemas import CURRENCY, MONEY, MONEY_MAX, POSITIVE_COUNT, Moment, StrictSchema

MAX_LINES = 500


class LineSchema(StrictSchema):
    sku = fields.String(required=True, validate=validate.Length(min=1, max=128))
    category = fields.String(validate=validate.Length(min=1, max=128), allow_none=True)
    quantity = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100_000))
    unit_amount = fields.Integer(required=True, strict=True, validate=MONEY)
    discount_amount = fields.Integer(strict=True, validate=MONEY, load_default=0)


def _lines_within_money(lines: list[dict]) -> None:
    """Each line is bounded, and so is what they add up to: no subtotal, earn or refund share can overflow."""
    if sum(line["quantity"] * line["unit_amount"] for line in lines) > MONEY_MAX:
        raise ValidationError(f"The lines add up to more than {MONEY_MAX}.")


def order_lines(**kwargs: object) -> fields.List:
    """An order's lines: 1 to MAX_LINES, adding up to at most MONEY_MAX."""
    return fields.List(fields.Nested(LineSchema), validate=[validate.Length(min=1, max=MAX_LINES),
                                                            _lines_within_money], **kwargs)


class BreakdownSchema(Schema):
    rule = fields.String()
    points = fields.Integer()
    detail = fields.String()


class RuleVersionSummarySchema(Schema):
    version = fields.Integer()
    status = fields.String(metadata={"description": "draft or published"})
    note = fields.String(allow_none=True)
    effective_from = fields.DateTime(allow_none=True)
    in_force = fields.Boolean()
    created_at = fields.DateTime()
    published_at = fields.DateTime(allow_none=True)


class RuleVersionSchema(RuleVersionSummarySchema):
    document = fields.Dict()


class RuleVersionPageSchema(Schema):
    data = fields.List(fields.Nested(RuleVersionSummarySchema))
    has_more = fields.Boolean()


class RuleListArgsSchema(StrictSchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    starting_after = fields.Integer(validate=POSITIVE_COUNT)


class DraftSchema(StrictSchema):
    document = fields.Dict(required=True, metadata={"description": "The rules document; see the README."})
    note = fields.String(validate=validate.Length(max=300), allow_none=True)


class PublishSchema(StrictSchema):
    effective_from = Moment(allow_none=True, metadata={"description": "Default: now."})


class SampleOrderSchema(StrictSchema):
    currency = fields.String(required=True, validate=CURRENCY)
    lines = order_lines(required=True)
    shipping_amount = fields.Integer(strict=True, validate=MONEY, load_default=0)
    discount_amount = fields.Integer(strict=True, validate=MONEY, load_default=0)
    paid_at = Moment(allow_none=True)


class SimulateSchema(StrictSchema):
    rules = fields.Dict(allow_none=True, metadata={"description": "A document to try; default: `version`."})
    version = fields.Integer(validate=POSITIVE_COUNT, allow_none=True,
                             metadata={"description": "A stored version; default: the one in force."})
    order = fields.Nested(SampleOrderSchema, required=True)
    member_id = fields.String(validate=validate.Length(min=1, max=64), allow_none=True)


class EarnResultSchema(Schema):
    points = fields.Integer()
    pending_until = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    breakdown = fields.List(fields.Nested(BreakdownSchema))
    rule_version = fields.Integer(allow_none=True)


class ImpactArgsSchema(StrictSchema):
    last = fields.Integer(load_default=1000, validate=validate.Range(min=1, max=10_000))


class ImpactSchema(Schema):
    version = fields.Integer()
    orders = fields.Integer(metadata={"description": "Paid orders replayed, newest first."})
    current_points = fields.Integer(metadata={"description": "What those orders earned."})
    proposed_points = fields.Integer(metadata={"description": "What they would earn under this version."})
    change = fields.Integer()
