"""The rule engine: what an order or an event earns, and how many points may pay for an order.

Pure: plain data in (the dataclasses below and a document loaded by `document.validate_document`),
plain data out; no database, no Flask, no clock. Money is integer minor units and points are integers.
Every computation is exact (int, Decimal, Fraction): an amount becomes points once per breakdown item and
is rounded down there, so the breakdown explains every point and no float ever holds money or points.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from math import floor
from typing import Any

# ISO 4217 minor-unit exponents that differ from the usual 2.
ZERO_DECIMAL = frozenset(
    {"bif", "clp", "djf", "gnf", "isk", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf",
     "xof", "xpf"}
)
THREE_DECIMAL = frozenset({"bhd", "iqd", "jod", "kwd", "lyd", "omr", "tnd"})


@dataclass(frozen=True)
class Line:
    sku: str
    quantity: int
    unit_amount: int
    category: str | None = None
    discount_amount: int = 0  # minor units off the whole line


@dataclass(frozen=True)
class Order:
    currency: str
    lines: tuple[Line, ...]
    shipping_amount: int = 0
    discount_amount: int = 0  # order-level, spread over the earning lines in proportion to their amounts


@dataclass(frozen=True)
class MemberContext:
    tier: str | None = None
    tier_multiplier: Decimal = Decimal(1)
    birthday: date | None = None
    earned_today: int = 0
    campaign_points: Mapping[str, int] = field(default_factory=dict)  # earned so far, by campaign id
    orders_paid: int = 0
    event_counts: Mapping[str, int] = field(default_factory=dict)  # keyed by the event string, e.g. "custom:news"
    events_today: Mapping[str, int] = field(default_factory=dict)  # the same, paid since the day began (UTC)
    last_birthday_award: date | None = None
    referrals_rewarded: int = 0


@dataclass(frozen=True)
class BreakdownItem:
    rule: str
    points: int
    detail: str


@dataclass(frozen=True)
class EarnResult:
    points: int
    breakdown: tuple[BreakdownItem, ...]
    pending_until: datetime | None
    expires_at: datetime | None
    campaign_points: Mapping[str, int]  # points each campaign gave in this result


@dataclass(frozen=True)
class RedeemResult:
    allowed: bool
    reason: str | None
    max_points: int
    value_per_point: Decimal
    max_discount_amount: int
    min_points: int
    step: int


# --- money --------------------------------------------------------------------------------------------


def minor_exponent(currency: str) -> int:
    """Digits after the decimal point in the currency's minor unit (JPY 0, USD 2, KWD 3)."""
    code = currency.lower()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


def format_money(amount: int | Fraction, currency: str) -> str:
    """Like "USD 42.50"; a fractional amount (after a share of a discount) shows rounded down."""
    exponent = minor_exponent(currency)
    major, minor = divmod(floor(amount), 10**exponent)
    return f"{currency.upper()} {major}" + (f".{minor:0{exponent}d}" if exponent else "")


def _number(value: Decimal) -> str:
    """A decimal as people write it: "2", "1.5", "0.01" (never "1E+2")."""
    return format(value.normalize(), "f")


def _points_text(count: int | Decimal) -> str:
    return f"{_number(Decimal(count))} point{'' if count == 1 else 's'}"


# --- earning ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Basis:
    """What an order earns on: its earning lines with their exact amounts, at one currency's rate."""

    currency: str
    rate: Decimal  # points per major unit
    lines: tuple[tuple[Line, Fraction], ...]
    shipping: int  # the shipping that earns: 0 unless include_shipping
    excluded: int  # how many lines never earn

    @property
    def lines_amount(self) -> Fraction:
        return sum((amount for _, amount in self.lines), Fraction(0))

    def points(self, amount: Fraction) -> Fraction:
        """Exact, unrounded base points for an amount in minor units."""
        return amount * Fraction(self.rate) / 10 ** minor_exponent(self.currency)

    def money(self, amount: int | Fraction) -> str:
        return format_money(amount, self.currency)


