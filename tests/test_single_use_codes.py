"""Single-use codes: a unique code (generated, assigned to a member, or issued by a reward claim) pays for the
offer's `uses_per_code` orders, one unless it says otherwise. A hold reserves the use, a release or an expired
hold gives it back, a capture consumes it, and a refund does not give it back."""

import csv
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from loyalty.auth import service as auth
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.jobs import service as jobs
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.members.models import Member
from loyalty.offers import rewards
from loyalty.offers import service as offers
from loyalty.offers.models import CouponUse, Offer, OfferCode
from tests.conftest import PASSWORD, assert_problem, bearer, publish_rules, submit, unique_email

RULES = {"earn": {"rates": {"usd": "1"}}, "redeem": {"point_values": {"usd": "1"}, "max_share_percent": 50}}
LINES = [{"sku": "TEE-1", "quantity": 2, "unit_amount": 2500}]  # $50.00
TEN_OFF = {"name": "Ten percent", "kind": "percent_off", "percent": 10}
T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def program(app):
    with app.app_context():
        publish_rules(RULES, at=datetime(2026, 1, 1, tzinfo=UTC))


@pytest.fixture
def manager(staff_client):
    return staff_client("manager")


@pytest.fixture
def shop(client, make_api_key):
    """The shop's server with a `checkout` key."""
    headers = bearer(make_api_key("checkout"))

    class Shop:
        def post(self, path: str, body: dict | None = None):
            return client.post(path, json=body or {}, headers={**headers, "Idempotency-Key": unique_email("key")})

        def get(self, path: str):
            return client.get(path, headers=headers)

        def hold(self, member_id: str, code: str, order_id: str | None = None):
            return self.post("/v1/redemptions", {"member_id": member_id, "order_id": order_id or unique_email("ord"),
                                                 "currency": "usd", "amount": 5000, "coupon_code": code})

        def pay(self, member_id: str, code: str, order_id: str | None = None) -> str:
            """Hold the code for an order and capture it; answers the redemption's id."""
            held = self.hold(member_id, code, order_id)
            assert held.status_code == 201, held.get_data(as_text=True)
            captured = self.post(f"/v1/redemptions/{held.get_json()['id']}/capture")
            assert captured.get_json()["status"] == "captured"
            return held.get_json()["id"]

        def quote(self, member_id: str, code: str) -> dict:
            return self.post("/v1/checkout/quote", {"member_id": member_id, "currency": "usd", "lines": LINES,
                                                    "coupon_code": code}).get_json()["coupon"]

    return Shop()


@pytest.fixture
def unique_code(manager, in_app):
    """A new offer's unique code (assigned to `owner` when given); answers the code."""

    def make(owner: str | None = None, **fields) -> str:
        offer_id = manager.post("/v1/admin/offers", json={**TEN_OFF, **fields}).get_json()["id"]
        body = {"member_ids": [owner]} if owner else {"count": 1}
        assert manager.post(f"/v1/admin/offers/{offer_id}/codes", json=body).status_code == 201
        return manager.get(f"/v1/admin/offers/{offer_id}/codes").get_json()["data"][0]["code"]

    return make


def uses_of(in_app, code: str) -> tuple[int, list[tuple[str, str | None]]]:
    """The code's counter, and its uses as (status, order id), oldest first."""
    with in_app():
        entry = offers.find_code(code)
        return entry.uses, [(use.status, use.order_id) for use in db.session.scalars(
            select(CouponUse).where(CouponUse.code_id == entry.id).order_by(CouponUse.id))]


# --- one order per code ------------------------------------------------------------------------------------

def test_a_generated_code_pays_for_one_captured_order_and_the_second_is_refused(shop, make_member, unique_code,
                                                                                in_app):
    member, code = make_member()["id"], unique_code()
    shop.pay(member, code, "ord-1")
    body = assert_problem(shop.hold(member, code, "ord-2"), 422, "usage_limit_reached")
    assert body["detail"] == "This code has been used"
    assert (shop.quote(member, code)["valid"], shop.quote(member, code)["code_error"]) == (False, "usage_limit_reached")
    assert uses_of(in_app, code) == (1, [("consumed", "ord-1")])


