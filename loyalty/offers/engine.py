"""The offer engine: whether a coupon applies to a cart for a shopper now, and what it takes off each line.

Pure: plain data in (the dataclasses below), plain data out; no database, no Flask, no clock (`now` is an
argument). Money is integer minor units and every step is exact int arithmetic: a discount is rounded down
once, then split over the eligible lines by the largest-remainder method, so the lines always add up to the
total and no line is discounted below zero.

Checks run in a fixed order and the first that fails names the reason (the API's error codes):
coupon_invalid, coupon_expired, coupon_not_started / early_access_only, tier_required, usage_limit_reached,
coupon_not_applicable, min_order_not_met.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# Pure like this module: stdlib only, no database or Flask; reused so money reads the same everywhere.
from loyalty.rules.engine import format_money

KINDS = frozenset({"percent_off", "amount_off", "free_shipping"})

COUPON_INVALID = "coupon_invalid"
COUPON_EXPIRED = "coupon_expired"
COUPON_NOT_STARTED = "coupon_not_started"
EARLY_ACCESS_ONLY = "early_access_only"
TIER_REQUIRED = "tier_required"
USAGE_LIMIT_REACHED = "usage_limit_reached"
COUPON_NOT_APPLICABLE = "coupon_not_applicable"
MIN_ORDER_NOT_MET = "min_order_not_met"


@dataclass(frozen=True)
class Offer:
    kind: str  # "percent_off" | "amount_off" | "free_shipping"
    percent: int | None = None  # 1..100, for percent_off
    amount: int | None = None  # minor units, for amount_off
    currency: str | None = None  # required for amount_off and for a min_order_amount
    min_order_amount: int = 0  # minor units of the eligible subtotal, after line discounts
    include_skus: frozenset[str] = frozenset()  # no include at all: every line
    include_categories: frozenset[str] = frozenset()
    exclude_skus: frozenset[str] = frozenset()
    exclude_categories: frozenset[str] = frozenset()
    starts_at: datetime | None = None  # public window [starts_at, ends_at)
    ends_at: datetime | None = None
    eligible_tiers: frozenset[str] = frozenset()  # empty: everyone; else an exclusive discount
    early_access: Mapping[str, int] = field(default_factory=dict)  # tier code -> hours before starts_at
    usage_limit_total: int | None = None
    usage_limit_per_member: int | None = None

    def __post_init__(self) -> None:
        # Only what the offers table's constraints already guarantee, so a stored offer never raises here.
        if self.kind not in KINDS:
            raise ValueError(f"unknown offer kind {self.kind!r}")
        if self.kind == "percent_off" and not (self.percent is not None and 1 <= self.percent <= 100):
            raise ValueError("percent_off needs a percent from 1 to 100")
        if self.kind == "amount_off" and not (self.amount is not None and self.amount > 0 and self.currency):
            raise ValueError("amount_off needs a positive amount and a currency")


@dataclass(frozen=True)
class CodeState:
    exists: bool = True
    active: bool = True  # the code and its offer
    assigned_member_id: int | None = None  # a unique code belongs to this member only
    expires_at: datetime | None = None  # the code's own expiry, e.g. a reward coupon
    uses_total: int = 0  # uses so far (consumed + reserved), counted by the caller
    uses_by_member: int = 0
    uses_of_code: int = 0  # this code's own uses so far
    uses_per_code: int | None = None  # how many orders this code may pay for; None: no limit of its own


@dataclass(frozen=True)
class CartLine:
    sku: str
    quantity: int
    unit_amount: int
    category: str | None = None
    discount_amount: int = 0  # minor units off the whole line, before this offer


@dataclass(frozen=True)
class Cart:
    currency: str
    lines: tuple[CartLine, ...]
    shipping_amount: int = 0


@dataclass(frozen=True)
class Shopper:
    member_id: int | None  # None: a guest
    tier: str | None = None


@dataclass(frozen=True)
class Validation:
    valid: bool
    code: str | None  # the API error code when not valid
    detail: str
    discount_amount: int  # total, minor units: lines + shipping
    line_discounts: tuple[int, ...]  # one per cart line, in order
    shipping_discount: int
    opens_at: datetime | None  # when it opens for this shopper, for coupon_not_started / early_access_only


# --- time ---------------------------------------------------------------------------------------------


def _hours(offer: Offer, tier: str | None) -> int:
    # Negative or missing hours would open an offer later than its public start; treat them as none.
    return max(0, offer.early_access.get(tier) or 0) if tier is not None else 0


def opens_at_for(offer: Offer, tier: str | None) -> datetime | None:
    """The moment a member of `tier` (None: a guest) may first use the offer; None when it has no start.
    Time only: whether the tier is eligible at all is a separate check (tier_required)."""
    if offer.starts_at is None:
        return None
    return offer.starts_at - timedelta(hours=_hours(offer, tier))


def _open_tiers(offer: Offer, now: datetime) -> list[str]:
    """Tiers already inside their early access at `now`. A tier that may not use the offer at all
    (outside a non-empty eligible_tiers) does not count: the offer is not open to anyone through it."""
    assert offer.starts_at is not None
    return sorted(
        tier for tier in offer.early_access
        if _hours(offer, tier) and (not offer.eligible_tiers or tier in offer.eligible_tiers)
        and now >= offer.starts_at - timedelta(hours=_hours(offer, tier))
    )


def _when(moment: datetime) -> str:
    """Like "2026-11-27 09:00 UTC", with seconds only when there are some."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%d %H:%M" + (":%S" if utc.second else "") + " UTC")