def _basis(order: Order, earn: Mapping[str, Any], rate: Decimal) -> _Basis:
    currency = order.currency.lower()
    exclude = earn["exclude"]
    earning = [ln for ln in order.lines if ln.sku not in exclude["skus"] and ln.category not in exclude["categories"]]
    nets = [max(0, ln.quantity * ln.unit_amount - max(0, ln.discount_amount)) for ln in earning]
    total = sum(nets)
    discount = min(max(0, order.discount_amount), total)
    # Exact shares, not rounded ones: rounding would move a minor unit between lines as amounts change,
    # and then more spend could earn fewer points on a line with a multiplier.
    amounts = [Fraction(net) - Fraction(discount * net, total) if total else Fraction(0) for net in nets]
    shipping = max(0, order.shipping_amount) if earn["include_shipping"] else 0
    excluded = len(order.lines) - len(earning)
    return _Basis(currency, rate, tuple(zip(earning, amounts, strict=True)), shipping, excluded)


def _base_item(basis: _Basis) -> BreakdownItem:
    amount = basis.lines_amount + basis.shipping
    per = basis.money(10 ** minor_exponent(basis.currency))
    detail = f"{_points_text(basis.rate)} per {per} on {basis.money(amount)}"
    notes = [f"shipping {basis.money(basis.shipping)} included"] if basis.shipping else []
    notes += [f"{basis.excluded} excluded line{'s' if basis.excluded > 1 else ''}"] if basis.excluded else []
    return BreakdownItem("base", floor(basis.points(amount)), detail + (f" ({', '.join(notes)})" if notes else ""))


def _extra(multiplier: Decimal, basis: _Basis, amount: Fraction) -> int:
    """Points a multiplier adds on top of the base for an amount: (m - 1) x base, rounded down."""
    return floor((Fraction(multiplier) - 1) * basis.points(amount))


def _matches(line: Line, multiplier: Mapping[str, Any]) -> bool:
    return line.sku in multiplier["skus"] or (line.category is not None and line.category in multiplier["categories"])


def _multiplier_items(basis: _Basis, multipliers: Sequence[Mapping[str, Any]]) -> list[BreakdownItem]:
    """One item per multiplier that won at least one line; a line matched by several takes the largest."""
    amounts: dict[str, Fraction] = {}
    contested: dict[str, int] = {}  # lines where this multiplier beat others
    for line, amount in basis.lines:
        matches = [m for m in multipliers if _matches(line, m)]
        if matches:
            best = max(matches, key=lambda m: m["multiplier"])  # the first in the document on a tie
            amounts[best["id"]] = amounts.get(best["id"], Fraction(0)) + amount
            contested[best["id"]] = contested.get(best["id"], 0) + (len(matches) > 1)
    items = []
    for m in multipliers:  # document order, so the breakdown is stable
        if m["id"] in amounts:
            detail = f"x{_number(m['multiplier'])} on {basis.money(amounts[m['id']])}"
            detail += f" ({m['description']})" if m["description"] else ""
            if contested[m["id"]]:
                lines = contested[m["id"]]
                detail += f"; the largest of several matching multipliers on {lines} line{'s' if lines > 1 else ''}"
            points = _extra(m["multiplier"], basis, amounts[m["id"]])
            items.append(BreakdownItem(f"multiplier.{m['id']}", points, detail))
    return items


def _tier_items(basis: _Basis, member: MemberContext, earn: Mapping[str, Any]) -> list[BreakdownItem]:
    # A tier can only add: a multiplier below 1 is treated as none rather than taking points away.
    if not earn["tier_multipliers"] or member.tier_multiplier <= 1:
        return []
    amount = basis.lines_amount
    detail = f"{member.tier or 'tier'} x{_number(member.tier_multiplier)} on {basis.money(amount)}"
    return [BreakdownItem("tier", _extra(member.tier_multiplier, basis, amount), detail)]


