"""The rules document and the pure rule engine (DESIGN.md, "Rules"; the contract is the rules spec).

Table-driven cases name each rule and its boundaries; hypothesis properties check what must hold for
any document and order: never negative, the breakdown sums to the total, the same input gives the same
output, and without caps more spend never earns fewer points. No database is used.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.errors import ValidationProblem
from loyalty.rules.document import dump_document, validate_document
from loyalty.rules.engine import (
    BreakdownItem,
    EarnResult,
    Line,
    MemberContext,
    Order,
    RedeemResult,
    evaluate_earn,
    evaluate_event,
    evaluate_redeem,
    expiry_for,
    pending_until,
    points_value,
)

START = datetime(2026, 11, 27, tzinfo=UTC)
END = datetime(2026, 11, 30, tzinfo=UTC)
T = START + timedelta(days=1)
SECOND = timedelta(seconds=1)
RATES = {"usd": "1", "eur": "1", "jpy": "0.01", "kwd": "1"}

# The document of the spec, with real values where it has placeholders.
SAMPLE: dict[str, Any] = {
    "earn": {
        "rates": {"usd": "1", "eur": "1", "jpy": "0.01"},
        "include_shipping": False,
        "exclude": {"skus": ["GIFT-1"], "categories": ["gift-cards"]},
        "multipliers": [
            {"id": "shoes-x2", "skus": [], "categories": ["shoes"], "multiplier": "2",
             "description": "Double points on shoes"},
        ],
        "tier_multipliers": True,
        "campaigns": [
            {"id": "bf-2026", "name": "Black Friday", "starts_at": "2026-11-27T00:00:00+00:00",
             "ends_at": "2026-11-30T00:00:00+00:00", "multiplier": "2", "bonus_points": None, "min_spend": 5000,
             "currencies": None, "tiers": ["gold"], "max_points_per_member": 500},
        ],
        "caps": {"per_order": 10000, "per_member_per_day": 20000},
        "pending_days": 14,
        "first_order_points": 100,
    },
    "expiry": {"policy": "rolling", "months": 12},
    "events": {
        "signup": {"points": 100},
        "birthday": {"points": 200, "timing": "month"},
        "referral": {"referrer_points": 500, "referred_points": 250, "max_per_referrer": 10},
        "review": {"points": 20},
        "custom": {"newsletter": {"points": 50, "once": True}},
    },
    "redeem": {"point_values": {"usd": "1", "jpy": "1"}, "min_points": 500, "step": 100, "max_share_percent": 50,
               "tiers": []},
}


def rules(earn: dict | None = None, **sections: Any) -> dict:
    """A loaded document: 1 point per USD, EUR and KWD, 0.01 per JPY, plus the given keys."""
    return validate_document({"earn": {"rates": RATES, **(earn or {})}, **sections})


def line(sku: str, amount: int, qty: int = 1, category: str | None = None, discount: int = 0) -> Line:
    return Line(sku=sku, quantity=qty, unit_amount=amount, category=category, discount_amount=discount)


def campaign(**overrides: Any) -> dict:
    """A x2 campaign over [START, END); bonus_points in overrides makes it a bonus campaign."""
    base = {"id": "bf", "name": "Black Friday", "starts_at": START.isoformat(), "ends_at": END.isoformat()}
    reward = {} if "bonus_points" in overrides else {"multiplier": "2"}
    return {**base, **reward, **overrides}


def items(result: EarnResult) -> dict[str, int]:
    return {item.rule: item.points for item in result.breakdown}


SHOES_X2 = {"id": "shoes", "categories": ["shoes"], "multiplier": "2"}
RED_X3 = {"id": "red", "skus": ["RED"], "multiplier": "3"}
GOLD = MemberContext(tier="gold", tier_multiplier=Decimal("1.5"), orders_paid=1)
PAID = MemberContext(orders_paid=1)


# --- earning: one case per rule and boundary ----------------------------------------------------------


@dataclass(frozen=True)
class EarnCase:
    id: str
    lines: tuple[Line, ...]
    total: int
    expected: dict[str, int]  # the breakdown, rule -> points
    earn: dict = field(default_factory=dict)
    currency: str = "usd"
    shipping: int = 0
    discount: int = 0
    member: MemberContext = PAID
    now: datetime = T


EARN_CASES = [
    # base rate, rounding and currencies
    EarnCase("base-usd-42.50", (line("A", 4250),), 42, {"base": 42}),
    EarnCase("rounding-usd-9.99-is-9", (line("A", 999),), 9, {"base": 9}),
    EarnCase("rate-1.5-rounds-down", (line("A", 999),), 14, {"base": 14}, earn={"rates": {"usd": "1.5"}}),
    EarnCase("quantity-times-unit", (line("A", 1250, qty=3),), 37, {"base": 37}),
    EarnCase("jpy-zero-decimal-at-0.01", (line("A", 1999),), 19, {"base": 19}, currency="jpy"),
    EarnCase("jpy-zero-decimal-at-1", (line("A", 1999),), 1999, {"base": 1999}, earn={"rates": {"jpy": "1"}},
             currency="jpy"),
    EarnCase("kwd-three-decimal-12.999", (line("A", 12999),), 12, {"base": 12}, currency="kwd"),
    EarnCase("bhd-three-decimal-at-2", (line("A", 1500),), 3, {"base": 3}, earn={"rates": {"bhd": "2"}},
             currency="bhd"),
    EarnCase("currency-case-ignored", (line("A", 4250),), 42, {"base": 42}, currency="USD"),
    EarnCase("no-rate-earns-nothing", (line("A", 4250),), 0, {"base": 0}, currency="gbp"),
    # exclusions, discounts, zero lines, shipping
    EarnCase("excluded-sku", (line("A", 1000), line("GIFT-1", 5000)), 10, {"base": 10},
             earn={"exclude": {"skus": ["GIFT-1"]}}),
    EarnCase("excluded-category", (line("A", 1000), line("B", 5000, category="gift-cards")), 10, {"base": 10},
             earn={"exclude": {"categories": ["gift-cards"]}}),
    EarnCase("excluded-line-takes-no-share-of-order-discount", (line("A", 1000), line("GIFT-1", 1000)), 5,
             {"base": 5}, earn={"exclude": {"skus": ["GIFT-1"]}}, discount=500),
    EarnCase("line-discount", (line("A", 1000, qty=2, discount=500),), 15, {"base": 15}),
    EarnCase("line-discount-above-line-earns-0-not-less", (line("A", 1000, discount=1500), line("B", 1000)), 10,
             {"base": 10}),
    EarnCase("order-discount-spread-in-proportion", (line("S", 3000, category="shoes"), line("B", 1000)), 52,
             {"base": 30, "multiplier.shoes": 22}, earn={"multipliers": [SHOES_X2]}, discount=1000),
    EarnCase("order-discount-above-total-earns-0", (line("A", 1000),), 0, {"base": 0}, discount=5000),
    EarnCase("refunded-zero-line", (line("S", 3000, qty=0, category="shoes"), line("B", 1000)), 10,
             {"base": 10, "multiplier.shoes": 0}, earn={"multipliers": [SHOES_X2]}),
    EarnCase("shipping-excluded-by-default", (line("A", 1000),), 10, {"base": 10}, shipping=500),
    EarnCase("shipping-included-at-base-rate-only", (line("A", 1000),), 25, {"base": 15, "tier": 10},
             earn={"include_shipping": True}, shipping=500, member=MemberContext(tier_multiplier=Decimal(2))),
    # product multipliers
    EarnCase("sku-multiplier", (line("RED", 1000), line("B", 1000)), 40, {"base": 20, "multiplier.red": 20},
             earn={"multipliers": [RED_X3]}),
    EarnCase("category-multiplier", (line("S", 2550, category="shoes"),), 50, {"base": 25, "multiplier.shoes": 25},
             earn={"multipliers": [SHOES_X2]}),
    EarnCase("largest-multiplier-wins", (line("RED", 1000, category="shoes"),), 30,
             {"base": 10, "multiplier.red": 20}, earn={"multipliers": [SHOES_X2, RED_X3]}),
    EarnCase("largest-multiplier-wins-per-line",
             (line("RED", 1000, category="shoes"), line("S", 1000, category="shoes")), 50,
             {"base": 20, "multiplier.shoes": 10, "multiplier.red": 20}, earn={"multipliers": [SHOES_X2, RED_X3]}),
    EarnCase("multiplier-item-rounds-on-its-own", (line("S", 999, category="shoes"),), 13,
             {"base": 9, "multiplier.half": 4},
             earn={"multipliers": [{"id": "half", "categories": ["shoes"], "multiplier": "1.5"}]}),
    # tier multipliers
    EarnCase("tier-multiplier", (line("A", 4250),), 63, {"base": 42, "tier": 21}, member=GOLD),
    EarnCase("tier-multipliers-off", (line("A", 4250),), 42, {"base": 42}, earn={"tier_multipliers": False},
             member=GOLD),
    EarnCase("tier-multiplier-1-adds-nothing", (line("A", 4250),), 42, {"base": 42},
             member=MemberContext(tier="silver", orders_paid=1)),
    EarnCase("tier-and-product-multiplier-add-on-the-base", (line("S", 1000, category="shoes"),), 30,
             {"base": 10, "multiplier.shoes": 10, "tier": 10}, earn={"multipliers": [SHOES_X2]},
             member=MemberContext(tier_multiplier=Decimal(2))),
    # campaigns
    EarnCase("campaign-first-second-applies", (line("A", 4250),), 84, {"base": 42, "campaign.bf": 42},
             earn={"campaigns": [campaign()]}, now=START),
    EarnCase("campaign-last-second-applies", (line("A", 4250),), 84, {"base": 42, "campaign.bf": 42},
             earn={"campaigns": [campaign()]}, now=END - SECOND),
    EarnCase("campaign-end-second-does-not-apply", (line("A", 4250),), 42, {"base": 42},
             earn={"campaigns": [campaign()]}, now=END),
    EarnCase("campaign-second-before-start-does-not-apply", (line("A", 4250),), 42, {"base": 42},
             earn={"campaigns": [campaign()]}, now=START - SECOND),
    EarnCase("campaign-window-in-another-offset", (line("A", 4250),), 84, {"base": 42, "campaign.bf": 42},
             earn={"campaigns": [campaign(starts_at="2026-11-27T01:00:00+01:00")]}, now=START),
    EarnCase("campaign-bonus-points", (line("A", 4250),), 92, {"base": 42, "campaign.bf": 50},
             earn={"campaigns": [campaign(bonus_points=50)]}),
    EarnCase("campaign-min-spend-met-exactly", (line("A", 5000),), 100, {"base": 50, "campaign.bf": 50},
             earn={"campaigns": [campaign(min_spend=5000)]}),
    EarnCase("campaign-min-spend-missed-by-one", (line("A", 4999),), 49, {"base": 49},
             earn={"campaigns": [campaign(min_spend=5000)]}),
    EarnCase("campaign-min-spend-after-discounts", (line("A", 6000),), 49, {"base": 49},
             earn={"campaigns": [campaign(min_spend=5000)]}, discount=1001),
    EarnCase("campaign-other-currency", (line("A", 4250),), 42, {"base": 42},
             earn={"campaigns": [campaign(currencies=["eur"])]}),
    EarnCase("campaign-listed-currency", (line("A", 4250),), 84, {"base": 42, "campaign.bf": 42},
             earn={"campaigns": [campaign(currencies=["eur", "usd"])]}),
    EarnCase("campaign-eligible-tier", (line("A", 4250),), 84, {"base": 42, "campaign.bf": 42},
             earn={"campaigns": [campaign(tiers=["gold"])], "tier_multipliers": False}, member=GOLD),
    EarnCase("campaign-ineligible-tier", (line("A", 4250),), 42, {"base": 42},
             earn={"campaigns": [campaign(tiers=["gold"])]}, member=MemberContext(tier="silver")),
    EarnCase("campaign-no-tier-not-eligible", (line("A", 4250),), 42, {"base": 42},
             earn={"campaigns": [campaign(tiers=["gold"])]}),
    EarnCase("campaign-member-cap-partly-used", (line("A", 4250),), 62, {"base": 42, "campaign.bf": 20},
             earn={"campaigns": [campaign(max_points_per_member=30)]},
             member=MemberContext(campaign_points={"bf": 10})),
    EarnCase("campaign-member-cap-used-up", (line("A", 4250),), 42, {"base": 42, "campaign.bf": 0},
             earn={"campaigns": [campaign(max_points_per_member=30)]},
             member=MemberContext(campaign_points={"bf": 30})),
    EarnCase("campaign-ignores-shipping", (line("A", 1000),), 25, {"base": 15, "campaign.bf": 10},
             earn={"campaigns": [campaign()], "include_shipping": True}, shipping=500),
    EarnCase("campaigns-stack", (line("A", 4250),), 94, {"base": 42, "campaign.bf": 42, "campaign.bonus": 10},
             earn={"campaigns": [campaign(), campaign(id="bonus", bonus_points=10)]}),
    # first order
    EarnCase("first-order-bonus", (line("A", 4250),), 142, {"base": 42, "first_order": 100},
             earn={"first_order_points": 100}, member=MemberContext()),
    EarnCase("no-first-order-bonus-after-the-first", (line("A", 4250),), 42, {"base": 42},
             earn={"first_order_points": 100}),
    EarnCase("first-order-bonus-on-a-free-order", (line("A", 0),), 100, {"base": 0, "first_order": 100},
             earn={"first_order_points": 100}, member=MemberContext()),
    # caps
    EarnCase("cap-per-order-reached-mid-order", (line("S", 8000, category="shoes"),), 100,
             {"base": 80, "multiplier.shoes": 80, "cap.per_order": -60},
             earn={"multipliers": [SHOES_X2], "caps": {"per_order": 100}}),
    EarnCase("cap-per-order-exactly-reached", (line("A", 10000),), 100, {"base": 100},
             earn={"caps": {"per_order": 100}}),
    EarnCase("cap-per-day", (line("A", 4250),), 10, {"base": 42, "cap.per_member_per_day": -32},
             earn={"caps": {"per_member_per_day": 100}}, member=MemberContext(earned_today=90)),
    EarnCase("cap-per-day-already-past", (line("A", 4250),), 0, {"base": 42, "cap.per_member_per_day": -42},
             earn={"caps": {"per_member_per_day": 100}}, member=MemberContext(earned_today=150)),
    EarnCase("both-caps", (line("A", 10000),), 20, {"base": 100, "cap.per_order": -50, "cap.per_member_per_day": -30},
             earn={"caps": {"per_order": 50, "per_member_per_day": 100}}, member=MemberContext(earned_today=80)),
    # everything at once: lines 4000 + 3000 + 2000 (and a gift card) less 10% = 8100, plus 10.00 shipping
    EarnCase(
        "everything-combined",
        (line("RED", 4000, category="shoes"), line("S", 3000, category="shoes"), line("B", 2000),
         line("GIFT-1", 5000)),
        400,
        {"base": 91, "multiplier.shoes": 27, "multiplier.red": 72, "tier": 40, "campaign.bf": 81,
         "first_order": 100, "cap.per_order": -11},
        earn={"include_shipping": True, "exclude": {"skus": ["GIFT-1"]}, "multipliers": [SHOES_X2, RED_X3],
              "campaigns": [campaign(min_spend=5000, max_points_per_member=1000)], "first_order_points": 100,
              "caps": {"per_order": 400}},
        shipping=1000, discount=900, member=replace(GOLD, orders_paid=0), now=START,
    ),
]


@pytest.mark.parametrize("case", EARN_CASES, ids=lambda case: case.id)
def test_earn(case: EarnCase) -> None:
    order = Order(case.currency, case.lines, shipping_amount=case.shipping, discount_amount=case.discount)
    result = evaluate_earn(order, case.member, rules(case.earn), case.now)
    assert items(result) == case.expected
    assert result.points == case.total == sum(case.expected.values())


def test_breakdown_is_ordered_base_extras_then_caps() -> None:
    case = next(c for c in EARN_CASES if c.id == "everything-combined")
    order = Order("usd", case.lines, shipping_amount=case.shipping, discount_amount=case.discount)
    result = evaluate_earn(order, case.member, rules(case.earn), case.now)
    assert [item.rule for item in result.breakdown] == [
        "base", "multiplier.shoes", "multiplier.red", "tier", "campaign.bf", "first_order", "cap.per_order"]


@pytest.mark.parametrize(
    ("order", "earn", "rule", "detail"),
    [
        pytest.param(Order("usd", (line("A", 4250),)), {}, "base", "1 point per USD 1.00 on USD 42.50", id="usd"),
        pytest.param(Order("jpy", (line("A", 1050),)), {}, "base", "0.01 points per JPY 1 on JPY 1050", id="jpy"),
        pytest.param(Order("kwd", (line("A", 1050),)), {}, "base", "1 point per KWD 1.000 on KWD 1.050", id="kwd"),
        pytest.param(Order("usd", (line("A", 1000),), shipping_amount=500), {"include_shipping": True}, "base",
                     "1 point per USD 1.00 on USD 15.00 (shipping USD 5.00 included)", id="shipping"),
        pytest.param(Order("usd", (line("A", 1000), line("GIFT-1", 1))), {"exclude": {"skus": ["GIFT-1"]}}, "base",
                     "1 point per USD 1.00 on USD 10.00 (1 excluded line)", id="excluded"),
        pytest.param(Order("gbp", (line("A", 1000),)), {}, "base",
                     "No earning rate for GBP: the order earns no points", id="no-rate"),
        pytest.param(Order("usd", (line("RED", 1000, category="shoes"),)), {"multipliers": [SHOES_X2, RED_X3]},
                     "multiplier.red", "x3 on USD 10.00; the largest of several matching multipliers on 1 line",
                     id="largest-multiplier"),
        pytest.param(Order("usd", (line("A", 1000),)), {"campaigns": [campaign(max_points_per_member=4)]},
                     "campaign.bf", "Black Friday: x2 on USD 10.00; capped at 4 points per member, 4 left",
                     id="campaign-capped"),
    ],
)
def test_details_explain_the_points(order: Order, earn: dict, rule: str, detail: str) -> None:
    result = evaluate_earn(order, PAID, rules(earn), T)
    assert {item.rule: item.detail for item in result.breakdown}[rule] == detail


@pytest.mark.parametrize(
    ("earn", "member", "expected"),
    [
        pytest.param({}, PAID, {}, id="no-campaign"),
        pytest.param({"campaigns": [campaign()]}, PAID, {"bf": 42}, id="uncapped"),
        pytest.param({"campaigns": [campaign(max_points_per_member=30)]}, MemberContext(campaign_points={"bf": 25}),
                     {"bf": 5}, id="member-cap"),
        # A cap cuts the last items first, so the campaign is charged only for what the member kept.
        pytest.param({"campaigns": [campaign()], "caps": {"per_order": 50}}, PAID, {"bf": 8}, id="order-cap"),
        pytest.param({"campaigns": [campaign()], "caps": {"per_member_per_day": 100}},
                     MemberContext(earned_today=100), {"bf": 0}, id="day-cap"),
    ],
)
def test_campaign_points_given(earn: dict, member: MemberContext, expected: dict) -> None:
    result = evaluate_earn(Order("usd", (line("A", 4250),)), member, rules(earn), T)
    assert result.campaign_points == expected


def test_earn_dates_come_from_now_and_the_rules() -> None:
    doc = rules({"pending_days": 14}, expiry={"policy": "rolling", "months": 12})
    result = evaluate_earn(Order("usd", (line("A", 4250),)), PAID, doc, T)
    assert (result.pending_until, result.expires_at) == (T + timedelta(days=14), T.replace(year=2027))
    nothing = evaluate_earn(Order("usd", (line("A", 99),)), PAID, doc, T)
    assert (nothing.points, nothing.pending_until, nothing.expires_at) == (0, None, None)


# --- events -------------------------------------------------------------------------------------------

EVENTS = SAMPLE["events"]
BIRTHDAY = date(1990, 11, 3)


@pytest.mark.parametrize(
    ("event", "member", "now", "events", "rule", "points", "why"),
    [
        pytest.param("signup", MemberContext(), T, EVENTS, "event.signup", 100, "once", id="signup"),
        pytest.param("signup", MemberContext(event_counts={"signup": 1}), T, EVENTS, "event.signup", 0, "Already",
                     id="signup-twice"),
        pytest.param("signup", MemberContext(), T, {}, "event.signup", 0, "No signup reward", id="signup-off"),
        pytest.param("birthday", MemberContext(birthday=BIRTHDAY), T, EVENTS, "event.birthday", 200, "birthday",
                     id="birthday-month"),
        pytest.param("birthday", MemberContext(birthday=BIRTHDAY), datetime(2026, 10, 31, 23, 59, tzinfo=UTC),
                     EVENTS, "event.birthday", 0, "birthday month", id="birthday-month-before"),
        pytest.param("birthday", MemberContext(birthday=BIRTHDAY, last_birthday_award=date(2026, 1, 5)), T, EVENTS,
                     "event.birthday", 0, "already paid in 2026", id="birthday-already-this-year"),
        pytest.param("birthday", MemberContext(birthday=BIRTHDAY, last_birthday_award=date(2025, 11, 3)), T,
                     EVENTS, "event.birthday", 200, "birthday", id="birthday-paid-last-year"),
        pytest.param("birthday", MemberContext(), T, EVENTS, "event.birthday", 0, "No birthday on file",
                     id="birthday-unknown"),
        pytest.param("birthday", MemberContext(birthday=BIRTHDAY), datetime(2026, 11, 3, 12, tzinfo=UTC),
                     {"birthday": {"points": 200, "timing": "day"}}, "event.birthday", 200, "birthday",
                     id="birthday-day"),
        pytest.param("birthday", MemberContext(birthday=BIRTHDAY), datetime(2026, 11, 4, tzinfo=UTC),
                     {"birthday": {"points": 200, "timing": "day"}}, "event.birthday", 0, "on the birthday only",
                     id="birthday-day-after"),
        pytest.param("birthday", MemberContext(birthday=date(2000, 2, 29)), datetime(2027, 2, 28, tzinfo=UTC),
                     {"birthday": {"points": 200, "timing": "day"}}, "event.birthday", 200, "birthday",
                     id="birthday-feb-29-on-feb-28-in-common-year"),
        pytest.param("birthday", MemberContext(birthday=date(2000, 2, 29)), datetime(2028, 2, 28, tzinfo=UTC),
                     {"birthday": {"points": 200, "timing": "day"}}, "event.birthday", 0, "on the birthday only",
                     id="birthday-feb-29-not-on-feb-28-in-leap-year"),
        pytest.param("birthday", MemberContext(birthday=date(2000, 2, 29)), datetime(2028, 2, 29, tzinfo=UTC),
                     {"birthday": {"points": 200, "timing": "day"}}, "event.birthday", 200, "birthday",
                     id="birthday-feb-29-in-leap-year"),
        pytest.param("review", MemberContext(event_counts={"review": 7}), T, EVENTS, "event.review", 20, "every",
                     id="review-every-time"),
        pytest.param("review", MemberContext(event_counts={"review": 7}, events_today={"review": 2}), T,
                     {"review": {"points": 20, "max_per_day": 3}}, "event.review", 20, "at most 3 a day",
                     id="review-under-daily-limit"),
        pytest.param("review", MemberContext(event_counts={"review": 7}, events_today={"review": 3}), T,
                     {"review": {"points": 20, "max_per_day": 3}}, "event.review", 0,
                     "Daily limit reached: at most 3 reviews rewarded a day", id="review-at-daily-limit"),
        pytest.param("referral_referrer", MemberContext(referrals_rewarded=9), T, EVENTS, "event.referral_referrer",
                     500, "referred", id="referrer-under-limit"),
        pytest.param("referral_referrer", MemberContext(referrals_rewarded=10), T, EVENTS,
                     "event.referral_referrer", 0, "limit reached", id="referrer-at-limit"),
        pytest.param("referral_referrer", MemberContext(referrals_rewarded=10_000), T,
                     {"referral": {"referrer_points": 5, "referred_points": 5}}, "event.referral_referrer", 5,
                     "referred", id="referrer-no-limit"),
        pytest.param("referral_referred", MemberContext(), T, EVENTS, "event.referral_referred", 250, "once",
                     id="referred"),
        pytest.param("referral_referred", MemberContext(event_counts={"referral_referred": 1}), T, EVENTS,
                     "event.referral_referred", 0, "Already", id="referred-twice"),
        pytest.param("custom:newsletter", MemberContext(), T, EVENTS, "event.custom.newsletter", 50, "once",
                     id="custom-once"),
        pytest.param("custom:newsletter", MemberContext(event_counts={"custom:newsletter": 1}), T, EVENTS,
                     "event.custom.newsletter", 0, "Already", id="custom-once-twice"),
        pytest.param("custom:quiz", MemberContext(event_counts={"custom:quiz": 3}), T,
                     {"custom": {"quiz": {"points": 5}}}, "event.custom.quiz", 5, "each time", id="custom-repeat"),
        pytest.param("custom:nope", MemberContext(), T, EVENTS, "event.custom.nope", 0, "No custom event",
                     id="custom-unknown"),
        pytest.param("lottery", MemberContext(), T, EVENTS, "event.unknown", 0, "Unknown event", id="unknown"),
    ],
)
def test_event(event: str, member: MemberContext, now: datetime, events: dict, rule: str, points: int,
               why: str) -> None:
    result = evaluate_event(event, member, rules(events=events), now)
    assert result.breakdown == (BreakdownItem(rule, points, result.breakdown[0].detail),)
    assert why in result.breakdown[0].detail
    assert result.points == points
    assert result.pending_until is None  # nothing to return: event points are available at once


def test_event_points_obey_the_daily_cap_and_expire() -> None:
    doc = rules({"caps": {"per_member_per_day": 100}}, events=EVENTS, expiry={"policy": "rolling", "months": 1})
    result = evaluate_event("review", MemberContext(earned_today=90), doc, T)
    assert items(result) == {"event.review": 20, "cap.per_member_per_day": -10}
    assert (result.points, result.expires_at) == (10, T.replace(month=12))


# --- redemption ---------------------------------------------------------------------------------------

REDEEM = SAMPLE["redeem"]  # 1 minor unit a point in USD and JPY, min 500, step 100, at most 50%


@pytest.mark.parametrize(
    ("redeem", "amount", "currency", "member", "available", "expected", "why"),
    [
        pytest.param(REDEEM, 100_000, "usd", PAID, 1234, (True, 1200, 1200), None, id="step-rounds-down"),
        pytest.param(REDEEM, 1000, "usd", PAID, 1234, (True, 500, 500), None, id="share-limit"),
        pytest.param(REDEEM, 1000, "USD", PAID, 1234, (True, 500, 500), None, id="currency-case-ignored"),
        pytest.param(REDEEM, 100_000, "usd", PAID, 500, (True, 500, 500), None, id="exactly-min-points"),
        pytest.param(REDEEM, 100_000, "usd", PAID, 499, (True, 0, 0), "At least 500 points", id="below-min-points"),
        pytest.param(REDEEM, 999, "usd", PAID, 5000, (True, 0, 0), "too small", id="order-too-small"),
        pytest.param(REDEEM, 100_000, "usd", PAID, -5, (True, 0, 0), "0 available", id="negative-balance"),
        pytest.param(REDEEM, 100_000, "eur", PAID, 5000, (False, 0, 0), "cannot pay in EUR", id="no-point-value"),
        pytest.param({**REDEEM, "tiers": ["gold"]}, 100_000, "usd", GOLD, 5000, (True, 5000, 5000), None,
                     id="tier-allowed"),
        pytest.param({**REDEEM, "tiers": ["gold"]}, 100_000, "usd", MemberContext(tier="silver"), 5000,
                     (False, 0, 0), "Only members of gold", id="tier-refused"),
        pytest.param({**REDEEM, "tiers": ["gold"]}, 100_000, "usd", PAID, 5000, (False, 0, 0), "gold",
                     id="no-tier-refused"),
        pytest.param({"point_values": {"usd": "0.5"}}, 1000, "usd", PAID, 5000, (True, 2000, 1000), None,
                     id="half-cent-points-whole-order"),
        pytest.param({"point_values": {"usd": "0.3"}}, 100, "usd", PAID, 5000, (True, 333, 99), None,
                     id="value-never-above-order"),
        pytest.param({"point_values": {"jpy": "1"}, "max_share_percent": 1}, 12345, "jpy", PAID, 5000,
                     (True, 123, 123), None, id="jpy-one-percent"),
        pytest.param({"point_values": {"usd": "1"}}, 0, "usd", PAID, 5000, (True, 0, 0), "too small",
                     id="free-order"),
    ],
)
def test_redeem(redeem: dict, amount: int, currency: str, member: MemberContext, available: int,
                expected: tuple[bool, int, int], why: str | None) -> None:
    result = evaluate_redeem(amount, currency, member, available, rules(redeem=redeem))
    assert (result.allowed, result.max_points, result.max_discount_amount) == expected
    assert (result.reason is None) if why is None else (why in (result.reason or ""))


def test_redeem_reports_the_rules_it_applied() -> None:
    result = evaluate_redeem(100_000, "usd", PAID, 1234, rules(redeem=REDEEM))
    assert result == RedeemResult(True, None, 1200, Decimal(1), 1200, 500, 100)


def test_without_a_redeem_section_nothing_is_redeemable() -> None:
    result = evaluate_redeem(100_000, "usd", PAID, 1234, rules())
    assert (result.allowed, result.max_points) == (False, 0)


@pytest.mark.parametrize(
    ("points", "currency", "value", "expected"),
    [
        pytest.param(3, "usd", "1.5", 4, id="rounds-down"),
        pytest.param(999, "usd", "0.01", 9, id="tiny-value"),
        pytest.param(0, "usd", "1", 0, id="zero"),
        pytest.param(100, "eur", "1", 0, id="no-value"),
    ],
)
def test_points_value(points: int, currency: str, value: str, expected: int) -> None:
    assert points_value(points, currency, rules(redeem={"point_values": {"usd": value}})) == expected


# --- expiry and pending -------------------------------------------------------------------------------


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("expiry", "earned_at", "expected"),
    [
        pytest.param({"policy": "none"}, at(2026, 1, 31), None, id="none"),
        pytest.param({"policy": "inactivity", "days": 365}, at(2026, 1, 31), None, id="inactivity"),
        pytest.param({"policy": "rolling", "months": 12}, at(2026, 1, 31, 10), at(2027, 1, 31, 10), id="rolling-12"),
        pytest.param({"policy": "rolling", "months": 1}, at(2026, 1, 31, 10), at(2026, 2, 28, 10),
                     id="rolling-clamps-to-month-end"),
        pytest.param({"policy": "rolling", "months": 1}, at(2028, 1, 31), at(2028, 2, 29), id="rolling-leap-year"),
        pytest.param({"policy": "rolling", "months": 13}, at(2026, 12, 15), at(2028, 1, 15), id="rolling-over-years"),
        pytest.param({"policy": "fixed_date", "month": 12, "day": 31}, at(2026, 6, 1, 15), at(2026, 12, 31),
                     id="fixed-this-year"),
        pytest.param({"policy": "fixed_date", "month": 12, "day": 31}, at(2026, 12, 30, 23, 59, 59), at(2026, 12, 31),
                     id="fixed-a-second-later"),
        pytest.param({"policy": "fixed_date", "month": 12, "day": 31}, at(2026, 12, 31), at(2027, 12, 31),
                     id="fixed-strictly-after"),
        pytest.param({"policy": "fixed_date", "month": 3, "day": 31}, at(2026, 12, 31, 12), at(2027, 3, 31),
                     id="fixed-next-year"),
    ],
)
def test_expiry_for(expiry: dict, earned_at: datetime, expected: datetime | None) -> None:
    assert expiry_for(earned_at, rules(expiry=expiry)) == expected


def test_fixed_date_keeps_the_timezone_of_earned_at() -> None:
    plus_two = timezone(timedelta(hours=2))
    earned_at = datetime(2026, 12, 31, 0, 30, tzinfo=plus_two)
    assert expiry_for(earned_at, rules(expiry={"policy": "fixed_date", "month": 12, "day": 31})) == datetime(
        2027, 12, 31, tzinfo=plus_two)


@pytest.mark.parametrize(
    ("days", "expected"),
    [pytest.param(0, None, id="none"), pytest.param(14, T + timedelta(days=14), id="14-days")],
)
def test_pending_until(days: int, expected: datetime | None) -> None:
    assert pending_until(T, rules({"pending_days": days})) == expected


# --- the document: refusals, each at its exact path ---------------------------------------------------

DELETE = object()


def patched(path: str, value: Any) -> dict:
    """SAMPLE with the value at a dotted path replaced (or deleted with DELETE)."""
    doc = copy.deepcopy(SAMPLE)
    *parents, last = path.split(".")
    target: Any = doc
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is DELETE:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return doc


def refusal(path: str, value: Any, error_path: str, message: str, case_id: str) -> Any:
    return pytest.param(patched(path, value), error_path, message, id=case_id)


CAMPAIGN = "earn.campaigns.0"
MULTIPLIER = "earn.multipliers.0"
REFUSALS = [
    # decimal strings
    refusal("earn.rates.usd", 1.5, "earn.rates.usd", 'Use a string such as "1.5"', "rate-float"),
    refusal("earn.rates.usd", 1, "earn.rates.usd", "not a JSON number", "rate-int"),
    refusal("earn.rates.usd", "0", "earn.rates.usd", "greater than 0", "rate-zero"),
    refusal("earn.rates.usd", "-1", "earn.rates.usd", "greater than 0", "rate-negative"),
    refusal("earn.rates.usd", "abc", "earn.rates.usd", "Not a valid number", "rate-not-a-number"),
    refusal("earn.rates.usd", "NaN", "earn.rates.usd", "not permitted", "rate-nan"),
    refusal("earn.rates.usd", "1e-20", "earn.rates.usd", "at most 8 decimal places", "rate-too-fine"),
    refusal("redeem.point_values.usd", 1.0, "redeem.point_values.usd", "not a JSON number",
            "point-value-float"),
    refusal("redeem.point_values.usd", "0", "redeem.point_values.usd", "greater than 0", "point-value-zero"),
    refusal(f"{MULTIPLIER}.multiplier", 2.0, f"{MULTIPLIER}.multiplier", "not a JSON number", "multiplier-float"),
    refusal(f"{MULTIPLIER}.multiplier", "0.99", f"{MULTIPLIER}.multiplier", "greater than or equal to 1",
            "multiplier-below-1"),
    refusal(f"{MULTIPLIER}.multiplier", "100.01", f"{MULTIPLIER}.multiplier", "less than or equal to 100",
            "multiplier-above-100"),
    refusal(f"{CAMPAIGN}.multiplier", "0.5", f"{CAMPAIGN}.multiplier", "greater than or equal to 1",
            "campaign-multiplier-below-1"),
    # currencies
    refusal("earn.rates", {"USD": "1"}, "earn.rates.USD", "3 lowercase letters", "currency-uppercase"),
    refusal("earn.rates", {"usdx": "1"}, "earn.rates.usdx", "3 lowercase letters", "currency-4-letters"),
    refusal("redeem.point_values", {"u5d": "1"}, "redeem.point_values.u5d", "3 lowercase letters",
            "point-value-currency"),
    refusal(f"{CAMPAIGN}.currencies", ["usd", "EUR"], f"{CAMPAIGN}.currencies.1", "3 lowercase letters",
            "campaign-currency"),
    refusal("earn.rates", {}, "earn.rates", "at least one currency", "no-rates"),
    # campaigns
    refusal(f"{CAMPAIGN}.ends_at", "2026-11-27T00:00:00+00:00", f"{CAMPAIGN}.ends_at", "Must be after starts_at.",
            "campaign-ends-at-start"),
    refusal(f"{CAMPAIGN}.ends_at", "2026-11-27T00:59:59+01:00", f"{CAMPAIGN}.ends_at", "Must be after starts_at.",
            "campaign-ends-before-start-in-another-offset"),
    refusal(f"{CAMPAIGN}.starts_at", "2026-11-27T00:00:00", f"{CAMPAIGN}.starts_at", "aware", "campaign-naive-time"),
    refusal(f"{CAMPAIGN}.bonus_points", 50, f"{CAMPAIGN}.multiplier", "exactly one of multiplier or bonus_points",
            "campaign-both-rewards"),
    refusal(f"{CAMPAIGN}.multiplier", None, f"{CAMPAIGN}.multiplier", "exactly one of multiplier or bonus_points",
            "campaign-no-reward"),
    refusal(f"{CAMPAIGN}.min_spend", "5000", f"{CAMPAIGN}.min_spend", "Not a valid integer", "min-spend-string"),
    refusal(f"{CAMPAIGN}.min_spend", -1, f"{CAMPAIGN}.min_spend", "greater than or equal to 0", "min-spend-negative"),
    refusal("earn.campaigns", [SAMPLE["earn"]["campaigns"][0]] * 2, "earn.campaigns.1.id", "Duplicate id 'bf-2026'",
            "duplicate-campaign-id"),
    refusal("earn.multipliers", [SAMPLE["earn"]["multipliers"][0]] * 2, "earn.multipliers.1.id",
            "Duplicate id 'shoes-x2'", "duplicate-multiplier-id"),
    refusal(f"{MULTIPLIER}.categories", [], f"{MULTIPLIER}.skus", "at least one SKU or category",
            "multiplier-matches-nothing"),
    refusal(f"{MULTIPLIER}.id", "shoes.x2", f"{MULTIPLIER}.id", "letters, digits", "multiplier-id-with-dot"),
    # types
    refusal("earn.include_shipping", 1, "earn.include_shipping", "Not a valid boolean", "boolean-as-int"),
    refusal("earn.pending_days", 1.0, "earn.pending_days", "Not a valid integer", "integer-as-float"),
    refusal("earn.caps.per_order", -1, "earn.caps.per_order", "greater than or equal to 0", "negative-cap"),
    refusal("earn", DELETE, "earn", "Missing data", "no-earn"),
    # redeem
    refusal("redeem.max_share_percent", 0, "redeem.max_share_percent", "greater than or equal to 1", "share-0"),
    refusal("redeem.max_share_percent", 101, "redeem.max_share_percent", "less than or equal to 100", "share-101"),
    refusal("redeem.step", 0, "redeem.step", "greater than or equal to 1", "step-0"),
    refusal("redeem.min_points", -1, "redeem.min_points", "greater than or equal to 0", "min-points-negative"),
    # expiry
    refusal("expiry", {"policy": "fixed_date", "month": 2, "day": 30}, "expiry.day", "Month 2 has no day 30",
            "fixed-date-feb-30"),
    refusal("expiry", {"policy": "fixed_date", "month": 4, "day": 31}, "expiry.day", "Month 4 has no day 31",
            "fixed-date-apr-31"),
    refusal("expiry", {"policy": "fixed_date", "month": 2, "day": 29}, "expiry.day", "every year",
            "fixed-date-feb-29"),
    refusal("expiry", {"policy": "fixed_date", "month": 13, "day": 1}, "expiry.month", "less than or equal to 12",
            "fixed-date-month-13"),
    refusal("expiry", {"policy": "rolling"}, "expiry.months", "Missing data", "rolling-without-months"),
    refusal("expiry", {"policy": "forever"}, "expiry.policy", "Must be one of", "unknown-policy"),
    refusal("expiry", {"policy": "none", "days": 3}, "expiry.days", "Unknown field", "policy-with-foreign-key"),
    # events
    refusal("events.birthday.timing", "week", "events.birthday.timing", "Must be one of: month, day",
            "birthday-timing"),
    refusal("events.custom", {"News-Letter": {"points": 5}}, "events.custom.News-Letter", "lowercase letters",
            "custom-event-name"),
    refusal("events.custom", {"a" * 41: {"points": 5}}, f"events.custom.{'a' * 41}", "1 to 40",
            "custom-event-name-too-long"),
    refusal("events.signup.points", -5, "events.signup.points", "greater than or equal to 0", "negative-event"),
    refusal("events.review", {"points": 5, "max_per_day": 0}, "events.review.max_per_day",
            "greater than or equal to 1", "review-max-per-day-zero"),
    refusal("events.review", {"points": 5, "max_per_day": 1001}, "events.review.max_per_day",
            "less than or equal to 1000", "review-max-per-day-too-many"),
    refusal("events.review", {"points": 5, "max_per_day": "3"}, "events.review.max_per_day", "Not a valid integer",
            "review-max-per-day-string"),
    refusal("events.signup", {"points": 5, "max_per_day": 3}, "events.signup.max_per_day", "Unknown field",
            "max-per-day-only-for-reviews"),
    # unknown keys, at every level
    refusal("version", 1, "version", "Unknown field", "unknown-top-level"),
    refusal("earn.bonus", 1, "earn.bonus", "Unknown field", "unknown-in-earn"),
    refusal("earn.exclude.brands", [], "earn.exclude.brands", "Unknown field", "unknown-in-exclude"),
    refusal(f"{MULTIPLIER}.stack", True, f"{MULTIPLIER}.stack", "Unknown field", "unknown-in-multiplier"),
    refusal(f"{CAMPAIGN}.channel", "web", f"{CAMPAIGN}.channel", "Unknown field", "unknown-in-campaign"),
    refusal("earn.caps.per_week", 5, "earn.caps.per_week", "Unknown field", "unknown-in-caps"),
    refusal("expiry.grace_days", 5, "expiry.grace_days", "Unknown field", "unknown-in-expiry"),
    refusal("events.purchase", {"points": 5}, "events.purchase", "Unknown field", "unknown-in-events"),
    refusal("events.birthday.year", 5, "events.birthday.year", "Unknown field", "unknown-in-birthday"),
    refusal("events.referral.cap", 5, "events.referral.cap", "Unknown field", "unknown-in-referral"),
    refusal("events.custom.newsletter.max", 5, "events.custom.newsletter.max", "Unknown field",
            "unknown-in-custom-event"),
    refusal("redeem.currency", "usd", "redeem.currency", "Unknown field", "unknown-in-redeem"),
]


@pytest.mark.parametrize(("raw", "error_path", "message"), REFUSALS)
def test_document_refusal(raw: dict, error_path: str, message: str) -> None:
    with pytest.raises(ValidationProblem) as caught:
        validate_document(raw)
    errors = caught.value.errors or {}
    assert list(errors) == [error_path], errors
    assert any(message in text for text in errors[error_path]), errors


def test_a_bad_key_and_its_bad_value_are_reported_at_the_entry() -> None:
    with pytest.raises(ValidationProblem) as caught:
        validate_document(patched("earn.rates", {"USD": 1.5}))
    assert caught.value.errors == {"earn.rates.USD": [
        "Must be 3 lowercase letters, an ISO currency code such as 'usd'.",
        'Use a string such as "1.5", not a JSON number.',
    ]}


def test_document_refusal_collects_every_error() -> None:
    raw = patched("earn.rates.usd", 1.5)
    raw["redeem"]["step"] = 0
    with pytest.raises(ValidationProblem) as caught:
        validate_document(raw)
    assert set(caught.value.errors or {}) == {"earn.rates.usd", "redeem.step"}
    assert caught.value.status == 422


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(SAMPLE, id="spec-sample"),
        pytest.param(patched(f"{MULTIPLIER}.multiplier", "1"), id="multiplier-1"),
        pytest.param(patched(f"{MULTIPLIER}.multiplier", "100"), id="multiplier-100"),
        pytest.param(patched("redeem.max_share_percent", 1), id="share-1"),
        pytest.param(patched("redeem.max_share_percent", 100), id="share-100"),
        pytest.param(patched("redeem.step", 1), id="step-1"),
        pytest.param(patched("redeem.min_points", 0), id="min-points-0"),
        pytest.param(patched("expiry", {"policy": "fixed_date", "month": 2, "day": 28}), id="fixed-feb-28"),
        pytest.param(patched("expiry", {"policy": "inactivity", "days": 365}), id="inactivity"),
        pytest.param(patched("events", {}), id="no-events"),
        pytest.param(patched("events.custom", {"a" * 40: {"points": 1, "once": False}}), id="custom-name-40"),
        pytest.param(patched(CAMPAIGN, campaign(bonus_points=5, currencies=["usd"])), id="bonus-campaign"),
        pytest.param(patched("earn.rates.usd", "0.00000001"), id="rate-8-places"),
        pytest.param({"earn": {"rates": {"usd": "1"}}}, id="minimal"),
    ],
)
def test_document_accepted_and_round_trips(raw: dict) -> None:
    loaded = validate_document(raw)
    dumped = dump_document(loaded)
    assert json.loads(json.dumps(dumped)) == dumped  # JSON-ready as is
    assert validate_document(dumped) == loaded


def test_document_loads_exact_types_and_every_default() -> None:
    doc = validate_document({"earn": {"rates": {"usd": "1.50"}}})
    assert doc == {
        "earn": {"rates": {"usd": Decimal("1.5")}, "include_shipping": False, "exclude": {"skus": [], "categories": []},
                 "multipliers": [], "tier_multipliers": True, "campaigns": [],
                 "caps": {"per_order": None, "per_member_per_day": None}, "pending_days": 0, "first_order_points": 0},
        "expiry": {"policy": "none"},
        "events": {"signup": None, "birthday": None, "referral": None, "review": None, "custom": {}},
        "redeem": {"point_values": {}, "min_points": 0, "step": 1, "max_share_percent": 100, "tiers": []},
    }
    campaign_ = validate_document(SAMPLE)["earn"]["campaigns"][0]
    assert isinstance(campaign_["multiplier"], Decimal) and campaign_["starts_at"] == START
    assert campaign_["starts_at"].tzinfo is not None


def test_dump_writes_decimals_as_strings_and_times_with_offset() -> None:
    dumped = dump_document(validate_document(SAMPLE))
    assert dumped["earn"]["rates"] == {"usd": "1", "eur": "1", "jpy": "0.01"}
    assert dumped["earn"]["campaigns"][0]["starts_at"] == "2026-11-27T00:00:00+00:00"
    assert dumped["redeem"]["point_values"]["usd"] == "1"


def test_defaults_are_not_shared_between_loads() -> None:
    first = validate_document({"earn": {"rates": {"usd": "1"}}})
    first["earn"]["exclude"]["skus"].append("X")
    assert validate_document({"earn": {"rates": {"usd": "1"}}})["earn"]["exclude"]["skus"] == []


# --- properties ---------------------------------------------------------------------------------------

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SKUS = ("A", "B", "RED", "GIFT-1")
DECIMALS = ("1", "1.25", "1.5", "2", "3", "100")
# Small amounts often, so that growing an order crosses min_spend thresholds and rounding edges.
AMOUNTS = st.one_of(st.integers(0, 2000), st.integers(0, 100_000))


@st.composite
def multipliers(draw: st.DrawFn, index: int) -> dict:
    skus = draw(st.lists(st.sampled_from(SKUS), max_size=2))
    categories = draw(st.lists(st.sampled_from(["shoes", "hats"]), min_size=0 if skus else 1, max_size=2))
    return {"id": f"m{index}", "skus": skus, "categories": categories, "multiplier": draw(st.sampled_from(DECIMALS))}


HOURS = st.integers(-72, 72).map(lambda hours: timedelta(hours=hours))
# Windows around T, most of them open at the moments drawn, some closing within an hour of T.
WINDOWS = st.sampled_from([(-48, 48), (-48, 48), (-1, 1), (0, 1), (1, 3), (-72, -48)])


@st.composite
def campaigns(draw: st.DrawFn, index: int) -> dict:
    starts_hours, ends_hours = draw(WINDOWS)
    starts, ends = T + timedelta(hours=starts_hours), T + timedelta(hours=ends_hours)
    reward = draw(st.one_of(st.builds(lambda m: {"multiplier": m}, st.sampled_from(DECIMALS)),
                            st.builds(lambda b: {"bonus_points": b}, st.integers(1, 500))))
    return {
        "id": f"c{index}", "name": f"Campaign {index}", "starts_at": starts.isoformat(), "ends_at": ends.isoformat(),
        **reward, "min_spend": draw(st.one_of(st.just(0), AMOUNTS)),
        "currencies": draw(st.sampled_from([None, None, ["usd"], ["usd", "jpy"], ["kwd"]])),
        "tiers": draw(st.sampled_from([[], [], ["gold"]])),
        "max_points_per_member": draw(st.sampled_from([None, None, 0, 50])),
    }


@st.composite
def documents(draw: st.DrawFn, caps: bool = True) -> dict:
    rate = st.sampled_from(("0.01", "0.333", "1", "1.5", "2"))
    earn = {
        "rates": {"usd": draw(rate), "jpy": draw(rate), "kwd": draw(rate)},
        "include_shipping": draw(st.booleans()),
        "exclude": {"skus": draw(st.sampled_from([[], ["GIFT-1"]])),
                    "categories": draw(st.sampled_from([[], ["gift"]]))},
        "multipliers": [draw(multipliers(i)) for i in range(draw(st.integers(0, 3)))],
        "tier_multipliers": draw(st.booleans()),
        "campaigns": [draw(campaigns(i)) for i in range(draw(st.integers(0, 2)))],
        "first_order_points": draw(st.integers(0, 200)),
    }
    if caps:
        cap = st.one_of(st.none(), st.integers(0, 3000))
        earn["caps"] = {"per_order": draw(cap), "per_member_per_day": draw(cap)}
    return validate_document({"earn": earn, "events": EVENTS, "redeem": REDEEM})


lines = st.builds(
    Line, sku=st.sampled_from(SKUS), quantity=st.integers(0, 3), unit_amount=AMOUNTS,
    category=st.sampled_from([None, "shoes", "hats", "gift"]), discount_amount=st.one_of(st.just(0), AMOUNTS),
)
orders = st.builds(
    Order, currency=st.sampled_from(["usd", "usd", "jpy", "kwd", "gbp"]), lines=st.lists(lines, max_size=4).map(tuple),
    shipping_amount=st.integers(0, 2000), discount_amount=st.one_of(st.just(0), AMOUNTS),
)
members = st.builds(
    MemberContext, tier=st.sampled_from([None, "gold", "silver"]),
    tier_multiplier=st.sampled_from([Decimal(1), Decimal("1.25"), Decimal(2)]),
    earned_today=st.integers(0, 5000), campaign_points=st.fixed_dictionaries({"c0": st.integers(0, 100)}),
    orders_paid=st.integers(0, 2),
)
# Mostly near T, where the windows open and close, to the second.
moments = st.one_of(st.integers(-7200, 7200).map(lambda seconds: T + timedelta(seconds=seconds)), HOURS.map(T.__add__))


@st.composite
def more_spend(draw: st.DrawFn, order: Order) -> Order:
    """The order with more spent: a dearer or larger line, one more line, or more shipping."""
    kind = draw(st.sampled_from(["unit", "quantity", "line", "shipping"] if order.lines else ["line", "shipping"]))
    if kind == "line":
        return replace(order, lines=(*order.lines, draw(lines)))
    if kind == "shipping":
        return replace(order, shipping_amount=order.shipping_amount + draw(AMOUNTS))
    index = draw(st.integers(0, len(order.lines) - 1))
    old = order.lines[index]
    new = (replace(old, unit_amount=old.unit_amount + draw(AMOUNTS)) if kind == "unit"
           else replace(old, quantity=old.quantity + draw(st.integers(0, 3))))
    return replace(order, lines=(*order.lines[:index], new, *order.lines[index + 1:]))


@PROPERTY_SETTINGS
@given(doc=documents(), order=orders, member=members, now=moments)
def test_earn_never_negative_and_breakdown_sums_to_total(doc: dict, order: Order, member: MemberContext,
                                                         now: datetime) -> None:
    result = evaluate_earn(order, member, doc, now)
    assert result.points >= 0
    assert result.points == sum(item.points for item in result.breakdown)
    assert all(item.points >= 0 for item in result.breakdown if not item.rule.startswith("cap."))
    given_by = {item.rule.removeprefix("campaign."): item.points for item in result.breakdown}
    assert all(0 <= points <= given_by[name] for name, points in result.campaign_points.items())


@PROPERTY_SETTINGS
@given(doc=documents(), order=orders, member=members, now=moments)
def test_earn_is_deterministic(doc: dict, order: Order, member: MemberContext, now: datetime) -> None:
    assert evaluate_earn(order, member, doc, now) == evaluate_earn(order, member, copy.deepcopy(doc), now)


@PROPERTY_SETTINGS
@given(doc=documents(caps=False), order=orders, member=members, now=moments, data=st.data())
def test_more_spend_never_earns_fewer_points(doc: dict, order: Order, member: MemberContext, now: datetime,
                                              data: st.DataObject) -> None:
    bigger = data.draw(more_spend(order))
    assert evaluate_earn(bigger, member, doc, now).points >= evaluate_earn(order, member, doc, now).points


@PROPERTY_SETTINGS
@given(doc=documents(), member=members, now=moments,
       event=st.sampled_from(["signup", "birthday", "review", "referral_referrer", "referral_referred",
                              "custom:newsletter", "custom:other", "other"]))
def test_event_never_negative_and_breakdown_sums_to_total(doc: dict, member: MemberContext, now: datetime,
                                                          event: str) -> None:
    result = evaluate_event(event, member, doc, now)
    assert result.points >= 0
    assert result.points == sum(item.points for item in result.breakdown)
    assert result == evaluate_event(event, member, doc, now)


@PROPERTY_SETTINGS
@given(
    redeem=st.fixed_dictionaries({
        "point_values": st.fixed_dictionaries({"usd": st.sampled_from(["0.01", "0.3", "1", "2.5", "100"])}),
        "min_points": st.integers(0, 1000), "step": st.integers(1, 300), "max_share_percent": st.integers(1, 100),
    }),
    amount=st.integers(0, 1_000_000), available=st.integers(-10, 100_000),
)
def test_redeem_stays_within_every_limit(redeem: dict, amount: int, available: int) -> None:
    doc = rules(redeem=redeem)
    result = evaluate_redeem(amount, "usd", PAID, available, doc)
    assert 0 <= result.max_points <= max(0, available)
    assert result.max_points % redeem["step"] == 0
    assert result.max_points == 0 or result.max_points >= redeem["min_points"]
    assert result.max_discount_amount == points_value(result.max_points, "usd", doc)
    assert result.max_discount_amount * 100 <= amount * redeem["max_share_percent"]
    assert (result.max_points == 0) == (result.reason is not None)
