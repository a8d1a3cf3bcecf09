"""The pure offer engine (DESIGN.md, "Offers and coupons"; error codes from API.md).

Table-driven cases put each check at its boundary (one second before and exactly at every moment, one
minor unit under and exactly at the minimum, limit - 1 and the limit); hypothesis properties check what
must hold for any offer and cart: the line discounts and shipping add up to the total, no line goes
below zero, the total never exceeds what is eligible, and the same input gives the same output.
No database is used.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.offers.engine import (
    Cart,
    CartLine,
    CodeState,
    Offer,
    Shopper,
    Validation,
    opens_at_for,
    validate,
)

START = datetime(2026, 11, 27, 9, tzinfo=UTC)
END = datetime(2026, 11, 30, 9, tzinfo=UTC)
SECOND = timedelta(seconds=1)
HOUR = timedelta(hours=1)
GOLD_OPENS = START - 24 * HOUR
SILVER_OPENS = START - 12 * HOUR
DURING = START + HOUR

TEN_PERCENT = Offer(kind="percent_off", percent=10)
# Black Friday: public at START, Gold a day early, Silver 12 hours early, Bronze at the public start.
EARLY = replace(TEN_PERCENT, starts_at=START, ends_at=END, early_access={"gold": 24, "silver": 12})
CART = Cart("usd", (CartLine("TEE-1", 1, 1000, "shirts"),))
GOLD, SILVER, BRONZE, GUEST = Shopper(1, "gold"), Shopper(2, "silver"), Shopper(3, "bronze"), Shopper(None)


def check(offer: Offer = TEN_PERCENT, code: CodeState | None = None, cart: Cart = CART,
          shopper: Shopper = BRONZE, now: datetime = DURING) -> Validation:
    return validate(offer, code or CodeState(), cart, shopper, now)


def lines(*amounts: int, currency: str = "usd", shipping: int = 0) -> Cart:
    return Cart(currency, tuple(CartLine(f"SKU-{i}", 1, amount) for i, amount in enumerate(amounts)), shipping)


# --- which code, at each boundary ---------------------------------------------------------------------

CODE_CASES = [
    # early access and the public start
    pytest.param(dict(offer=EARLY, shopper=GOLD, now=GOLD_OPENS - SECOND), "coupon_not_started",
                 id="gold-1s-before-early-access-nobody-open-yet"),
    pytest.param(dict(offer=EARLY, shopper=GOLD, now=GOLD_OPENS), None, id="gold-at-early-access"),
    pytest.param(dict(offer=EARLY, shopper=SILVER, now=SILVER_OPENS - SECOND), "early_access_only",
                 id="silver-1s-before-its-early-access-gold-open"),
    pytest.param(dict(offer=EARLY, shopper=SILVER, now=SILVER_OPENS), None, id="silver-at-its-early-access"),
    pytest.param(dict(offer=EARLY, shopper=BRONZE, now=START - SECOND), "early_access_only",
                 id="bronze-1s-before-public-start"),
    pytest.param(dict(offer=EARLY, shopper=BRONZE, now=START), None, id="bronze-at-public-start"),
    pytest.param(dict(offer=EARLY, shopper=GUEST, now=START - SECOND), "early_access_only",
                 id="guest-1s-before-public-start"),
    pytest.param(dict(offer=EARLY, shopper=GUEST, now=START), None, id="guest-at-public-start"),
    pytest.param(dict(offer=EARLY, shopper=BRONZE, now=GOLD_OPENS - SECOND), "coupon_not_started",
                 id="bronze-before-anyone-opens"),
    pytest.param(dict(offer=replace(TEN_PERCENT, starts_at=START), now=START - SECOND), "coupon_not_started",
                 id="no-early-access-1s-before-start"),
    pytest.param(dict(offer=replace(TEN_PERCENT, starts_at=START), now=START), None, id="no-early-access-at-start"),
    # the end of the offer and of the code
    pytest.param(dict(offer=EARLY, now=END - SECOND), None, id="last-second-before-ends-at"),
    pytest.param(dict(offer=EARLY, now=END), "coupon_expired", id="at-ends-at"),
    pytest.param(dict(code=CodeState(expires_at=DURING + SECOND)), None, id="1s-before-code-expiry"),
    pytest.param(dict(code=CodeState(expires_at=DURING)), "coupon_expired", id="at-code-expiry"),
    # the code itself
    pytest.param(dict(code=CodeState(exists=False)), "coupon_invalid", id="unknown-code"),
    pytest.param(dict(code=CodeState(active=False)), "coupon_invalid", id="disabled-code"),
    pytest.param(dict(code=CodeState(assigned_member_id=99)), "coupon_invalid", id="code-of-another-member"),
    pytest.param(dict(code=CodeState(assigned_member_id=99), shopper=GUEST), "coupon_invalid",
                 id="assigned-code-used-by-a-guest"),
    pytest.param(dict(code=CodeState(assigned_member_id=BRONZE.member_id)), None, id="own-assigned-code"),
    # exclusive tier discounts
    pytest.param(dict(offer=replace(TEN_PERCENT, eligible_tiers=frozenset({"gold"})), shopper=SILVER),
                 "tier_required", id="silver-on-gold-only-offer"),
    pytest.param(dict(offer=replace(TEN_PERCENT, eligible_tiers=frozenset({"gold"})), shopper=GUEST),
                 "tier_required", id="guest-on-gold-only-offer"),
    pytest.param(dict(offer=replace(TEN_PERCENT, eligible_tiers=frozenset({"gold"})), shopper=GOLD), None,
                 id="gold-on-gold-only-offer"),
    pytest.param(dict(offer=replace(EARLY, eligible_tiers=frozenset({"gold"})), shopper=SILVER, now=SILVER_OPENS),
                 "tier_required", id="early-access-tier-outside-eligible-tiers-is-refused"),
    pytest.param(dict(offer=replace(EARLY, eligible_tiers=frozenset({"silver"})), shopper=BRONZE,
                      now=SILVER_OPENS - SECOND), "coupon_not_started",
                 id="ineligible-gold-early-access-does-not-make-it-early-access-only"),
    # usage limits
    pytest.param(dict(offer=replace(TEN_PERCENT, usage_limit_total=5), code=CodeState(uses_total=4)), None,
                 id="total-limit-minus-one"),
    pytest.param(dict(offer=replace(TEN_PERCENT, usage_limit_total=5), code=CodeState(uses_total=5)),
                 "usage_limit_reached", id="total-limit-reached"),
    pytest.param(dict(offer=replace(TEN_PERCENT, usage_limit_per_member=2), code=CodeState(uses_by_member=1)),
                 None, id="per-member-limit-minus-one"),
    pytest.param(dict(offer=replace(TEN_PERCENT, usage_limit_per_member=2), code=CodeState(uses_by_member=2)),
                 "usage_limit_reached", id="per-member-limit-reached"),
    # the cart: currency, scope, minimum
    pytest.param(dict(offer=replace(TEN_PERCENT, currency="usd"), cart=replace(CART, currency="eur")),
                 "coupon_not_applicable", id="currency-mismatch"),
    pytest.param(dict(offer=replace(TEN_PERCENT, currency="usd"), cart=replace(CART, currency="USD")), None,
                 id="currency-case-insensitive"),
    pytest.param(dict(cart=replace(CART, currency="eur")), None, id="percent-without-currency-any-cart"),
    pytest.param(dict(offer=replace(TEN_PERCENT, currency="usd", min_order_amount=5000), cart=lines(4999)),
                 "min_order_not_met", id="min-order-minus-one-unit"),
    pytest.param(dict(offer=replace(TEN_PERCENT, currency="usd", min_order_amount=5000), cart=lines(5000)), None,
                 id="min-order-exactly"),
    pytest.param(dict(offer=replace(TEN_PERCENT, currency="usd", min_order_amount=5000),
                      cart=Cart("usd", (CartLine("A", 2, 2550, discount_amount=101),))),
                 "min_order_not_met", id="min-order-counts-after-line-discounts"),
    pytest.param(dict(offer=replace(TEN_PERCENT, min_order_amount=5000), cart=lines(9000)), "coupon_not_applicable",
                 id="min-order-without-currency-fails-closed"),
    pytest.param(dict(offer=Offer("free_shipping"), cart=lines(1000, shipping=500)), None, id="free-shipping"),
    pytest.param(dict(offer=Offer("free_shipping"), cart=lines(1000)), "coupon_not_applicable",
                 id="free-shipping-without-shipping"),
    pytest.param(dict(cart=lines(0)), "coupon_not_applicable", id="nothing-left-to-pay"),
    # precedence: the first failing check names the reason
    pytest.param(dict(offer=EARLY, code=CodeState(active=False), now=END), "coupon_invalid",
                 id="invalid-before-expired"),
    pytest.param(dict(offer=replace(EARLY, eligible_tiers=frozenset({"gold"})), now=START - SECOND),
                 "early_access_only", id="not-open-before-tier-required"),
    pytest.param(dict(offer=replace(TEN_PERCENT, eligible_tiers=frozenset({"gold"}), usage_limit_total=1),
                      code=CodeState(uses_total=1)), "tier_required", id="tier-required-before-usage-limit"),
    pytest.param(dict(offer=replace(TEN_PERCENT, currency="usd", usage_limit_total=1), code=CodeState(uses_total=1),
                      cart=replace(CART, currency="eur")), "usage_limit_reached", id="usage-limit-before-cart"),
    pytest.param(dict(offer=replace(TEN_PERCENT, currency="usd", min_order_amount=5000),
                      cart=lines(100, currency="eur")), "coupon_not_applicable", id="currency-before-minimum"),
]


@pytest.mark.parametrize(("args", "expected"), CODE_CASES)
def test_codes_at_their_boundaries(args: dict[str, Any], expected: str | None) -> None:
    result = check(**args)
    assert (result.valid, result.code) == (expected is None, expected), result.detail
    if expected is not None:
        assert result.discount_amount == result.shipping_discount == 0
        assert result.line_discounts == (0,) * len(args.get("cart", CART).lines)
        assert result.detail


SCOPED = [
    # (offer scope, line, eligible?)
    pytest.param(dict(include_skus=frozenset({"A"})), CartLine("A", 1, 100), True, id="include-sku-match"),
    pytest.param(dict(include_skus=frozenset({"A"})), CartLine("B", 1, 100), False, id="include-sku-other"),
    pytest.param(dict(include_categories=frozenset({"shoes"})), CartLine("B", 1, 100, "shoes"), True,
                 id="include-category-match"),
    pytest.param(dict(include_categories=frozenset({"shoes"})), CartLine("B", 1, 100), False,
                 id="include-category-line-without-category"),
    pytest.param(dict(include_skus=frozenset({"A"}), include_categories=frozenset({"shoes"})),
                 CartLine("B", 1, 100, "shoes"), True, id="include-sku-or-category"),
    pytest.param(dict(exclude_skus=frozenset({"GIFT"})), CartLine("GIFT", 1, 100), False, id="exclude-sku"),
    pytest.param(dict(exclude_categories=frozenset({"gift-cards"})), CartLine("G", 1, 100, "gift-cards"), False,
                 id="exclude-category"),
    pytest.param(dict(exclude_categories=frozenset({"gift-cards"})), CartLine("T", 1, 100, "shirts"), True,
                 id="exclude-category-other"),
    pytest.param(dict(include_categories=frozenset({"shoes"}), exclude_skus=frozenset({"A"})),
                 CartLine("A", 1, 100, "shoes"), False, id="exclude-wins-over-include"),
]


@pytest.mark.parametrize(("scope", "line", "eligible"), SCOPED)
def test_scope_by_sku_and_category(scope: dict[str, frozenset[str]], line: CartLine, eligible: bool) -> None:
    result = check(offer=replace(TEN_PERCENT, **scope), cart=Cart("usd", (line,)))
    assert (result.valid, result.code) == ((True, None) if eligible else (False, "coupon_not_applicable"))
    assert result.line_discounts == ((10,) if eligible else (0,))


# --- amounts ------------------------------------------------------------------------------------------

AMOUNT_CASES = [
    # (offer, cart, line discounts, shipping discount)
    pytest.param(TEN_PERCENT, lines(333, 333, 333), (33, 33, 33), 0, id="three-lines-of-333-ten-percent"),
    pytest.param(TEN_PERCENT, lines(100, 200, 701), (10, 20, 70), 0, id="largest-remainders-get-the-units"),
    pytest.param(Offer("amount_off", amount=2, currency="usd"), lines(100, 100, 100), (1, 1, 0), 0,
                 id="tie-goes-to-the-earlier-line"),
    pytest.param(replace(TEN_PERCENT, percent=15), lines(1999, currency="jpy"), (299,), 0,
                 id="jpy-fifteen-percent-rounds-down"),
    pytest.param(Offer("amount_off", amount=500, currency="jpy"), lines(333, 333, 333, currency="jpy"),
                 (167, 167, 166), 0, id="jpy-amount-off-over-three-lines"),
    pytest.param(Offer("amount_off", amount=5000, currency="usd"), lines(700, 500), (700, 500), 0,
                 id="amount-off-larger-than-subtotal"),
    pytest.param(replace(TEN_PERCENT, percent=100), lines(1, 2, 3), (1, 2, 3), 0, id="hundred-percent"),
    pytest.param(replace(TEN_PERCENT, percent=33), lines(1, 1, 1, 1, 1, 1, 1), (1, 1, 0, 0, 0, 0, 0), 0,
                 id="one-unit-lines"),
    pytest.param(replace(TEN_PERCENT, exclude_skus=frozenset({"SKU-1"})), lines(1000, 5000, 1000), (100, 0, 100), 0,
                 id="excluded-line-gets-nothing"),
    pytest.param(TEN_PERCENT, Cart("usd", (CartLine("A", 3, 1000, discount_amount=500),)), (250,), 0,
                 id="after-line-discount"),
    pytest.param(Offer("free_shipping"), lines(1000, 2000, shipping=799), (0, 0), 799, id="free-shipping-amount"),
]


@pytest.mark.parametrize(("offer", "cart", "line_discounts", "shipping"), AMOUNT_CASES)
def test_discount_amounts(offer: Offer, cart: Cart, line_discounts: tuple[int, ...], shipping: int) -> None:
    result = check(offer=offer, cart=cart)
    assert result.valid, result.detail
    assert (result.line_discounts, result.shipping_discount) == (line_discounts, shipping)
    assert result.discount_amount == sum(line_discounts) + shipping


def test_many_awkward_lines_sum_exactly() -> None:
    amounts = (333, 777, 1001, 1, 9999, 250, 3)
    result = check(offer=replace(TEN_PERCENT, percent=7), cart=lines(*amounts))
    assert result.discount_amount == sum(amounts) * 7 // 100 == sum(result.line_discounts)
    assert all(0 <= d <= a for d, a in zip(result.line_discounts, amounts, strict=True))


# --- opening times and details ------------------------------------------------------------------------

OPENS_CASES = [
    pytest.param("gold", GOLD_OPENS, id="gold"),
    pytest.param("silver", SILVER_OPENS, id="silver"),
    pytest.param("bronze", START, id="bronze-no-early-access"),
    pytest.param(None, START, id="guest"),
]


@pytest.mark.parametrize(("tier", "opens"), OPENS_CASES)
def test_opens_at_for(tier: str | None, opens: datetime) -> None:
    assert opens_at_for(EARLY, tier) == opens


def test_opens_at_without_start_is_none() -> None:
    assert opens_at_for(TEN_PERCENT, "gold") is None


DETAIL_CASES = [
    pytest.param(GOLD, GOLD_OPENS - SECOND, GOLD_OPENS, "Opens for Gold members at 2026-11-26 09:00 UTC",
                 id="not-started-gold"),
    pytest.param(BRONZE, GOLD_OPENS - SECOND, START, "Opens at 2026-11-27 09:00 UTC", id="not-started-bronze"),
    pytest.param(BRONZE, START - SECOND, START,
                 "Open early to Gold and Silver members only; opens for you at 2026-11-27 09:00 UTC",
                 id="early-access-only-bronze"),
    pytest.param(SILVER, SILVER_OPENS - SECOND, SILVER_OPENS,
                 "Open early to Gold members only; opens for you at 2026-11-26 21:00 UTC",
                 id="early-access-only-silver"),
]


@pytest.mark.parametrize(("shopper", "now", "opens", "detail"), DETAIL_CASES)
def test_not_yet_open_says_when(shopper: Shopper, now: datetime, opens: datetime, detail: str) -> None:
    result = check(offer=EARLY, shopper=shopper, now=now)
    assert (result.opens_at, result.detail) == (opens, detail)


def test_other_refusals_and_valid_results_carry_no_opening() -> None:
    assert check(offer=EARLY, now=END).opens_at is None
    assert check(offer=EARLY, now=START).opens_at is None


def test_min_order_detail_names_the_shortfall() -> None:
    result = check(offer=replace(TEN_PERCENT, currency="usd", min_order_amount=5000), cart=lines(4999))
    assert result.detail == "Spend at least USD 50.00 on eligible items; USD 0.01 to go"


@pytest.mark.parametrize("kwargs", [
    pytest.param(dict(kind="bogo"), id="unknown-kind"),
    pytest.param(dict(kind="percent_off"), id="percent-missing"),
    pytest.param(dict(kind="percent_off", percent=0), id="percent-zero"),
    pytest.param(dict(kind="percent_off", percent=101), id="percent-over-100"),
    pytest.param(dict(kind="amount_off", amount=100), id="amount-without-currency"),
    pytest.param(dict(kind="amount_off", amount=0, currency="usd"), id="amount-zero"),
])
def test_impossible_offers_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        Offer(**kwargs)


# --- properties ---------------------------------------------------------------------------------------

SKUS = st.sampled_from(["A", "B", "C", "D"])
CATEGORIES = st.sampled_from(["shoes", "shirts", "gifts"])
NAMES = st.frozensets(SKUS, max_size=2)
CATEGORY_SETS = st.frozensets(CATEGORIES, max_size=2)

cart_lines = st.builds(
    CartLine, sku=SKUS, quantity=st.integers(0, 20), unit_amount=st.integers(0, 10**7),
    category=st.none() | CATEGORIES, discount_amount=st.integers(0, 10**6),
)
carts = st.builds(Cart, currency=st.just("usd"), lines=st.lists(cart_lines, max_size=12).map(tuple),
                  shipping_amount=st.integers(0, 10**5))
kinds = st.one_of(
    st.builds(Offer, kind=st.just("percent_off"), percent=st.integers(1, 100)),
    st.builds(Offer, kind=st.just("amount_off"), amount=st.integers(1, 10**9), currency=st.just("usd")),
    st.builds(Offer, kind=st.just("free_shipping")),
)
offers = st.builds(
    lambda offer, scope, minimum: replace(offer, **scope, currency="usd", min_order_amount=minimum),
    kinds,
    st.fixed_dictionaries({}, optional={"include_skus": NAMES, "include_categories": CATEGORY_SETS,
                                        "exclude_skus": NAMES, "exclude_categories": CATEGORY_SETS}),
    st.integers(0, 10**5),
)


def _net(line: CartLine) -> int:
    return max(0, line.quantity * line.unit_amount - line.discount_amount)


def _in_scope(offer: Offer, line: CartLine) -> bool:
    """An independent statement of the scope rule, to check the engine against."""
    def hit(skus: frozenset[str], categories: frozenset[str]) -> bool:
        return line.sku in skus or line.category in categories

    included = hit(offer.include_skus, offer.include_categories) or not (offer.include_skus or offer.include_categories)
    return included and not hit(offer.exclude_skus, offer.exclude_categories)


@given(offers, carts)
def test_discounts_add_up_and_stay_within_their_lines(offer: Offer, cart: Cart) -> None:
    result = check(offer=offer, cart=cart)
    assert len(result.line_discounts) == len(cart.lines)
    assert sum(result.line_discounts) + result.shipping_discount == result.discount_amount
    assert all(0 <= d <= _net(line) for d, line in zip(result.line_discounts, cart.lines, strict=True))
    assert 0 <= result.shipping_discount <= cart.shipping_amount
    scoped = [_in_scope(offer, line) for line in cart.lines]
    assert all(d == 0 for d, ok in zip(result.line_discounts, scoped, strict=True) if not ok)
    eligible = sum(_net(line) for line, ok in zip(cart.lines, scoped, strict=True) if ok)
    shipping = cart.shipping_amount if offer.kind == "free_shipping" else 0
    assert result.discount_amount <= eligible + shipping
    if not result.valid:
        assert result.discount_amount == 0
    assert check(offer=offer, cart=cart) == result  # deterministic


@given(st.builds(Offer, kind=st.just("percent_off"), percent=st.integers(1, 100)),
       st.lists(st.integers(0, 10**7), min_size=1, max_size=12))
def test_percent_total_is_rounded_down_once_and_shares_are_within_one_unit(offer: Offer, amounts: list[int]
                                                                        ) -> None:
    result = check(offer=offer, cart=lines(*amounts))
    subtotal = sum(amounts)
    if not subtotal:
        assert result.code == "coupon_not_applicable"
        return
    assert result.discount_amount == subtotal * offer.percent // 100
    for discount, amount in zip(result.line_discounts, amounts, strict=True):
        exact = result.discount_amount * amount  # the exact share times subtotal, in integers
        assert abs(discount * subtotal - exact) < subtotal


@given(st.dictionaries(st.sampled_from(["gold", "silver", "bronze"]), st.integers(0, 72), max_size=3),
       st.sampled_from(["gold", "silver", "bronze", None]), st.integers(-80 * 3600, 3600))
def test_timing_agrees_with_opens_at_for(early: dict[str, int], tier: str | None, offset: int) -> None:
    offer = replace(TEN_PERCENT, starts_at=START, early_access=early)
    now = START + timedelta(seconds=offset)
    result = check(offer=offer, shopper=Shopper(1, tier), now=now)
    opens = opens_at_for(offer, tier)
    assert opens is not None
    assert result.valid == (now >= opens)
    if not result.valid:
        assert result.code in ("coupon_not_started", "early_access_only")
        assert result.opens_at == opens