def _campaign_applies(campaign: Mapping[str, Any], basis: _Basis, member: MemberContext, now: datetime) -> bool:
    currencies = campaign["currencies"]
    return (
        campaign["starts_at"] <= now < campaign["ends_at"]
        and (not campaign["tiers"] or member.tier in campaign["tiers"])
        and (currencies is None or basis.currency in currencies)
        and basis.lines_amount >= campaign["min_spend"]
    )


def _campaign_item(campaign: Mapping[str, Any], basis: _Basis, member: MemberContext) -> BreakdownItem:
    if campaign["multiplier"] is not None:
        points = _extra(campaign["multiplier"], basis, basis.lines_amount)
        detail = f"{campaign['name']}: x{_number(campaign['multiplier'])} on {basis.money(basis.lines_amount)}"
    else:
        points = campaign["bonus_points"]
        detail = f"{campaign['name']}: {points} bonus points"
    cap = campaign["max_points_per_member"]
    if cap is not None:
        left = max(0, cap - member.campaign_points.get(campaign["id"], 0))
        if points > left:
            points, detail = left, detail + f"; capped at {cap} points per member, {left} left"
    return BreakdownItem(f"campaign.{campaign['id']}", points, detail)


def _first_order_items(member: MemberContext, earn: Mapping[str, Any]) -> list[BreakdownItem]:
    if earn["first_order_points"] and member.orders_paid == 0:
        return [BreakdownItem("first_order", earn["first_order_points"], "Bonus for the first paid order")]
    return []


def _capped(items: list[BreakdownItem], per_order: int | None, per_day: int | None, earned_today: int
            ) -> list[BreakdownItem]:
    """The items plus a negative item for each cap the running total goes past."""
    total = sum(item.points for item in items)
    capped = list(items)
    if per_order is not None and total > per_order:
        capped.append(BreakdownItem("cap.per_order", per_order - total, f"At most {per_order} points per order"))
        total = per_order
    room = None if per_day is None else max(0, per_day - max(0, earned_today))
    if room is not None and total > room:
        detail = f"At most {per_day} points a day; {max(0, earned_today)} already earned today"
        capped.append(BreakdownItem("cap.per_member_per_day", room - total, detail))
    return capped


def _campaign_points(items: Sequence[BreakdownItem]) -> dict[str, int]:
    """What each campaign gave once caps are applied. A cap cuts the last items first (first order,
    campaigns, tier, multipliers, then base), so a campaign is charged only for points the member kept."""
    cut = -sum(item.points for item in items if item.rule.startswith("cap."))
    kept: dict[str, int] = {}
    for item in reversed([item for item in items if not item.rule.startswith("cap.")]):
        taken = min(cut, item.points)
        cut -= taken
        if item.rule.startswith("campaign."):
            kept[item.rule.removeprefix("campaign.")] = item.points - taken
    return dict(reversed(kept.items()))


def evaluate_earn(order: Order, member: MemberContext, rules: Mapping[str, Any], now: datetime) -> EarnResult:
    """What a paid order earns, itemised; `now` is when it is earned (campaign windows, pending, expiry)."""
    earn = rules["earn"]
    rate = earn["rates"].get(order.currency.lower())
    if rate is None:
        item = BreakdownItem("base", 0, f"No earning rate for {order.currency.upper()}: the order earns no points")
        items = [item]
    else:
        basis = _basis(order, earn, rate)
        campaigns = [c for c in earn["campaigns"] if _campaign_applies(c, basis, member, now)]
        items = [
            _base_item(basis),
            *_multiplier_items(basis, earn["multipliers"]),
            *_tier_items(basis, member, earn),
            *(_campaign_item(c, basis, member) for c in campaigns),
            *_first_order_items(member, earn),
        ]
        items = _capped(items, earn["caps"]["per_order"], earn["caps"]["per_member_per_day"], member.earned_today)
    return _result(items, rules, now, pending=True)


def _result(items: list[BreakdownItem], rules: Mapping[str, Any], now: datetime, pending: bool) -> EarnResult:
    """The result of itemised points; nothing earned carries no dates, as no lot will be made for it."""
    points = sum(item.points for item in items)
    return EarnResult(
        points=points,
        breakdown=tuple(items),
        pending_until=pending_until(now, rules) if points and pending else None,
        expires_at=expiry_for(now, rules) if points else None,
        campaign_points=_campaign_points(items),
    )