def test_a_used_code_is_refused_to_another_member_too(shop, make_member, unique_code):
    code = unique_code()
    shop.pay(make_member()["id"], code)
    assert_problem(shop.hold(make_member()["id"], code), 422, "usage_limit_reached")


def test_a_code_assigned_to_a_member_pays_for_one_order(shop, make_member, unique_code):
    member = make_member()["id"]
    code = unique_code(owner=member)
    shop.pay(member, code)
    assert_problem(shop.hold(member, code), 422, "usage_limit_reached")


def test_a_held_code_cannot_be_held_for_a_second_order(shop, make_member, unique_code):
    member, code = make_member()["id"], unique_code()
    assert shop.hold(member, code).status_code == 201
    assert_problem(shop.hold(member, code), 422, "usage_limit_reached")


def test_canceling_the_hold_gives_the_code_back(shop, make_member, unique_code, in_app):
    member, code = make_member()["id"], unique_code()
    first = shop.hold(member, code, "ord-gone").get_json()
    assert shop.post(f"/v1/redemptions/{first['id']}/cancel").get_json()["status"] == "released"
    shop.pay(member, code, "ord-paid")
    assert uses_of(in_app, code) == (1, [("released", "ord-gone"), ("consumed", "ord-paid")])


def test_an_expired_hold_gives_the_code_back_and_cannot_be_captured(shop, make_member, unique_code, in_app,
                                                                    stop_clock):
    clock = stop_clock(T0)
    member, code = make_member()["id"], unique_code()
    lapsed = shop.hold(member, code, "ord-slow").get_json()
    clock.travel(timedelta(minutes=31))  # holds last 30 minutes
    assert shop.quote(member, code)["valid"] is True
    shop.pay(member, code, "ord-next")
    assert_problem(shop.post(f"/v1/redemptions/{lapsed['id']}/capture"), 409, "hold_expired")
    assert uses_of(in_app, code) == (1, [("released", "ord-slow"), ("consumed", "ord-next")])


def test_a_full_refund_does_not_give_the_code_back(shop, make_member, unique_code, in_app):
    member, code = make_member()["id"], unique_code()
    redemption = shop.hold(member, code, "ord-refunded").get_json()
    order = shop.post("/v1/orders", {"order_id": "ord-refunded", "member_id": member, "currency": "usd",
                                     "lines": LINES, "total_amount": 4500, "redemption_id": redemption["id"]})
    assert order.status_code == 201, order.get_data(as_text=True)
    assert shop.post("/v1/orders/ord-refunded/refunds", {"refund_id": "r-1", "amount": 4500}).status_code == 201
    assert_problem(shop.hold(member, code), 422, "usage_limit_reached")
    assert uses_of(in_app, code) == (1, [("consumed", "ord-refunded")])


# --- uses_per_code -----------------------------------------------------------------------------------------

def test_an_offer_may_let_each_code_pay_for_more_orders(shop, make_member, unique_code):
    member, code = make_member()["id"], unique_code(uses_per_code=2)
    shop.pay(member, code)
    shop.pay(member, code)
    body = assert_problem(shop.hold(member, code), 422, "usage_limit_reached")
    assert body["detail"] == "This code has been used the 2 times it may be"


def test_a_code_without_a_limit_of_its_own_stays_within_the_offers_limits(shop, make_member, unique_code):
    member, code = make_member()["id"], unique_code(uses_per_code=None, usage_limit_per_member=3)
    for _ in range(3):
        shop.pay(member, code)
    body = assert_problem(shop.hold(member, code), 422, "usage_limit_reached")
    assert body["detail"] == "This offer may be used 3 times per member, and you have used it 3 times"


def test_a_public_code_has_no_limit_of_its_own(shop, make_member, manager, in_app):
    manager.post("/v1/admin/offers", json={**TEN_OFF, "code": "EVERYONE"})
    for _ in range(3):
        shop.pay(make_member()["id"], "everyone")
    assert uses_of(in_app, "EVERYONE")[0] == 0  # no counter on a public code's row: its checkouts never queue


def test_an_offer_says_how_many_orders_each_code_pays_for(manager):
    created = manager.post("/v1/admin/offers", json=TEN_OFF).get_json()
    assert created["uses_per_code"] == 1
    changed = manager.patch(f"/v1/admin/offers/{created['id']}", json={"uses_per_code": None})
    assert changed.get_json()["uses_per_code"] is None
    assert manager.post("/v1/admin/offers", json={**TEN_OFF, "uses_per_code": 5}).get_json()["uses_per_code"] == 5