def _tier_name(tier: str) -> str:
    return tier.replace("_", " ").replace("-", " ").title()


def _tier_names(tiers: Iterable[str]) -> str:
    names = [_tier_name(tier) for tier in sorted(tiers)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# --- checks -------------------------------------------------------------------------------------------

Refusal = tuple[str, str]  # (error code, detail)


def _code_refusal(code: CodeState, shopper: Shopper) -> Refusal | None:
    if not code.exists:
        return COUPON_INVALID, "There is no such code"
    if not code.active:
        return COUPON_INVALID, "This code is no longer active"
    if code.assigned_member_id is not None and code.assigned_member_id != shopper.member_id:
        return COUPON_INVALID, "This code belongs to another member"
    return None


def _expiry_refusal(offer: Offer, code: CodeState, now: datetime) -> Refusal | None:
    ends = [(at, what) for at, what in ((offer.ends_at, "offer ended"), (code.expires_at, "code expired"))
            if at is not None and now >= at]
    if not ends:
        return None
    at, what = min(ends, key=lambda end: end[0])  # the first to pass is the reason
    return COUPON_EXPIRED, f"This {what} at {_when(at)}"


def _timing_refusal(offer: Offer, shopper: Shopper, now: datetime) -> Refusal | None:
    opens = opens_at_for(offer, shopper.tier)
    if offer.starts_at is None or opens is None or now >= opens:
        return None
    open_tiers = _open_tiers(offer, now)
    if open_tiers:
        return EARLY_ACCESS_ONLY, (f"Open early to {_tier_names(open_tiers)} members only; "
                                   f"opens for you at {_when(opens)}")
    who = f" for {_tier_name(shopper.tier)} members" if shopper.tier and opens < offer.starts_at else ""
    return COUPON_NOT_STARTED, f"Opens{who} at {_when(opens)}"


def _tier_refusal(offer: Offer, shopper: Shopper) -> Refusal | None:
    if offer.eligible_tiers and shopper.tier not in offer.eligible_tiers:
        return TIER_REQUIRED, f"Only for {_tier_names(offer.eligible_tiers)} members"
    return None


def _usage_refusal(offer: Offer, code: CodeState) -> Refusal | None:
    if code.uses_per_code is not None and code.uses_of_code >= code.uses_per_code:
        return USAGE_LIMIT_REACHED, ("This code has been used" if code.uses_per_code == 1 else
                                     f"This code has been used the {code.uses_per_code} times it may be")
    total, mine = offer.usage_limit_total, offer.usage_limit_per_member
    if total is not None and code.uses_total >= total:
        return USAGE_LIMIT_REACHED, f"This offer has reached its limit of {total} use{'' if total == 1 else 's'}"
    if mine is not None and code.uses_by_member >= mine:
        times = "once" if mine == 1 else f"{mine} times"
        return USAGE_LIMIT_REACHED, f"This offer may be used {times} per member, and you have used it {times}"
    return None


def _cart_refusal(offer: Offer, cart: Cart, subtotal: int) -> Refusal | None:
    if offer.currency and offer.currency.lower() != cart.currency.lower():
        detail = f"This offer is in {offer.currency.upper()}; the cart is in {cart.currency.upper()}"
        return COUPON_NOT_APPLICABLE, detail
    if subtotal <= 0:  # a line with nothing left to pay cannot carry a discount, so it does not count
        return COUPON_NOT_APPLICABLE, "No item in the cart is eligible for this offer"
    if offer.kind == "free_shipping" and cart.shipping_amount <= 0:
        return COUPON_NOT_APPLICABLE, "There is no shipping to make free"
    return None


def _minimum_refusal(offer: Offer, cart: Cart, subtotal: int) -> Refusal | None:
    if offer.min_order_amount <= 0:
        return None
    if not offer.currency:
        # Minor units mean nothing without a currency (JPY 5000 is not USD 5000): fail closed.
        return COUPON_NOT_APPLICABLE, "This offer's minimum order has no currency"
    if subtotal < offer.min_order_amount:
        short = offer.min_order_amount - subtotal
        return MIN_ORDER_NOT_MET, (f"Spend at least {format_money(offer.min_order_amount, cart.currency)} on "
                                   f"eligible items; {format_money(short, cart.currency)} to go")
    return None


# --- amounts ------------------------------------------------------------------------------------------


def _matches(line: CartLine, skus: frozenset[str], categories: frozenset[str]) -> bool:
    return line.sku in skus or (line.category is not None and line.category in categories)


def _eligible(offer: Offer, line: CartLine) -> bool:
    """Included (when any include is given) and not excluded; an exclude wins over an include."""
    includes = offer.include_skus or offer.include_categories
    if includes and not _matches(line, offer.include_skus, offer.include_categories):
        return False
    return not _matches(line, offer.exclude_skus, offer.exclude_categories)


def _line_amount(line: CartLine) -> int:
    return max(0, line.quantity * line.unit_amount - max(0, line.discount_amount))


def _allocate(total: int, amounts: tuple[int, ...]) -> tuple[int, ...]:
    """Split `total` (at most sum(amounts)) over amounts in proportion, by the largest remainder: each
    gets the floor of its exact share, and the units left over go to the largest remainders, the earlier
    on a tie. Sums exactly to `total`; no share exceeds its amount (a share is rounded up only when its
    exact value is below it)."""
    whole = sum(amounts)
    if whole <= 0:
        return tuple(0 for _ in amounts)
    shares = [divmod(total * amount, whole) for amount in amounts]
    left = total - sum(quotient for quotient, _ in shares)
    ranked = sorted(range(len(amounts)), key=lambda index: (-shares[index][1], index))
    lucky = set(ranked[:left])
    return tuple(quotient + (index in lucky) for index, (quotient, _) in enumerate(shares))


def _lines_total(offer: Offer, subtotal: int) -> int:
    if offer.kind == "percent_off":
        assert offer.percent is not None
        return subtotal * offer.percent // 100  # rounded down, once, on the whole subtotal
    if offer.kind == "amount_off":
        assert offer.amount is not None
        return min(offer.amount, subtotal)
    return 0


def _granted(offer: Offer, cart: Cart, amounts: tuple[int, ...]) -> Validation:
    subtotal = sum(amounts)
    lines = _allocate(_lines_total(offer, subtotal), amounts)
    shipping = max(0, cart.shipping_amount) if offer.kind == "free_shipping" else 0
    total = sum(lines) + shipping
    if shipping:
        detail = f"Free shipping: {format_money(shipping, cart.currency)} off"
    else:
        detail = f"{format_money(total, cart.currency)} off {format_money(subtotal, cart.currency)} of eligible items"
    return Validation(True, None, detail, total, lines, shipping, None)


def _refused(refusal: Refusal, offer: Offer, cart: Cart, shopper: Shopper) -> Validation:
    code, detail = refusal
    opens = opens_at_for(offer, shopper.tier) if code in (COUPON_NOT_STARTED, EARLY_ACCESS_ONLY) else None
    return Validation(False, code, detail, 0, tuple(0 for _ in cart.lines), 0, opens)


def holder_refusal(offer: Offer, code: CodeState, shopper: Shopper, now: datetime) -> Refusal | None:
    """The first reason, whatever the cart, the shopper could not use the coupon at `now`: the checks of
    `validate` up to the cart's own."""
    return (
        _code_refusal(code, shopper)
        or _expiry_refusal(offer, code, now)
        or _timing_refusal(offer, shopper, now)
        or _tier_refusal(offer, shopper)
        or _usage_refusal(offer, code)
    )


def validate(offer: Offer, code: CodeState, cart: Cart, shopper: Shopper, now: datetime) -> Validation:
    """Whether the coupon applies to the cart for the shopper at `now` and what it takes off, line by line;
    or the first reason it does not, in the order of the module docstring. All datetimes timezone-aware."""
    amounts = tuple(_line_amount(line) if _eligible(offer, line) else 0 for line in cart.lines)
    subtotal = sum(amounts)
    refusal = (
        holder_refusal(offer, code, shopper, now)
        or _cart_refusal(offer, cart, subtotal)
        or _minimum_refusal(offer, cart, subtotal)
    )
    return _refused(refusal, offer, cart, shopper) if refusal else _granted(offer, cart, amounts)
