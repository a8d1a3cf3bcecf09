"""Checkout over HTTP: quotes, redemptions (hold, capture, cancel, expiry), paid orders and refunds."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from loyalty.checkout import service as checkout
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.jobs import service as jobs
from loyalty.ledger import service as ledger
from loyalty.ledger.models import JournalTransaction
from loyalty.ledger.service import Balances
from loyalty.ledger.verify import verify
from loyalty.members import service as members
from loyalty.offers import service as offers
from loyalty.offers.models import CouponUse
from loyalty.orders.models import Order, Refund
from loyalty.tiers import service as tiers
from tests.conftest import assert_problem, bearer, change_settings, publish_rules, unique_email

# One point per dollar, pending for 14 days; a point pays one cent, points pay at most half an order.
RULES = {"earn": {"rates": {"usd": "1"}, "pending_days": 14},
         "redeem": {"point_values": {"usd": "1"}, "max_share_percent": 50}}
LINES = [{"sku": "TEE-1", "category": "apparel", "quantity": 2, "unit_amount": 2500}]  # $50.00


@pytest.fixture(autouse=True)
def program(app):
    with app.app_context():
        publish_rules(RULES, at=now() - timedelta(seconds=1))


@pytest.fixture
def shop(client, make_api_key):
    """The shop's server: a client with a `checkout` key; `shop.post(path, body, key=...)`."""
    headers = bearer(make_api_key("checkout"))

    class Shop:
        def post(self, path: str, body: dict | None = None, key: str | None = None):
            return client.post(path, json=body or {}, headers={**headers, **({"Idempotency-Key": key} if key else {})})

        def get(self, path: str):
            return client.get(path, headers=headers)

        def redeem(self, member_id: str, **fields):
            body = {"member_id": member_id, "order_id": unique_email("ord"), "currency": "usd", "amount": 5000,
                    **fields}
            return self.post("/v1/redemptions", body, key=unique_email("key"))

    return Shop()


@pytest.fixture
def member_with(make_member, in_app):
    """A member holding `points` available points; answers the member's public id."""

    def make(points: int = 0) -> str:
        member = make_member()
        if points:
            with in_app():
                ledger.adjust(_internal(member["id"]), points, reason="Seed",
                              reference=f"seed:{member['id']}", now=now())
                db.session.commit()
        return member["id"]

    return make


@pytest.fixture
def balances(in_app):
    def read(member_id: str) -> Balances:
        with in_app():
            return ledger.balances(_internal(member_id))

    return read


@pytest.fixture
def travel(stop_clock):
    """Move the clock forward by a timedelta."""
    return stop_clock(datetime.now(UTC)).travel


@pytest.fixture
def coupon(in_app):
    """A public code of a new offer; answers the code."""

    def make(**fields) -> str:
        code = unique_email("C").split("@")[0].upper()
        with in_app():
            offers.create_offer({"name": "Ten percent", "kind": "percent_off", "percent": 10, "code": code, **fields})
            db.session.commit()
        return code

    return make


def _internal(member_id: str) -> int:
    return members.get_member(member_id).id


def _no_breaches(in_app) -> None:
    with in_app():
        assert [r.name for r in verify(db.session) if not r.ok] == []


# --- quote ---------------------------------------------------------------------------------------------

def test_a_quote_tells_what_an_order_earns_and_how_many_points_may_pay(shop, member_with, row_counts):
    member = member_with(1000)
    before = row_counts()
    response = shop.post("/v1/checkout/quote", {"member_id": member, "currency": "usd", "lines": LINES})
    assert response.status_code == 200, response.get_data(as_text=True)
    quote = response.get_json()
    assert quote["earn"]["points"] == 50
    assert quote["earn"]["breakdown"][0]["rule"] == "base"
    assert quote["earn"]["pending_until"] is not None
    assert quote["redeem"]["max_points"] == 1000
    assert quote["redeem"]["value_per_point"] == "1"
    assert quote["redeem"]["max_discount_amount"] == 1000
    assert quote["coupon"] is None and quote["tier_discount"] is None
    assert quote["total_amount"] == 5000
    assert row_counts() == before


