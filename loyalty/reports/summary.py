"""The program's KPIs for a window of local calendar days, in total and per day, week or month.

Definitions (every figure is for the window [from, to), local midnights in the program's time zone):

- members.total: members enrolled before `to` and not erased by then. members.new: members enrolled in the
  window, erased since or not (a signup happened; erasing the account later does not undo it). members.active:
  members who earned or spent points (earn, bonus, redeem, reward) in the window.
- points: gross flows on the program's accounts (see `service`): issued and clawed back, redeemed and
  restored, expired, adjusted added and removed (and their net).
- rates, as decimal strings of four places (half-even), null when there is nothing to divide by. They compare
  the window's flows with each other, not a cohort of points with its own fate:
  redemption = (redeemed - restored) / (issued - clawed back); breakage = expired / (issued - clawed back);
  repeat_purchase = members with two or more orders paid in the window / members with any.
- orders: orders paid in the window (refunded since or not), their members, and per currency the revenue
  (sum of order totals) and the average order value (revenue / orders, rounded half up to a minor unit).
- tiers: the distribution now (erased members left out), and tier changes in the window from tier history:
  up (to a higher rank), down, and the count per (from, to) pair. A member without a tier row is in the
  base tier, so a change from none counts from rank 0.
- campaigns: per campaign, the points its rule awarded (what members kept after caps) in earns recorded in
  the window, the members and orders (earned on) they went to, and those orders' revenue per currency; its
  name as the latest rule version that awarded it in the window has it.
- offers: per offer, coupon uses consumed in the window, and orders paid in the window with one of its
  codes: count, revenue and coupon discount given, per currency.
- series: members new and active, orders and points per bucket (`period`), buckets clipped to the window.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, or_, select

from loyalty.checkout.models import Redemption
from loyalty.errors import ValidationProblem
from loyalty.extensions import db
from loyalty.ledger.models import JournalTransaction
from loyalty.members.models import Member
from loyalty.offers.models import CouponUse, Offer, OfferCode
from loyalty.orders.models import Order
from loyalty.reports import service
from loyalty.reports.periods import FIRST_DATE, LAST_DATE, MAX_DAYS, PERIODS, Buckets
from loyalty.reports.service import Flows
from loyalty.rules import service as rules
from loyalty.rules.models import RuleAward, RuleVersion
from loyalty.tiers.models import Tier, TierChange

DEFAULT_DAYS = 30
CAMPAIGN_PREFIX = "campaign."
RATE_PLACES = Decimal("0.0001")


def window(start: date | None, end: date | None, period: str, zone: ZoneInfo, now: datetime) -> Buckets:
    """The buckets of [start, end): by default the last 30 local days, today included. Refuses an empty
    or inverted window, one over MAX_DAYS days, dates outside FIRST_DATE..LAST_DATE, unknown periods."""
    errors: dict[str, list[str]] = {}
    for name, value in (("from", start), ("to", end)):
        if value is not None and not FIRST_DATE <= value <= LAST_DATE:
            errors[name] = [f"Must be a date from {FIRST_DATE} to {LAST_DATE}."]
    if period not in PERIODS:
        errors["period"] = [f"Must be one of: {', '.join(PERIODS)}."]
    if errors:
        raise ValidationProblem(errors=errors)
    if end is None:
        end = start + timedelta(days=DEFAULT_DAYS) if start else now.astimezone(zone).date() + timedelta(days=1)
    if start is None:
        start = end - timedelta(days=DEFAULT_DAYS)
    if end <= start:
        raise ValidationProblem(errors={"to": ["Must be after from (to is the first day not included)."]})
    if (end - start).days > MAX_DAYS:
        raise ValidationProblem(errors={"to": [f"At most {MAX_DAYS} days after from."]})
    return Buckets.calendar(start, end, period, zone)


def summary(buckets: Buckets, period: str, zone: ZoneInfo) -> dict[str, Any]:
    """Every figure of the window `buckets` covers; see the module's docstring."""
    flows = service.point_flows(buckets)
    total = sum(flows, Flows())
    new, active, paid = new_members(buckets), service.active_members(buckets), orders(buckets)
    buyers, repeat_buyers = buying_members(buckets)
    current_members, _ = service.member_counts()
    return {
        "from": buckets.items[0].start, "to": buckets.items[-1].end, "period": period, "timezone": zone.key,
        "starts_at": buckets.starts_at, "ends_at": buckets.ends_at,
        "members": {"total": members_at(buckets.ends_at), "new": sum(new),
                    "active": service.active_members(buckets.whole())[0]},
        "points": points(total),
        "rates": {"redemption": ratio(total.net_redeemed, total.net_issued),
                  "breakage": ratio(total.expired, total.net_issued),
                  "repeat_purchase": ratio(repeat_buyers, buyers)},
        "orders": {"orders": sum(paid), "members": buyers, "repeat_members": repeat_buyers,
                   "currencies": order_values(buckets)},
        "tiers": {"distribution": [asdict(t) for t in service.tier_distribution(current_members)],
                  **tier_movements(buckets)},
        "campaigns": campaigns(buckets),
        "offers": offers(buckets),
        "series": [{"start": b.start, "end": b.end, "new_members": new[i], "active_members": active[i],
                    "orders": paid[i], "points": points(flows[i])} for i, b in enumerate(buckets.items)],
    }