@pytest.mark.parametrize("value", [0, -1, 10_001, "1", 1.5, True])
def test_uses_per_code_out_of_bounds_is_refused(manager, row_counts, value):
    before = row_counts()
    body = assert_problem(manager.post("/v1/admin/offers", json={**TEN_OFF, "uses_per_code": value}), 422,
                          "validation_error")
    assert list(body["errors"]) == ["uses_per_code"]
    assert row_counts() == before


# --- a coupon claimed in the reward catalog ----------------------------------------------------------------

def test_a_reward_coupon_pays_for_one_order_only(shop, manager, member_client, in_app):
    offer_id = manager.post("/v1/admin/offers", json=TEN_OFF).get_json()["id"]
    reward_id = manager.post("/v1/admin/rewards", json={"offer_id": offer_id, "name": "10% off",
                                                        "points_cost": 500}).get_json()["id"]
    client, member = member_client()
    with in_app():
        ledger.adjust(members.get_member(member["id"]).id, 500, reason="Test", reference="seed", now=now())
        db.session.commit()
    code = client.post(f"/v1/me/rewards/{reward_id}/claim").get_json()["code"]
    assert [(c["code"], c["uses_left"]) for c in client.get("/v1/me/coupons").get_json()["data"]] == [(code, 1)]
    shop.pay(member["id"], code)
    assert_problem(shop.hold(member["id"], code), 422, "usage_limit_reached")
    assert client.get("/v1/me/coupons").get_json()["data"] == []


def test_the_coupons_page_shows_a_used_code_as_used_not_ready(shop, account_client, unique_code):
    client = account_client()
    code = unique_code(owner=client.member["id"])
    assert "Ready to use" in client.get("/account/coupons").get_data(as_text=True)
    shop.pay(client.member["id"], code)
    page = client.get("/account/coupons").get_data(as_text=True)
    assert "Ready to use" not in page
    assert "Used and expired" in page and code in page
    assert "This code has paid for as many orders as it may" in page


def test_the_coupons_page_shows_a_code_held_by_a_checkout_as_in_use(shop, account_client, unique_code):
    client = account_client()
    code = unique_code(owner=client.member["id"])
    shop.hold(client.member["id"], code)
    page = client.get("/account/coupons").get_data(as_text=True)
    assert "Ready to use" not in page and "In a checkout" in page


# --- what staff see of each code ---------------------------------------------------------------------------

def test_the_console_shows_each_code_unused_reserved_used_with_its_order_or_expired(shop, manager, make_member,
                                                                                     console_client, in_app):
    offer_id = manager.post("/v1/admin/offers", json=TEN_OFF).get_json()["id"]
    manager.post(f"/v1/admin/offers/{offer_id}/codes", json={"count": 3})
    manager.post(f"/v1/admin/offers/{offer_id}/codes", json={"count": 1, "expires_at": "2020-01-01T00:00:00+00:00"})
    unused, reserved, used, expired = [c["code"] for c in
                                       manager.get(f"/v1/admin/offers/{offer_id}/codes").get_json()["data"]]
    member = make_member()["id"]
    shop.hold(member, reserved, "ord-held")
    shop.pay(member, used, "ord-used")
    page = console_client("manager").get(f"/console/offers/{offer_id}").get_data(as_text=True)
    states = {code: page.split(code, 1)[1].split("</tr>", 1)[0] for code in (unused, reserved, used, expired)}
    assert ">Unused<" in states[unused] and ">Reserved<" in states[reserved] and "ord-held" in states[reserved]
    assert ">Used<" in states[used] and "<code>ord-used</code>" in states[used]
    assert ">Expired<" in states[expired]
    download = console_client("manager").get(f"/console/offers/{offer_id}/codes.csv").get_data(as_text=True)
    rows = {row[0]: row[-3:] for row in csv.reader(io.StringIO(download))}
    assert rows[unused] == ["0", "unused", ""]
    assert rows[reserved] == ["1", "reserved", "ord-held"]
    assert rows[used] == ["1", "used", "ord-used"]
    assert rows[expired] == ["0", "expired", ""]
    listed = {c["code"]: (c["uses"], c["state"], c["orders"])
              for c in manager.get(f"/v1/admin/offers/{offer_id}/codes").get_json()["data"]}
    assert listed == {unused: (0, "unused", []), reserved: (1, "reserved", ["ord-held"]),
                      used: (1, "used", ["ord-used"]), expired: (0, "expired", [])}