def test_points_may_pay_at_most_the_share_the_rules_allow(shop, member_with):
    quote = shop.post("/v1/checkout/quote", {"member_id": member_with(9000), "currency": "usd",
                                             "lines": LINES}).get_json()
    assert quote["redeem"]["max_points"] == 2500  # half of $50.00, at a cent a point


def test_points_asked_for_in_a_quote_are_valued_and_do_not_earn(shop, member_with):
    quote = shop.post("/v1/checkout/quote", {"member_id": member_with(1000), "currency": "usd", "lines": LINES,
                                             "points": 1000}).get_json()
    assert quote["redeem"]["discount_amount"] == 1000 and quote["redeem"]["error"] is None
    assert quote["earn"]["points"] == 40  # earns on the $40.00 paid
    assert quote["total_amount"] == 4000


def test_a_quote_names_why_points_asked_for_may_not_pay(shop, member_with):
    quote = shop.post("/v1/checkout/quote", {"member_id": member_with(100), "currency": "usd", "lines": LINES,
                                             "points": 500}).get_json()
    assert quote["redeem"]["error"] == "The member has 100 points available."
    assert quote["redeem"]["discount_amount"] == 0
    assert quote["total_amount"] == 5000


def test_a_quote_applies_a_coupon_before_points(shop, member_with, coupon):
    code = coupon()
    quote = shop.post("/v1/checkout/quote", {"member_id": member_with(0), "currency": "usd", "lines": LINES,
                                             "coupon_code": code.lower()}).get_json()
    assert quote["coupon"] == {"code": code, "valid": True, "code_error": None, "discount_amount": 500,
                               "detail": quote["coupon"]["detail"], "opens_at": None}
    assert quote["earn"]["points"] == 45
    assert quote["total_amount"] == 4500


def test_a_quote_names_why_a_coupon_does_not_apply(shop, member_with):
    quote = shop.post("/v1/checkout/quote", {"member_id": member_with(0), "currency": "usd", "lines": LINES,
                                             "coupon_code": "NOSUCHCODE"}).get_json()
    assert quote["coupon"]["valid"] is False
    assert quote["coupon"]["code_error"] == "coupon_invalid"
    assert quote["coupon"]["discount_amount"] == 0


def test_a_quote_includes_the_tier_discount(shop, member_with, in_app):
    with in_app():
        tiers.create_tier({"code": "gold", "name": "Gold", "rank": 0, "threshold": 0, "basis": "points",
                           "window_days": 365, "discount_percent": 5})
        db.session.commit()
    member = member_with(0)
    quote = shop.post("/v1/checkout/quote", {"member_id": member, "currency": "usd", "lines": LINES}).get_json()
    assert quote["tier_discount"] == {"percent": 5, "amount": 250}
    assert quote["total_amount"] == 4750


def test_a_quote_for_an_unknown_member_is_refused(shop):
    body = assert_problem(shop.post("/v1/checkout/quote", {"member_id": "mem_nobody", "currency": "usd",
                                                           "lines": LINES}), 422, "validation_error")
    assert body["errors"] == {"member_id": ["No member has this id."]}


# --- redemptions ---------------------------------------------------------------------------------------

def test_a_redemption_holds_points_until_it_expires(shop, member_with, balances):
    member = member_with(1000)
    response = shop.redeem(member, points=800)
    assert response.status_code == 201, response.get_data(as_text=True)
    redemption = response.get_json()
    assert redemption["status"] == "held"
    assert redemption["member_id"] == member
    assert (redemption["points"], redemption["points_discount_amount"], redemption["discount_amount"]) == \
        (800, 800, 800)
    assert balances(member) == Balances(available=200, pending=0, held=800, lifetime_earned=0)


def test_capture_redeems_the_held_points_and_is_idempotent(shop, member_with, balances):
    member = member_with(1000)
    redemption_id = shop.redeem(member, points=800).get_json()["id"]
    first = shop.post(f"/v1/redemptions/{redemption_id}/capture")
    again = shop.post(f"/v1/redemptions/{redemption_id}/capture")
    assert first.status_code == again.status_code == 200
    assert first.get_json() == again.get_json()
    assert first.get_json()["status"] == "captured"
    assert balances(member) == Balances(available=200, pending=0, held=0, lifetime_earned=0)