def points(flows: Flows) -> dict[str, Any]:
    return {"issued": flows.issued, "clawed_back": flows.clawed_back, "redeemed": flows.redeemed,
            "restored": flows.restored, "expired": flows.expired,
            "adjusted": {"added": flows.adjusted_added, "removed": flows.adjusted_removed,
                         "net": flows.adjusted_net}}


def ratio(numerator: int, denominator: int) -> str | None:
    if denominator <= 0:
        return None
    return str((Decimal(numerator) / Decimal(denominator)).quantize(RATE_PLACES, rounding=ROUND_HALF_EVEN))


def average(total: int, count: int) -> int:
    """total / count rounded half up, in whole minor units."""
    return (2 * total + count) // (2 * count)


# --- members -------------------------------------------------------------------------------------------

def members_at(moment: datetime) -> int:
    """Members enrolled before `moment` and not erased by then: erasing an account later leaves a past
    window's figure as it was. An erased account without an erasure time counts as erased all along."""
    still_a_member = or_(Member.status != "erased", Member.erased_at >= moment)
    return db.session.scalar(select(func.count()).select_from(Member)
                             .where(Member.created_at < moment, still_a_member)) or 0


def new_members(buckets: Buckets) -> list[int]:
    joined = service.in_buckets(select(Member.id), buckets, Member.created_at)
    return service.spread(db.session.execute(select(joined.c.bucket, func.count()).group_by(joined.c.bucket)),
                          buckets)


# --- orders --------------------------------------------------------------------------------------------

def orders(buckets: Buckets) -> list[int]:
    paid = service.in_buckets(select(Order.id), buckets, Order.paid_at)
    return service.spread(db.session.execute(select(paid.c.bucket, func.count()).group_by(paid.c.bucket)), buckets)


def order_values(buckets: Buckets) -> list[dict[str, Any]]:
    rows = db.session.execute(
        select(Order.currency, func.count(), func.sum(Order.total_amount))
        .where(buckets.within(Order.paid_at)).group_by(Order.currency).order_by(Order.currency)).all()
    return [{"currency": currency, "orders": count, "revenue": int(revenue),
             "average_value": average(int(revenue), count)} for currency, count, revenue in rows]


def buying_members(buckets: Buckets) -> tuple[int, int]:
    """Members with an order paid in the window, and of them those with two or more."""
    per_member = (select(func.count().label("orders")).where(buckets.within(Order.paid_at))
                  .group_by(Order.member_id).subquery())
    buyers, repeat = db.session.execute(
        select(func.count(), func.sum(case((per_member.c.orders >= 2, 1), else_=0)))).one()
    return buyers, int(repeat or 0)


# --- tiers ---------------------------------------------------------------------------------------------

def tier_movements(buckets: Buckets) -> dict[str, Any]:
    tiers = {tier.id: tier for tier in db.session.scalars(select(Tier))}
    rows = db.session.execute(
        select(TierChange.from_tier_id, TierChange.to_tier_id, func.count())
        .where(buckets.within(TierChange.at)).group_by(TierChange.from_tier_id, TierChange.to_tier_id)).all()
    up = down = 0
    changes = []
    for from_id, to_id, count in rows:
        source, target = tiers.get(from_id), tiers[to_id]
        if target.rank > (source.rank if source else 0):
            up += count
        elif target.rank < (source.rank if source else 0):
            down += count
        changes.append({"from_tier": source.code if source else None, "to_tier": target.code, "changes": count})
    changes.sort(key=lambda c: (c["from_tier"] or "", c["to_tier"]))
    return {"up": up, "down": down, "changes": changes}


