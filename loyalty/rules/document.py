"""The rules document, version 1: marshmallow schemas that load it strictly and dump it back to JSON.

Loading fills every optional key with its default, so the engine reads the document without guessing.
Rates, multipliers and point values are decimal strings: a JSON number is refused, because most
clients parse it into a float and "0.1" would silently become 0.1000000000000000055...
"""

from __future__ import annotations

from calendar import monthrange
from decimal import Decimal
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from loyalty.errors import ValidationProblem, flatten_messages
from loyalty.schemas import Moment, Pattern, StrictSchema

# Bounds the spec leaves open, chosen so exact arithmetic stays cheap and sums fit a BigInteger.
MAX_POINTS = 1_000_000_000
MAX_AMOUNT = 10**15
MAX_DECIMAL = Decimal(1_000_000)
MAX_PLACES = 8

ID = Pattern(r"^[A-Za-z0-9_-]{1,64}$", error="Must be 1 to 64 letters, digits, '-' or '_'.")
CURRENCY = Pattern(r"^[a-z]{3}$", error="Must be 3 lowercase letters, an ISO currency code such as 'usd'.")
EVENT_NAME = Pattern(r"^[a-z0-9_]{1,40}$", error="Must be 1 to 40 lowercase letters, digits or '_'.")
LABEL = validate.Length(min=1, max=200)
POINTS = validate.Range(min=0, max=MAX_POINTS)
POSITIVE = validate.Range(min=0, min_inclusive=False, max=MAX_DECIMAL)
MULTIPLIER = validate.Range(min=1, max=100)
AT_LEAST_ONE = validate.Length(min=1, error="Give at least one currency.")


class DecimalString(fields.Decimal):
    """A decimal written as a JSON string ("1.5"); numbers are refused (see the module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(as_string=True, allow_nan=False, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValidationError(f'Use a string such as "{value}", not a JSON number.')
        if not isinstance(value, str):
            raise ValidationError('Must be a decimal string such as "1.5".')
        number = super()._deserialize(value, attr, data, **kwargs)
        # Checked before any validator compares it: "1e-999999999" would be costly to work with exactly.
        if _places(number) > MAX_PLACES or abs(number) > MAX_DECIMAL:
            raise ValidationError(f"Must have at most {MAX_PLACES} decimal places and be at most {MAX_DECIMAL}.")
        return number


def _places(number: Decimal) -> int:
    """Decimal places that matter: "1.500" has 1."""
    _, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite: NaN and infinities are refused before
    trailing_zeros = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing_zeros)) if any(digits) else 0


def _integer(**kwargs: Any) -> fields.Integer:
    """A JSON integer: strings, floats and booleans are refused."""
    return fields.Integer(strict=True, **kwargs)


class StrictBoolean(fields.Boolean):
    """Only JSON true and false (marshmallow would take "yes", 1, "on" ...)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


class EntryDict(fields.Dict):
    """A dict whose errors name the entry ("earn.rates.usd"), not marshmallow's ".key" and ".value" under it."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict:
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except ValidationError as error:
            if not isinstance(error.messages, dict):
                raise
            entries = {key: _entry_messages(messages) for key, messages in error.messages.items()}
            raise ValidationError(entries, valid_data=error.valid_data) from error


def _entry_messages(messages: dict[str, Any]) -> Any:
    key, value = messages.get("key", []), messages.get("value", [])
    if isinstance(value, dict):  # a nested schema's errors: they go on below the entry
        return {"_key": key, **value} if key else value
    return [*key, *value]


def _strings(check: validate.Validator, **kwargs: Any) -> fields.List:
    return fields.List(fields.String(validate=check), **kwargs)


def _currency_values(**kwargs: Any) -> fields.Dict:
    return EntryDict(keys=fields.String(validate=CURRENCY), values=DecimalString(validate=POSITIVE), **kwargs)


def _defaults(schema: type[Schema]) -> Any:
    """A load_default that is the schema's own defaults, loaded fresh each time."""
    return lambda: schema().load({})


# --- earn ---------------------------------------------------------------------------------------


class ExcludeSchema(StrictSchema):
    skus = _strings(LABEL, load_default=list)
    categories = _strings(LABEL, load_default=list)