def test_cancel_gives_the_points_back_and_is_idempotent(shop, member_with, balances):
    member = member_with(1000)
    redemption_id = shop.redeem(member, points=800).get_json()["id"]
    first = shop.post(f"/v1/redemptions/{redemption_id}/cancel")
    again = shop.post(f"/v1/redemptions/{redemption_id}/cancel")
    assert first.get_json()["status"] == again.get_json()["status"] == "released"
    assert first.get_json()["release_reason"] == "canceled"
    assert balances(member) == Balances(available=1000, pending=0, held=0, lifetime_earned=0)


def test_a_captured_redemption_cannot_be_canceled(shop, member_with):
    redemption_id = shop.redeem(member_with(1000), points=800).get_json()["id"]
    shop.post(f"/v1/redemptions/{redemption_id}/capture")
    assert_problem(shop.post(f"/v1/redemptions/{redemption_id}/cancel"), 409, "redemption_not_held")


def test_a_released_redemption_cannot_be_captured(shop, member_with):
    redemption_id = shop.redeem(member_with(1000), points=800).get_json()["id"]
    shop.post(f"/v1/redemptions/{redemption_id}/cancel")
    assert_problem(shop.post(f"/v1/redemptions/{redemption_id}/capture"), 409, "redemption_not_held")


def test_capture_after_the_hold_expired_answers_hold_expired(shop, member_with, balances, travel):
    member = member_with(1000)
    redemption_id = shop.redeem(member, points=800).get_json()["id"]
    travel(timedelta(minutes=31))
    assert_problem(shop.post(f"/v1/redemptions/{redemption_id}/capture"), 409, "hold_expired")
    assert balances(member).held == 800  # nothing was captured; whoever looks next releases it
    redemption = shop.get(f"/v1/redemptions/{redemption_id}").get_json()
    assert (redemption["status"], redemption["release_reason"]) == ("released", "expired")
    assert balances(member) == Balances(available=1000, pending=0, held=0, lifetime_earned=0)


def test_the_hold_time_is_configurable(shop, member_with, app, monkeypatch):
    change_settings(monkeypatch, app, REDEMPTION_HOLD_MINUTES=5)
    redemption = shop.redeem(member_with(1000), points=100).get_json()
    assert redemption["expires_at"] > redemption["created_at"]
    with app.app_context():
        row = checkout.get_redemption(redemption["id"])
        assert row.expires_at - row.created_at == timedelta(minutes=5)


def test_the_expired_holds_job_releases_them(shop, member_with, balances, in_app):
    member = member_with(1000)
    shop.redeem(member, points=300)
    shop.redeem(member, points=300)
    with in_app():
        assert jobs.release_expired_holds(now() + timedelta(minutes=31)) == {"released": 2}
        assert jobs.release_expired_holds(now() + timedelta(minutes=31)) == {"released": 0}
    assert balances(member).available == 1000


def test_more_points_than_available_answers_insufficient_points(shop, member_with, row_counts):
    member = member_with(100)
    before = row_counts()
    assert_problem(shop.redeem(member, points=101), 409, "insufficient_points")
    assert row_counts() == before


def test_more_points_than_the_rules_allow_for_the_order_are_refused(shop, member_with):
    body = assert_problem(shop.redeem(member_with(5000), points=2501), 422, "validation_error")
    assert body["errors"] == {"points": ["At most 2500 points may pay for this order."]}


def test_fewer_points_than_the_minimum_are_refused_naming_the_points_asked(shop, member_with, app):
    with app.app_context():
        publish_rules({**RULES, "redeem": {**RULES["redeem"], "min_points": 500}})
    member = member_with(1200)
    refusal = "At least 500 points must be redeemed; 450 were asked."
    quote = shop.post("/v1/checkout/quote", {"member_id": member, "currency": "usd", "lines": LINES,
                                             "points": 450}).get_json()
    assert (quote["redeem"]["error"], quote["redeem"]["available_points"]) == (refusal, 1200)
    body = assert_problem(shop.redeem(member, points=450), 422, "validation_error")
    assert body["errors"] == {"points": [refusal]}


def test_a_redemption_needs_points_or_a_coupon(shop, member_with):
    body = assert_problem(shop.redeem(member_with(100)), 422, "validation_error")
    assert "points" in body["errors"]


