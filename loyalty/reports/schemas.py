"""Report queries and answers."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from marshmallow import Schema, fields, validate

from loyalty.reports.periods import PERIODS
from loyalty.rules.document import DecimalString
from loyalty.schemas import StrictSchema

FORMATS = ("json", "csv")
_FORMAT = fields.String(validate=validate.OneOf(FORMATS), metadata={
    "description": "`csv` answers text/csv as a download; so does `Accept: text/csv` without this parameter."})


class CalendarDate(fields.Date):
    """A date written YYYY-MM-DD, nothing else (Python would also read 20260301 or 2026-W09-7)."""

    _SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> date:
        if not isinstance(value, str) or not self._SHAPE.fullmatch(value):
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)


class SummaryArgsSchema(StrictSchema):
    from_ = CalendarDate(data_key="from", metadata={
        "description": "The first local day (YYYY-MM-DD, in PROGRAM_TIMEZONE). Default: 30 days before `to`."})
    to = CalendarDate(metadata={
        "description": "The first local day not included. Default: tomorrow (today included), or 30 days "
                       "after `from`. At most 366 days after `from`."})
    period = fields.String(load_default="day", validate=validate.OneOf(PERIODS),
                           metadata={"description": "The series' buckets: local days, weeks (from Monday) "
                                                    "or calendar months, clipped to the window."})
    format = _FORMAT


class LiabilityArgsSchema(StrictSchema):
    format = _FORMAT


# --- answers -------------------------------------------------------------------------------------------

class AdjustedSchema(Schema):
    added = fields.Integer()
    removed = fields.Integer()
    net = fields.Integer()


class PointsFlowSchema(Schema):
    issued = fields.Integer(metadata={"description": "Earned and bonus points issued."})
    clawed_back = fields.Integer(metadata={"description": "Issued points taken back (refunds, reversals)."})
    redeemed = fields.Integer()
    restored = fields.Integer(metadata={"description": "Redeemed points given back by refunds."})
    expired = fields.Integer(metadata={"description": "Points expired (or forfeited)."})
    adjusted = fields.Nested(AdjustedSchema)


class MembersFiguresSchema(Schema):
    total = fields.Integer(metadata={"description": "Enrolled before `to` and not erased."})
    new = fields.Integer(metadata={"description": "Enrolled in the window (erased since or not)."})
    active = fields.Integer(metadata={"description": "Earned or redeemed points in the window."})


class RatesSchema(Schema):
    redemption = fields.String(allow_none=True, metadata={
        "description": "(redeemed - restored) / (issued - clawed_back), four decimals; null with nothing issued."})
    breakage = fields.String(allow_none=True, metadata={"description": "expired / (issued - clawed_back)."})
    repeat_purchase = fields.String(allow_none=True, metadata={
        "description": "Members with 2+ orders in the window / members with an order in it."})


class CurrencyOrdersSchema(Schema):
    currency = fields.String()
    orders = fields.Integer()
    revenue = fields.Integer(metadata={"description": "Sum of order totals, minor units."})
    average_value = fields.Integer(metadata={"description": "revenue / orders, rounded half up."})


class OrdersFiguresSchema(Schema):
    orders = fields.Integer()
    members = fields.Integer()
    repeat_members = fields.Integer()
    currencies = fields.List(fields.Nested(CurrencyOrdersSchema))


class TierCountSchema(Schema):
    code = fields.String()
    name = fields.String()
    rank = fields.Integer()
    members = fields.Integer()


class TierChangeCountSchema(Schema):
    from_tier = fields.String(allow_none=True)
    to_tier = fields.String()
    changes = fields.Integer()


class TiersFiguresSchema(Schema):
    distribution = fields.List(fields.Nested(TierCountSchema), metadata={"description": "Now."})
    up = fields.Integer()
    down = fields.Integer()
    changes = fields.List(fields.Nested(TierChangeCountSchema))


class AmountSchema(Schema):
    currency = fields.String()
    amount = fields.Integer()


class CampaignFiguresSchema(Schema):
    campaign = fields.String()
    name = fields.String(allow_none=True)
    points = fields.Integer()
    members = fields.Integer()
    orders = fields.Integer()
    revenue = fields.List(fields.Nested(AmountSchema))


class OfferSalesSchema(Schema):
    currency = fields.String()
    orders = fields.Integer()
    revenue = fields.Integer()
    discount = fields.Integer()


class OfferFiguresSchema(Schema):
    offer_id = fields.String()
    name = fields.String()
    coupon_uses = fields.Integer()
    members = fields.Integer()
    orders = fields.Integer()
    revenue = fields.List(fields.Nested(OfferSalesSchema))


class SeriesBucketSchema(Schema):
    start = fields.Date()
    end = fields.Date()
    new_members = fields.Integer()
    active_members = fields.Integer()
    orders = fields.Integer()
    points = fields.Nested(PointsFlowSchema)


class SummarySchema(Schema):
    from_ = fields.Date(data_key="from", attribute="from")
    to = fields.Date()
    period = fields.String()
    timezone = fields.String()
    starts_at = fields.AwareDateTime()
    ends_at = fields.AwareDateTime()
    members = fields.Nested(MembersFiguresSchema)
    points = fields.Nested(PointsFlowSchema)
    rates = fields.Nested(RatesSchema)
    orders = fields.Nested(OrdersFiguresSchema)
    tiers = fields.Nested(TiersFiguresSchema)
    campaigns = fields.List(fields.Nested(CampaignFiguresSchema))
    offers = fields.List(fields.Nested(OfferFiguresSchema))
    series = fields.List(fields.Nested(SeriesBucketSchema))


class LiabilityPointsSchema(Schema):
    available = fields.Integer()
    pending = fields.Integer()
    held = fields.Integer()
    outstanding = fields.Integer(metadata={"description": "available + pending + held."})


class LiabilityMoneySchema(Schema):
    currency = fields.String()
    value_per_point = DecimalString()
    available = fields.Integer()
    pending = fields.Integer()
    held = fields.Integer()
    outstanding = fields.Integer()


class HoldersSchema(Schema):
    available = fields.Integer()
    pending = fields.Integer()
    held = fields.Integer()


class LiabilitySchema(Schema):
    as_of = fields.AwareDateTime()
    points = fields.Nested(LiabilityPointsSchema)
    members_holding_points = fields.Integer(metadata={"description": "Members with points of any kind."})
    members_holding = fields.Nested(HoldersSchema, metadata={"description": "Members with points of each kind."})
    rule_version = fields.Integer(allow_none=True)
    money = fields.List(fields.Nested(LiabilityMoneySchema))