def test_the_offer_form_takes_the_orders_each_code_pays_for(console_client, in_app):
    manager = console_client("manager")
    response = submit(manager, "/console/offers/new", {"name": "Two orders", "kind": "percent_off", "percent": "10",
                                                       "uses_per_code": "2", "active": "true"})
    assert response.status_code == 303
    with in_app():
        assert db.session.scalar(select(Offer.uses_per_code).where(Offer.name == "Two orders")) == 2
    refused = submit(manager, "/console/offers/new", {"name": "Bad", "kind": "percent_off", "percent": "10",
                                                      "uses_per_code": "0"})
    assert refused.status_code == 422


# --- a payment that arrives after the hold lapsed ------------------------------------------------------------

def test_a_late_payment_takes_the_code_again_when_it_is_still_free(shop, make_member, unique_code, in_app,
                                                                   stop_clock):
    clock = stop_clock(T0)
    member, code = make_member()["id"], unique_code()
    lapsed = shop.hold(member, code, "ord-late").get_json()
    clock.travel(timedelta(minutes=31))
    with in_app():
        assert jobs.release_expired_holds(now()) == {"released": 1}
    order = shop.post("/v1/orders", {"order_id": "ord-late", "member_id": member, "currency": "usd", "lines": LINES,
                                     "total_amount": 4500, "redemption_id": lapsed["id"]})
    assert order.status_code == 201
    redemption = shop.get(f"/v1/redemptions/{lapsed['id']}").get_json()
    assert (redemption["status"], redemption["problem"]) == ("captured", None)
    assert uses_of(in_app, code) == (1, [("consumed", "ord-late")])
    assert_problem(shop.hold(member, code), 422, "usage_limit_reached")


def test_a_late_payment_never_uses_a_code_another_order_took_meanwhile(shop, make_member, unique_code, in_app,
                                                                       stop_clock):
    """The payment happened, so the order is recorded and the redemption captured; but the code paid for
    another order meanwhile, so its single use is not counted twice: the redemption records the problem."""
    clock = stop_clock(T0)
    member, code = make_member()["id"], unique_code()
    lapsed = shop.hold(member, code, "ord-late").get_json()
    clock.travel(timedelta(minutes=31))
    shop.pay(member, code, "ord-other")
    order = shop.post("/v1/orders", {"order_id": "ord-late", "member_id": member, "currency": "usd", "lines": LINES,
                                     "total_amount": 4500, "redemption_id": lapsed["id"]})
    assert order.status_code == 201
    redemption = shop.get(f"/v1/redemptions/{lapsed['id']}").get_json()
    assert redemption["status"] == "captured"
    assert redemption["problem"] == ("Paid after the hold lapsed; the coupon was not used twice: "
                                     f"Code {code} was used for order ord-other meanwhile")
    assert uses_of(in_app, code) == (1, [("released", "ord-late"), ("consumed", "ord-other")])


def test_a_lapsed_use_released_by_a_checkout_then_by_the_sweep_is_given_back_once(shop, make_member, unique_code,
                                                                                  in_app, stop_clock, runner):
    clock = stop_clock(T0)
    member, code = make_member()["id"], unique_code()
    lapsed = shop.hold(member, code, "ord-late").get_json()
    clock.travel(timedelta(minutes=31))
    assert shop.hold(member, code, "ord-other").status_code == 201  # releases the lapsed use to take the code
    with in_app():
        assert jobs.release_expired_holds(now()) == {"released": 1}
    assert_problem(shop.hold(member, code), 422, "usage_limit_reached")
    shop.post(f"/v1/redemptions/{lapsed['id']}/cancel")
    assert uses_of(in_app, code) == (1, [("released", "ord-late"), ("reserved", "ord-other")])
    assert "BREACH" not in runner.invoke(args=["loyalty", "ledger", "verify"]).output