class MultiplierSchema(StrictSchema):
    id = fields.String(required=True, validate=ID)
    skus = _strings(LABEL, load_default=list)
    categories = _strings(LABEL, load_default=list)
    multiplier = DecimalString(required=True, validate=MULTIPLIER)
    description = fields.String(load_default="", validate=validate.Length(max=200))

    @validates_schema
    def _matches_something(self, data: dict, **_: Any) -> None:
        if not data["skus"] and not data["categories"]:
            raise ValidationError("Name at least one SKU or category.", "skus")


class CampaignSchema(StrictSchema):
    id = fields.String(required=True, validate=ID)
    name = fields.String(required=True, validate=LABEL)
    starts_at = Moment(required=True)
    ends_at = Moment(required=True)
    multiplier = DecimalString(load_default=None, allow_none=True, validate=MULTIPLIER)
    bonus_points = _integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=MAX_POINTS))
    min_spend = _integer(load_default=0, validate=validate.Range(min=0, max=MAX_AMOUNT))
    currencies = _strings(CURRENCY, load_default=None, allow_none=True, validate=AT_LEAST_ONE)
    tiers = _strings(LABEL, load_default=list)
    max_points_per_member = _integer(load_default=None, allow_none=True, validate=POINTS)

    @validates_schema
    def _window(self, data: dict, **_: Any) -> None:
        if data["ends_at"] <= data["starts_at"]:
            raise ValidationError("Must be after starts_at.", "ends_at")

    @validates_schema
    def _one_reward(self, data: dict, **_: Any) -> None:
        if (data["multiplier"] is None) == (data["bonus_points"] is None):
            raise ValidationError("Give exactly one of multiplier or bonus_points.", "multiplier")


class CapsSchema(StrictSchema):
    per_order = _integer(load_default=None, allow_none=True, validate=POINTS)
    per_member_per_day = _integer(load_default=None, allow_none=True, validate=POINTS)


class EarnSchema(StrictSchema):
    rates = _currency_values(required=True, validate=AT_LEAST_ONE)
    include_shipping = StrictBoolean(load_default=False)
    exclude = fields.Nested(ExcludeSchema, load_default=_defaults(ExcludeSchema))
    multipliers = fields.List(fields.Nested(MultiplierSchema), load_default=list)
    tier_multipliers = StrictBoolean(load_default=True)
    campaigns = fields.List(fields.Nested(CampaignSchema), load_default=list)
    caps = fields.Nested(CapsSchema, load_default=_defaults(CapsSchema))
    pending_days = _integer(load_default=0, validate=validate.Range(min=0, max=365))
    first_order_points = _integer(load_default=0, validate=POINTS)

    # Read from the input as sent, and not skipped on other errors: the loaded list drops invalid
    # items, which would shift the index a duplicate is reported at.
    @validates_schema(skip_on_field_errors=False, pass_original=True)
    def _unique_ids(self, data: dict, original: Any, **_: Any) -> None:
        if not isinstance(original, dict):
            return  # already refused as "Invalid input type."
        errors = {key: _duplicates(original.get(key)) for key in ("multipliers", "campaigns")}
        errors = {key: found for key, found in errors.items() if found}
        if errors:
            raise ValidationError(errors)


def _duplicates(items: Any) -> dict[int, dict[str, list[str]]]:
    """`{index: {"id": [...]}}` for every item whose id an earlier item already uses."""
    ids = [item.get("id") if isinstance(item, dict) else None for item in items] if isinstance(items, list) else []
    seen: set[Any] = set()
    found = {}
    for index, item_id in enumerate(ids):
        if isinstance(item_id, str) and item_id in seen:
            found[index] = {"id": [f"Duplicate id {item_id!r}."]}
        seen.add(item_id)
    return found


# --- expiry: one schema per policy ----------------------------------------------------------------


class _PolicySchema(StrictSchema):
    policy = fields.String(required=True)


class NoExpirySchema(_PolicySchema):
    pass


class RollingExpirySchema(_PolicySchema):
    months = _integer(required=True, validate=validate.Range(min=1, max=120))