def test_a_suspended_member_cannot_hold_points(shop, member_with, in_app):
    member = member_with(1000)
    with in_app():
        members.set_status(members.get_member(member), "suspended")
        db.session.commit()
    assert_problem(shop.redeem(member, points=100), 409, "member_suspended")


def test_a_coupon_use_is_reserved_then_consumed_on_capture(shop, member_with, coupon, in_app):
    redemption = shop.redeem(member_with(0), coupon_code=coupon()).get_json()
    assert (redemption["coupon_discount_amount"], redemption["discount_amount"]) == (500, 500)
    with in_app():
        use = db.session.scalar(select(CouponUse).where(CouponUse.reference == f"redemption:{redemption['id']}"))
        assert use.status == "reserved"
    shop.post(f"/v1/redemptions/{redemption['id']}/capture")
    with in_app():
        assert db.session.get(CouponUse, use.id).status == "consumed"


def test_canceling_gives_the_last_coupon_use_to_the_next_shopper(shop, member_with, coupon):
    code = coupon(usage_limit_total=1)
    first = shop.redeem(member_with(0), coupon_code=code).get_json()
    assert_problem(shop.redeem(member_with(0), coupon_code=code), 422, "usage_limit_reached")
    shop.post(f"/v1/redemptions/{first['id']}/cancel")
    assert shop.redeem(member_with(0), coupon_code=code).status_code == 201


def test_a_coupon_that_does_not_apply_holds_no_points_either(shop, member_with, balances, row_counts):
    member = member_with(1000)
    before = row_counts()
    assert_problem(shop.redeem(member, points=100, coupon_code="NOSUCHCODE"), 422, "coupon_invalid")
    assert row_counts() == before
    assert balances(member).held == 0


def test_the_same_idempotency_key_holds_once(shop, member_with, balances):
    member = member_with(1000)
    body = {"member_id": member, "order_id": "ord-1", "currency": "usd", "amount": 5000, "points": 300}
    first = shop.post("/v1/redemptions", body, key="checkout-ord-1")
    again = shop.post("/v1/redemptions", body, key="checkout-ord-1")
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert balances(member).held == 300


def test_an_unknown_redemption_is_not_found(shop):
    assert_problem(shop.get("/v1/redemptions/red_nothing"), 404, "not_found")
    assert_problem(shop.post("/v1/redemptions/red_nothing/capture"), 404, "not_found")


# --- paid orders ---------------------------------------------------------------------------------------

def _order(member: str, order_id: str, total: int, **fields) -> dict:
    return {"order_id": order_id, "member_id": member, "currency": "usd", "lines": LINES, "total_amount": total,
            **fields}


def test_an_order_paid_with_a_redemption_captures_it_and_earns_on_what_was_paid(shop, member_with, balances):
    member = member_with(1000)
    redemption = shop.redeem(member, points=1000, order_id="ord-paid").get_json()
    response = shop.post("/v1/orders", _order(member, "ord-paid", 4000, redemption_id=redemption["id"]))
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["points_earned"] == 40
    assert shop.get(f"/v1/redemptions/{redemption['id']}").get_json()["status"] == "captured"
    assert balances(member) == Balances(available=0, pending=40, held=0, lifetime_earned=40)


def test_an_order_cannot_use_another_orders_redemption(shop, member_with):
    member = member_with(1000)
    redemption = shop.redeem(member, points=100, order_id="ord-a").get_json()
    body = assert_problem(shop.post("/v1/orders", _order(member, "ord-b", 4900, redemption_id=redemption["id"])),
                          422, "validation_error")
    assert body["errors"] == {"redemption_id": ["This redemption is for order ord-a."]}


def test_a_store_order_earns_like_a_web_order(shop, member_with):
    member = member_with()
    web = shop.post("/v1/orders", _order(member, "ord-web", 5000)).get_json()
    store = shop.post("/v1/orders", _order(member, "ord-store", 5000, channel="store")).get_json()
    assert (web["channel"], store["channel"]) == ("web", "store")
    assert web["points_earned"] == store["points_earned"] == 50


# --- refunds -------------------------------------------------------------------------------------------