# --- attribution ---------------------------------------------------------------------------------------

def campaigns(buckets: Buckets) -> list[dict[str, Any]]:
    """Per campaign: points awarded, members, orders and revenue, from the awards the rules recorded on
    earns in the window (found through the journal's created_at index)."""
    awarded = (select(RuleAward.rule, RuleAward.member_id, func.coalesce(RuleAward.kept, RuleAward.points)
                      .label("points"), JournalTransaction.order_id, JournalTransaction.rule_version)
               .join(JournalTransaction, JournalTransaction.id == RuleAward.transaction_id)
               .where(buckets.within(JournalTransaction.created_at), RuleAward.rule.like(f"{CAMPAIGN_PREFIX}%"))
               .subquery())
    rows = db.session.execute(
        # An earn has one award per campaign and at most one order: counting orders needs no DISTINCT.
        select(awarded.c.rule, func.sum(awarded.c.points), func.count(func.distinct(awarded.c.member_id)),
               func.count(awarded.c.order_id), func.max(awarded.c.rule_version))
        .group_by(awarded.c.rule).order_by(awarded.c.rule)).all()
    if not rows:
        return []
    revenue = defaultdict(list)
    for rule, currency, amount in db.session.execute(
            select(awarded.c.rule, Order.currency, func.sum(Order.total_amount))
            .join(Order, Order.order_id == awarded.c.order_id)
            .group_by(awarded.c.rule, Order.currency).order_by(awarded.c.rule, Order.currency)):
        revenue[rule].append({"currency": currency, "amount": int(amount)})
    names = _campaign_names({version for *_, version in rows if version is not None})
    return [{"campaign": (campaign := rule.removeprefix(CAMPAIGN_PREFIX)), "name": names.get((campaign, version)),
             "points": int(points), "members": members, "orders": orders_count, "revenue": revenue[rule]}
            for rule, points, members, orders_count, version in rows]


def _campaign_names(versions: set[int]) -> dict[tuple[str, int], str]:
    """(campaign id, rule version) -> the campaign's name in that version of the rules."""
    names: dict[tuple[str, int], str] = {}
    for version in db.session.scalars(select(RuleVersion).where(RuleVersion.version.in_(versions))):
        for campaign in rules.parsed(version)["earn"]["campaigns"]:
            names[(campaign["id"], version.version)] = campaign["name"]
    return names


def offers(buckets: Buckets) -> list[dict[str, Any]]:
    """Per offer: coupon uses consumed in the window, and the orders paid in it with the offer's codes."""
    uses = {offer_id: (count, members) for offer_id, count, members in db.session.execute(
        select(CouponUse.offer_id, func.count(), func.count(func.distinct(CouponUse.member_id)))
        .where(CouponUse.status == "consumed", buckets.within(CouponUse.resolved_at))
        .group_by(CouponUse.offer_id))}
    sales = defaultdict(list)
    for offer_id, currency, count, revenue, discount in db.session.execute(
            select(OfferCode.offer_id, Order.currency, func.count(), func.sum(Order.total_amount),
                   func.sum(Redemption.coupon_discount_amount))
            .select_from(Order).join(Redemption, Redemption.id == Order.redemption_id)
            .join(OfferCode, OfferCode.code == Redemption.coupon_code)
            .where(buckets.within(Order.paid_at))
            .group_by(OfferCode.offer_id, Order.currency).order_by(OfferCode.offer_id, Order.currency)):
        sales[offer_id].append({"currency": currency, "orders": count, "revenue": int(revenue),
                                "discount": int(discount)})
    found = set(uses) | set(sales)
    if not found:
        return []
    listed = db.session.scalars(select(Offer).where(Offer.id.in_(found)).order_by(Offer.id))
    return [{"offer_id": offer.public_id, "name": offer.name, "coupon_uses": uses.get(offer.id, (0, 0))[0],
             "members": uses.get(offer.id, (0, 0))[1], "orders": sum(s["orders"] for s in sales[offer.id]),
             "revenue": sales[offer.id]} for offer in listed]