# --- events -------------------------------------------------------------------------------------------

# Each rule answers (points, why) for a member; config is the event's section of the document.
EventRule = Callable[[Mapping[str, Any], MemberContext, datetime], tuple[int, str]]


def _once(event: str, points: int, member: MemberContext) -> tuple[int, str]:
    if member.event_counts.get(event, 0) > 0:
        return 0, "Already rewarded: this reward is paid once"
    return points, "Paid once"


def _signup(config: Mapping[str, Any], member: MemberContext, now: datetime) -> tuple[int, str]:
    return _once("signup", config["points"], member)


def _review(config: Mapping[str, Any], member: MemberContext, now: datetime) -> tuple[int, str]:
    limit = config["max_per_day"]
    if limit is None:
        return config["points"], "Paid for every review"
    if member.events_today.get("review", 0) >= limit:
        return 0, f"Daily limit reached: at most {limit} reviews rewarded a day"
    return config["points"], f"Paid for every review, at most {limit} a day"


def _referrer(config: Mapping[str, Any], member: MemberContext, now: datetime) -> tuple[int, str]:
    limit = config["max_per_referrer"]
    if limit is not None and member.referrals_rewarded >= limit:
        return 0, f"Referral limit reached: at most {limit} rewarded referrals"
    return config["referrer_points"], "Paid to the member who referred"


def _referred(config: Mapping[str, Any], member: MemberContext, now: datetime) -> tuple[int, str]:
    return _once("referral_referred", config["referred_points"], member)