def test_ledger_verify_reports_a_code_counter_that_drifted_from_its_uses(shop, make_member, unique_code, in_app,
                                                                          runner):
    code = unique_code()
    shop.pay(make_member()["id"], code)
    with in_app():
        db.session.execute(update(OfferCode).where(OfferCode.code == code).values(uses=0))
        db.session.commit()
    result = runner.invoke(args=["loyalty", "ledger", "verify"])
    assert result.exit_code == 1
    assert "BREACH code_uses_match_coupon_uses" in result.output


# --- races (PostgreSQL) --------------------------------------------------------------------------------------

RACERS = 20


def race_checkouts(app, secret: str, member_ids: list[str], code: str) -> list[tuple[int, str]]:
    """RACERS checkouts at once, the n-th for `member_ids[n]`, each holding `code` for an order of its own and
    capturing what it held; answers each one's (status, error code or redemption status), sorted."""
    barrier = threading.Barrier(RACERS)

    def check_out(n: int) -> tuple[int, str]:
        client = app.test_client()
        barrier.wait()
        held = client.post("/v1/redemptions", headers={**bearer(secret), "Idempotency-Key": f"race-{n}"}, json={
            "member_id": member_ids[n], "order_id": f"ord-race-{n}", "currency": "usd", "amount": 5000,
            "coupon_code": code})
        if held.status_code != 201:
            return held.status_code, held.get_json()["code"]
        captured = client.post(f"/v1/redemptions/{held.get_json()['id']}/capture",
                               headers={**bearer(secret), "Idempotency-Key": f"capture-{n}"})
        return captured.status_code, captured.get_json()["status"]

    with ThreadPoolExecutor(max_workers=RACERS) as pool:
        return sorted(pool.map(check_out, range(RACERS)))


def test_twenty_checkouts_holding_one_code_at_once_one_holds_and_captures(pg):
    with pg.app_context():
        publish_rules(RULES, at=datetime(2026, 1, 1, tzinfo=UTC))
        offer = offers.create_offer(dict(TEN_OFF))
        offers.generate_codes(offer, 1)
        _, secret = auth.create_api_key(name="shop", scopes=("checkout",))
        racers = [members.enrol(members.NewMember(email=unique_email(), password=PASSWORD), source="test").public_id
                  for _ in range(RACERS)]
        db.session.commit()
        code = db.session.scalar(select(OfferCode.code).where(OfferCode.offer_id == offer.id))

    outcomes = race_checkouts(pg, secret, racers, code)

    assert outcomes == [(200, "captured")] + [(422, "usage_limit_reached")] * (RACERS - 1)
    with pg.app_context():
        assert db.session.scalar(select(OfferCode.uses).where(OfferCode.code == code)) == 1
        assert db.session.execute(select(CouponUse.status, func.count()).group_by(CouponUse.status)).all() == [
            ("consumed", 1)]


def test_twenty_checkouts_of_one_member_with_their_reward_coupon_at_once_capture_one(pg):
    """The coupon a reward claim issued pays for one order, however many checkouts try it at once."""
    with pg.app_context():
        publish_rules(RULES, at=datetime(2026, 1, 1, tzinfo=UTC))
        offer = offers.create_offer({"name": "Five off", "kind": "amount_off", "amount": 500, "currency": "usd"})
        reward = rewards.create_reward({"offer_id": offer.public_id, "name": "USD 5 off", "points_cost": 500})
        member = members.enrol(members.NewMember(email=unique_email(), password=PASSWORD), source="test")
        ledger.earn(member.id, 500, reference="order:welcome", description="Order", now=now())
        _, code = rewards.claim(reward.public_id, member, reference="claim-1", now=now())
        _, secret = auth.create_api_key(name="shop", scopes=("checkout",))
        member_id, coupon = member.public_id, code.code
        db.session.commit()

    outcomes = race_checkouts(pg, secret, [member_id] * RACERS, coupon)

    assert outcomes == [(200, "captured")] + [(422, "usage_limit_reached")] * (RACERS - 1)
    with pg.app_context():
        assert db.session.execute(select(CouponUse.status, func.count()).group_by(CouponUse.status)).all() == [
            ("consumed", 1)]
        assert ledger.balances(db.session.scalar(
            select(Member.id).where(Member.public_id == member_id))).available == 0