def test_partial_refunds_claw_back_in_proportion_and_add_up_to_the_whole(shop, member_with, balances, in_app):
    member = member_with()
    shop.post("/v1/orders", _order(member, "ord-r", 10000, lines=[{"sku": "A", "quantity": 1,
                                                                    "unit_amount": 10000}]))
    assert balances(member).pending == 100
    clawed = [shop.post("/v1/orders/ord-r/refunds", {"refund_id": f"re_{i}", "amount": amount}).get_json()
              for i, amount in enumerate((3333, 3333, 3334))]
    assert [r["points_clawed_back"] for r in clawed] == [33, 33, 34]  # floor(33.33), floor(66.66) - 33, the rest
    assert [r["order_status"] for r in clawed] == ["partially_refunded", "partially_refunded", "refunded"]
    assert balances(member).pending == 0
    _no_breaches(in_app)


def test_a_refund_past_the_order_total_is_refused(shop, member_with, row_counts):
    member = member_with()
    shop.post("/v1/orders", _order(member, "ord-x", 5000))
    shop.post("/v1/orders/ord-x/refunds", {"refund_id": "re_1", "amount": 4000})
    before = row_counts()
    body = assert_problem(shop.post("/v1/orders/ord-x/refunds", {"refund_id": "re_2", "amount": 1001}),
                          409, "refund_exceeds_order")
    assert body["errors"] == {"amount": ["At most 1000."]}
    assert row_counts() == before


def test_the_same_refund_id_refunds_once(shop, member_with, balances):
    member = member_with()
    shop.post("/v1/orders", _order(member, "ord-y", 5000))
    first = shop.post("/v1/orders/ord-y/refunds", {"refund_id": "re_1", "amount": 2500})
    again = shop.post("/v1/orders/ord-y/refunds", {"refund_id": "re_1", "amount": 2500})
    assert first.status_code == again.status_code == 201
    assert first.get_json() == again.get_json()
    assert balances(member).pending == 25
    assert_problem(shop.post("/v1/orders/ord-y/refunds", {"refund_id": "re_1", "amount": 100}), 409,
                   "refund_conflict")


def test_a_refund_restores_redeemed_points_in_proportion(shop, member_with, balances, in_app):
    member = member_with(1000)
    redemption = shop.redeem(member, points=1000, order_id="ord-z").get_json()
    shop.post("/v1/orders", _order(member, "ord-z", 4000, redemption_id=redemption["id"]))
    half = shop.post("/v1/orders/ord-z/refunds", {"refund_id": "re_1", "amount": 2000}).get_json()
    assert (half["points_clawed_back"], half["points_restored"]) == (20, 500)
    assert balances(member) == Balances(available=500, pending=20, held=0, lifetime_earned=20)
    rest = shop.post("/v1/orders/ord-z/refunds", {"refund_id": "re_2", "amount": 2000}).get_json()
    assert (rest["points_clawed_back"], rest["points_restored"]) == (20, 500)
    assert balances(member) == Balances(available=1000, pending=0, held=0, lifetime_earned=0)
    _no_breaches(in_app)


def test_points_already_spent_are_recorded_as_shortfall_never_below_zero(shop, member_with, balances, in_app,
                                                                         travel):
    member = member_with()
    shop.post("/v1/orders", _order(member, "ord-s", 5000))
    travel(timedelta(days=15))  # the return window ends: the 50 points are available, and spent
    spent = shop.redeem(member, points=50).get_json()
    shop.post(f"/v1/redemptions/{spent['id']}/capture")
    refund = shop.post("/v1/orders/ord-s/refunds", {"refund_id": "re_1", "amount": 5000}).get_json()
    assert (refund["points_clawed_back"], refund["shortfall"]) == (50, 50)
    assert balances(member) == Balances(available=0, pending=0, held=0, lifetime_earned=50)
    _no_breaches(in_app)


def test_a_refund_of_an_unknown_order_is_not_found(shop):
    assert_problem(shop.post("/v1/orders/nope/refunds", {"refund_id": "re_1", "amount": 1}), 404, "not_found")


def test_refunds_are_recorded_with_the_order(shop, member_with, in_app):
    member = member_with()
    shop.post("/v1/orders", _order(member, "ord-rec", 5000))
    shop.post("/v1/orders/ord-rec/refunds", {"refund_id": "re_1", "amount": 1000, "reason": "damaged"})
    with in_app():
        order = db.session.scalar(select(Order).where(Order.order_id == "ord-rec"))
        [refund] = db.session.scalars(select(Refund).where(Refund.order_id == order.id))
        assert (order.status, order.refunded_amount, order.points_clawed_back) == ("partially_refunded", 1000, 10)
        assert (refund.amount, refund.reason, refund.source) == (1000, "damaged", "api")