def _birthday_on(year: int, birthday: date) -> date:
    """The birthday in a given year; Feb 29 falls on Feb 28 when the year has no Feb 29."""
    if (birthday.month, birthday.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def _birthday(config: Mapping[str, Any], member: MemberContext, now: datetime) -> tuple[int, str]:
    today = now.date()
    if member.birthday is None:
        return 0, "No birthday on file"
    if member.last_birthday_award is not None and member.last_birthday_award.year == today.year:
        return 0, f"Birthday reward already paid in {today.year}"
    if config["timing"] == "month" and today.month != member.birthday.month:
        return 0, "Paid in the birthday month only"
    if config["timing"] == "day" and today != _birthday_on(today.year, member.birthday):
        return 0, "Paid on the birthday only"
    return config["points"], "Happy birthday: paid once a year"


EVENT_RULES: dict[str, tuple[str, EventRule]] = {  # event -> (its section in "events", its rule)
    "signup": ("signup", _signup),
    "review": ("review", _review),
    "birthday": ("birthday", _birthday),
    "referral_referrer": ("referral", _referrer),
    "referral_referred": ("referral", _referred),
}


def _event_award(event: str, member: MemberContext, events: Mapping[str, Any], now: datetime) -> BreakdownItem:
    if event.startswith("custom:"):
        name = event.removeprefix("custom:")
        config = events["custom"].get(name)
        if config is None:
            return BreakdownItem(f"event.custom.{name}", 0, f"No custom event {name!r} in these rules")
        points, why = _once(event, config["points"], member) if config["once"] else (config["points"], "Paid each time")
        return BreakdownItem(f"event.custom.{name}", points, why)
    if event not in EVENT_RULES:
        return BreakdownItem("event.unknown", 0, f"Unknown event {event!r}")
    section, rule = EVENT_RULES[event]
    if events[section] is None:
        return BreakdownItem(f"event.{event}", 0, f"No {section} reward in these rules")
    points, why = rule(events[section], member, now)
    return BreakdownItem(f"event.{event}", points, why)


def evaluate_event(event: str, member: MemberContext, rules: Mapping[str, Any], now: datetime) -> EarnResult:
    """What an event earns: "signup", "birthday", "review", "referral_referrer", "referral_referred" or
    "custom:<name>". Not eligible or not configured earns 0 with an item saying why. Event points are never
    pending (there is nothing to return) but obey the daily cap and expire like any points."""
    item = _event_award(event, member, rules["events"], now)
    items = _capped([item], None, rules["earn"]["caps"]["per_member_per_day"], member.earned_today)
    return _result(items, rules, now, pending=False)


# --- redemption ---------------------------------------------------------------------------------------


def points_value(points: int, currency: str, rules: Mapping[str, Any]) -> int:
    """What points are worth in the currency's minor units, rounded down; 0 where points have no value."""
    if points < 0:
        raise ValueError("points must not be negative")
    value = rules["redeem"]["point_values"].get(currency.lower())
    return 0 if value is None else floor(points * Fraction(value))


def _fitting_points(order_amount: int, value: Decimal, share_percent: int) -> int:
    """The most points whose exact value stays within share_percent of the order amount."""
    return floor(Fraction(max(0, order_amount) * share_percent, 100) / Fraction(value))


def least_points(min_points: int, step: int) -> int:
    """The fewest points that may be redeemed: min_points (at least 1), rounded up to a whole step."""
    return -(-max(min_points, 1) // step) * step


def evaluate_redeem(
    order_amount: int, currency: str, member: MemberContext, available_points: int, rules: Mapping[str, Any]
) -> RedeemResult:
    """How many points may pay for an order of `order_amount` minor units."""
    redeem = rules["redeem"]
    value = redeem["point_values"].get(currency.lower())
    min_points, step = redeem["min_points"], redeem["step"]

    def refuse(reason: str, allowed: bool = False) -> RedeemResult:
        return RedeemResult(allowed, reason, 0, value or Decimal(0), 0, min_points, step)

    if redeem["tiers"] and member.tier not in redeem["tiers"]:
        return refuse(f"Only members of {', '.join(redeem['tiers'])} may redeem points")
    if value is None:
        return refuse(f"Points cannot pay in {currency.upper()}")
    available = max(0, available_points)
    fitting = _fitting_points(order_amount, value, redeem["max_share_percent"])
    max_points = min(available, fitting) // step * step
    smallest = least_points(min_points, step)
    if max_points < smallest:
        # Still allowed: the member may redeem with more points or on a larger order.
        if available < smallest:
            return refuse(f"At least {_points_text(smallest)} are needed; {available} available", allowed=True)
        share = redeem["max_share_percent"]
        return refuse(f"The order is too small: points may pay at most {share}% of it", allowed=True)
    return RedeemResult(True, None, max_points, value, points_value(max_points, currency, rules), min_points, step)


# --- time ---------------------------------------------------------------------------------------------


def _add_months(moment: datetime, months: int) -> datetime:
    """Calendar months later, the day clamped to the month's end (Jan 31 + 1 month = Feb 28 or 29)."""
    years, month_index = divmod(moment.month - 1 + months, 12)
    year, month = moment.year + years, month_index + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


def _next_date(moment: datetime, month: int, day: int) -> datetime:
    """The next month/day at 00:00 (in the moment's timezone, UTC by convention) strictly after moment."""
    for year in (moment.year, moment.year + 1):
        candidate = datetime(year, month, min(day, calendar.monthrange(year, month)[1]), tzinfo=moment.tzinfo)
        if candidate > moment:
            return candidate
    raise AssertionError("unreachable: next year's date is always later")


def expiry_for(earned_at: datetime, rules: Mapping[str, Any]) -> datetime | None:
    """When points earned at `earned_at` expire; None when they carry no date (none, inactivity)."""
    expiry = rules["expiry"]
    if expiry["policy"] == "rolling":
        return _add_months(earned_at, expiry["months"])
    if expiry["policy"] == "fixed_date":
        return _next_date(earned_at, expiry["month"], expiry["day"])
    return None


def pending_until(earned_at: datetime, rules: Mapping[str, Any]) -> datetime | None:
    """The end of the return window; None when points are available at once."""
    days = rules["earn"]["pending_days"]
    return earned_at + timedelta(days=days) if days else None
