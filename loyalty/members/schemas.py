"""Member request and response shapes."""

from __future__ import annotations

from datetime import date

from marshmallow import Schema, ValidationError, fields, validate, validates

from loyalty.clock import now
from loyalty.members.models import CONSENT_PURPOSES
from loyalty.rules.document import StrictBoolean
from loyalty.schemas import ListArgsSchema, Moment, Pattern, StrictSchema

EMAIL = {"validate": validate.Length(max=254)}
NAME = validate.Length(min=1, max=200)
PASSWORD = validate.Length(min=8, max=128)


def _check_birthday(value: date) -> None:
    if value > now().date() or value < date(1900, 1, 1):
        raise ValidationError("Must be a past date after 1900-01-01.")


class MemberFieldsSchema(StrictSchema):
    email = fields.Email(required=True, **EMAIL)
    name = fields.String(validate=NAME, allow_none=True)
    birthday = fields.Date(allow_none=True)
    referral_code = fields.String(validate=validate.Length(min=1, max=16), allow_none=True)

    @validates("birthday")
    def _birthday(self, value: date | None, **_: object) -> None:
        if value is not None:
            _check_birthday(value)


class SignupSchema(MemberFieldsSchema):
    password = fields.String(required=True, load_only=True, validate=PASSWORD)
    marketing_consent = fields.Boolean(allow_none=True)


class EnrolSchema(MemberFieldsSchema):
    external_id = fields.String(validate=validate.Length(min=1, max=128), allow_none=True)
    marketing_consent = fields.Boolean(allow_none=True)


class LoginSchema(StrictSchema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128))


class PasswordConfirmationSchema(StrictSchema):
    """The member's password, typed again before something that cannot be undone."""

    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=128))


class MemberListArgsSchema(ListArgsSchema):
    email = fields.String(validate=validate.Length(min=1, max=254))
    external_id = fields.String(validate=validate.Length(min=1, max=128))


class TierRefSchema(Schema):
    code = fields.String()
    name = fields.String()


class NextTierSchema(TierRefSchema):
    remaining = fields.Integer(metadata={"description": "Points to earn or minor units to spend to reach it."})
    basis = fields.String(metadata={"description": "points or spend"})


class PointsSchema(Schema):
    available = fields.Integer()
    pending = fields.Integer()
    held = fields.Integer()
    lifetime_earned = fields.Integer()


class ExpiringSchema(Schema):
    points = fields.Integer()
    expires_at = fields.DateTime()


class MemberSummarySchema(Schema):
    id = fields.String()
    email = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    status = fields.String()
    tier = fields.Nested(TierRefSchema, allow_none=True)
    points = fields.Nested(PointsSchema)
    next_tier = fields.Nested(NextTierSchema, allow_none=True)
    tier_retained_until = fields.DateTime(allow_none=True, metadata={
        "description": "The current tier is kept at least until then."})
    expiring = fields.List(fields.Nested(ExpiringSchema))
    referral_code = fields.String()
    external_id = fields.String(allow_none=True)
    birthday = fields.Date(allow_none=True)
    created_at = fields.DateTime()


class MemberPageSchema(Schema):
    data = fields.List(fields.Nested(MemberSummarySchema))
    has_more = fields.Boolean()


class TransactionSchema(Schema):
    id = fields.String(attribute="public_id")
    kind = fields.String()
    points = fields.Integer(metadata={"description": "The change in the member's points (available + pending + "
                                                     "held): each balance_after is the previous one plus points."})
    balance_after = fields.Integer()
    available_after = fields.Integer()
    pending_after = fields.Integer()
    held_after = fields.Integer()
    description = fields.String()
    order_id = fields.String(allow_none=True)
    rule_version = fields.Integer(allow_none=True)
    shortfall = fields.Integer(metadata={"description": "Points a clawback could not take back."})
    created_at = fields.DateTime()


class TransactionPageSchema(Schema):
    data = fields.List(fields.Nested(TransactionSchema))
    has_more = fields.Boolean()


class AdjustmentSchema(StrictSchema):
    points = fields.Integer(required=True, strict=True, validate=[
        validate.Range(min=-10**9, max=10**9), validate.NoneOf([0], error="Must not be zero.")])
    reason = fields.String(required=True, validate=validate.Length(min=1, max=300))
    expires_at = Moment(allow_none=True, metadata={"description": "For added points only."})


class MemberSearchArgsSchema(ListArgsSchema):
    q = fields.String(validate=validate.Length(min=1, max=254),
                      metadata={"description": "An id, external id, email or part of a name."})


class EventSchema(StrictSchema):
    type = fields.String(required=True, validate=Pattern(
        r"^(signup|birthday|review|custom:[a-z0-9_]{1,40})$",
        error="One of signup, birthday, review or custom:<name> (a-z, 0-9, _)."))
    occurred_at = Moment(allow_none=True)
    reference = fields.String(validate=Pattern(
        r"^[A-Za-z0-9_.:/#-]{1,100}$", error="1 to 100 letters, digits or _ . : / # -."), metadata={
        "description": "What the event is about (the product or order reviewed): an event pays once per member and "
                       "reference; sent again, it answers what it paid the first time."})
    properties = fields.Dict(keys=fields.String(validate=validate.Length(max=64)), allow_none=True,
                             metadata={"description": "Kept with the request; not used by the rules yet."})


class EventResultSchema(Schema):
    type = fields.String()
    points = fields.Integer()
    transaction_id = fields.String(allow_none=True)
    breakdown = fields.List(fields.Dict())


class TierChangeSchema(Schema):
    from_ = fields.String(data_key="from", attribute="from", allow_none=True)
    to = fields.String()
    reason = fields.String()
    at = fields.DateTime()


class TierHistorySchema(Schema):
    data = fields.List(fields.Nested(TierChangeSchema))
    has_more = fields.Boolean()


# --- consent -----------------------------------------------------------------------------------------------------

class ConsentChangeSchema(StrictSchema):
    purpose = fields.String(required=True, validate=validate.OneOf(CONSENT_PURPOSES))
    granted = StrictBoolean(required=True, metadata={"description": "true grants consent, false withdraws it."})


class ConsentSchema(Schema):
    """One grant or withdrawal, as kept in the history."""

    purpose = fields.String()
    granted = fields.Boolean()
    source = fields.String(metadata={"description": "signup, member, api, staff or erasure"})
    recorded_at = fields.DateTime()


class CurrentConsentSchema(Schema):
    granted = fields.Boolean(metadata={"description": "False also when the member never answered."})
    source = fields.String(allow_none=True, metadata={"description": "Null when the member never answered."})
    recorded_at = fields.DateTime(allow_none=True)


CurrentConsentsSchema = Schema.from_dict({purpose: fields.Nested(CurrentConsentSchema)
                                          for purpose in CONSENT_PURPOSES}, name="CurrentConsents")


class ConsentStateSchema(Schema):
    member_id = fields.String()
    current = fields.Nested(CurrentConsentsSchema, metadata={"description": "The latest answer per purpose."})
    history = fields.List(fields.Nested(ConsentSchema), metadata={"description": "Every answer, newest first."})