# --- what combines with what ---------------------------------------------------------------------------

def _gold_member(in_app, member_with) -> str:
    with in_app():
        tiers.create_tier({"code": "gold", "name": "Gold", "rank": 0, "threshold": 0, "basis": "points",
                           "window_days": 365, "discount_percent": 5})
        db.session.commit()
    return member_with(1000)


def test_a_coupon_replaces_the_tier_discount_unless_its_offer_combines_with_it(shop, member_with, coupon, in_app):
    member = _gold_member(in_app, member_with)
    alone = shop.post("/v1/checkout/quote", {"member_id": member, "currency": "usd", "lines": LINES,
                                             "coupon_code": coupon()}).get_json()
    assert alone["tier_discount"] is None and alone["total_amount"] == 4500
    both = shop.post("/v1/checkout/quote", {"member_id": member, "currency": "usd", "lines": LINES,
                                            "coupon_code": coupon(combines_with_tier_discount=True)}).get_json()
    assert both["tier_discount"] == {"percent": 5, "amount": 225}  # 5% of the $45.00 the coupon leaves
    assert both["total_amount"] == 4275


def test_points_do_not_pay_beside_a_coupon_that_says_so(shop, member_with, coupon, row_counts):
    member, code = member_with(1000), coupon(combines_with_points=False)
    quote = shop.post("/v1/checkout/quote", {"member_id": member, "currency": "usd", "lines": LINES,
                                             "coupon_code": code, "points": 100}).get_json()
    assert quote["redeem"]["max_points"] == 0
    assert quote["redeem"]["error"] == quote["redeem"]["reason"] == f"Coupon {code} does not combine with points."
    before = row_counts()
    body = assert_problem(shop.redeem(member, points=100, coupon_code=code), 422, "validation_error")
    assert body["errors"] == {"points": [f"Coupon {code} does not combine with points."]}
    assert row_counts() == before


# --- races (PostgreSQL) --------------------------------------------------------------------------------

def two_orders_paid_at_once(app, member_id: str) -> list[int]:
    """Two orders of 50.00 of the member recorded at once, each in a transaction of its own; answers the points
    each earned."""
    barrier = threading.Barrier(2)

    def pay(n: int) -> int:
        with app.app_context():
            barrier.wait()
            result = checkout.record_paid_order(_order(member_id, f"ord-race-{n}", 5000), now=now())
            db.session.commit()
            return result.order.points_earned

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(pay, range(2)))


def test_two_first_orders_of_a_member_at_once_pay_the_first_order_bonus_once(pg):
    with pg.app_context():
        publish_rules({"earn": {"rates": {"usd": "1"}, "first_order_points": 100}}, at=now() - timedelta(seconds=1))
        member_id = members.enrol(members.NewMember(email=unique_email("first")), source="test").public_id
        db.session.commit()

    assert sorted(two_orders_paid_at_once(pg, member_id)) == [50, 150]


def test_two_first_orders_of_a_referred_member_at_once_both_earn_and_the_referral_is_paid_once(pg):
    document = {"earn": {"rates": {"usd": "1"}}, "expiry": {"policy": "rolling", "months": 12},
                "events": {"referral": {"referrer_points": 100, "referred_points": 50}}}
    with pg.app_context():
        publish_rules(document, at=now() - timedelta(seconds=1))
        referrer = members.enrol(members.NewMember(email=unique_email("referrer")), source="test")
        referred = members.enrol(members.NewMember(email=unique_email("referred"),
                                                   referral_code=referrer.referral_code), source="test")
        db.session.commit()
        referred_id = referred.public_id

    assert two_orders_paid_at_once(pg, referred_id) == [50, 50]
    with pg.app_context():
        paid = db.session.scalars(select(JournalTransaction.reference)
                                  .where(JournalTransaction.reference.like("referral:%"))).all()
        assert sorted(paid) == [f"referral:{referred_id}:referred", f"referral:{referred_id}:referrer"]