class FixedDateExpirySchema(_PolicySchema):
    month = _integer(required=True, validate=validate.Range(min=1, max=12))
    day = _integer(required=True, validate=validate.Range(min=1, max=31))

    @validates_schema
    def _real_date(self, data: dict, **_: Any) -> None:
        # 2001 is not a leap year: Feb 29 is refused because most years have no such date.
        if data["day"] > monthrange(2001, data["month"])[1]:
            raise ValidationError(f"Month {data['month']} has no day {data['day']} every year.", "day")


class InactivityExpirySchema(_PolicySchema):
    days = _integer(required=True, validate=validate.Range(min=1, max=3650))


EXPIRY_POLICIES: dict[str, type[Schema]] = {
    "none": NoExpirySchema,
    "rolling": RollingExpirySchema,
    "fixed_date": FixedDateExpirySchema,
    "inactivity": InactivityExpirySchema,
}


class ExpiryField(fields.Field):
    """An object whose `policy` picks the schema that loads (and dumps) the rest of it."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> dict:
        if not isinstance(value, dict):
            raise ValidationError("Must be an object.")
        policy = value.get("policy")
        schema = EXPIRY_POLICIES.get(policy) if isinstance(policy, str) else None
        if schema is None:
            raise ValidationError({"policy": [f"Must be one of: {', '.join(EXPIRY_POLICIES)}."]})
        return schema().load(value)  # its errors nest under "expiry"

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> dict | None:
        return None if value is None else EXPIRY_POLICIES[value["policy"]]().dump(value)


# --- events -----------------------------------------------------------------------------------------


class PointsEventSchema(StrictSchema):
    points = _integer(required=True, validate=POINTS)


class BirthdaySchema(PointsEventSchema):
    timing = fields.String(load_default="month", validate=validate.OneOf(["month", "day"]))


class ReferralSchema(StrictSchema):
    referrer_points = _integer(required=True, validate=POINTS)
    referred_points = _integer(required=True, validate=POINTS)
    max_per_referrer = _integer(load_default=None, allow_none=True, validate=POINTS)


class ReviewSchema(PointsEventSchema):
    max_per_day = _integer(load_default=None, allow_none=True, validate=validate.Range(min=1, max=1000))


class CustomEventSchema(PointsEventSchema):
    once = StrictBoolean(load_default=False)


class EventsSchema(StrictSchema):
    """Every event is optional; a missing one loads as None (not configured)."""

    signup = fields.Nested(PointsEventSchema, load_default=None, allow_none=True)
    birthday = fields.Nested(BirthdaySchema, load_default=None, allow_none=True)
    referral = fields.Nested(ReferralSchema, load_default=None, allow_none=True)
    review = fields.Nested(ReviewSchema, load_default=None, allow_none=True)
    custom = EntryDict(
        keys=fields.String(validate=EVENT_NAME), values=fields.Nested(CustomEventSchema), load_default=dict
    )


# --- redeem and the whole document ------------------------------------------------------------------


class RedeemSchema(StrictSchema):
    """Points pay only in the currencies given a value: none given (the default) turns redemption off."""

    point_values = _currency_values(load_default=dict)
    min_points = _integer(load_default=0, validate=POINTS)
    step = _integer(load_default=1, validate=validate.Range(min=1, max=MAX_POINTS))
    max_share_percent = _integer(load_default=100, validate=validate.Range(min=1, max=100))
    tiers = _strings(LABEL, load_default=list)


class RulesDocumentSchema(StrictSchema):
    earn = fields.Nested(EarnSchema, required=True)
    expiry = ExpiryField(load_default=lambda: {"policy": "none"})
    events = fields.Nested(EventsSchema, load_default=_defaults(EventsSchema))
    redeem = fields.Nested(RedeemSchema, load_default=_defaults(RedeemSchema))


def validate_document(raw: dict) -> dict:
    """The loaded document, or ValidationProblem with errors keyed by dotted path ("earn.rates.usd")."""
    try:
        return RulesDocumentSchema().load(raw)
    except ValidationError as error:
        errors = flatten_messages(error.messages)
        raise ValidationProblem("The rules document is invalid; see errors.", errors=errors) from error


def dump_document(doc: dict) -> dict:
    """JSON-ready data (decimal strings, ISO datetimes) that `validate_document` loads back to `doc`."""
    return RulesDocumentSchema().dump(doc)
