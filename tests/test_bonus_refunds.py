"""Bonuses an order triggers (the referral, for both sides) follow that order: pending for its return window,
taken back, through the ledger, when it is fully refunded or its dispute is lost."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from loyalty.auth import service as auth
from loyalty.checkout import service as checkout
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.jobs import service as jobs
from loyalty.ledger import service as ledger
from loyalty.ledger.models import JournalTransaction
from loyalty.ledger.service import Balances
from loyalty.ledger.verify import verify
from loyalty.members import service as members
from loyalty.tiers import service as tiers
from tests.conftest import bearer, publish_rules, unique_email

# One point per dollar, pending 14 days; a referral pays 500 to the referrer and 250 to the friend.
RULES = {"earn": {"rates": {"usd": "1"}, "pending_days": 14, "first_order_points": 100},
         "events": {"referral": {"referrer_points": 500, "referred_points": 250}},
         "redeem": {"point_values": {"usd": "1"}}}
LINES = [{"sku": "TEE-1", "quantity": 2, "unit_amount": 2500}]  # $50.00: 50 points, 100 more as a first order
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def clock(stop_clock):
    return stop_clock(T0)


@pytest.fixture(autouse=True)
def program(app, clock):
    with app.app_context():
        publish_rules(RULES, at=T0 - timedelta(seconds=1))


@pytest.fixture
def shop(client, make_api_key):
    headers = bearer(make_api_key("checkout"))

    class Shop:
        def order(self, member_id: str, order_id: str, total: int = 5000):
            lines = LINES if total == 5000 else [{"sku": "A", "quantity": 1, "unit_amount": total}]
            body = {"order_id": order_id, "member_id": member_id, "currency": "usd", "lines": lines,
                    "total_amount": total}
            response = client.post("/v1/orders", json=body, headers=headers)
            assert response.status_code == 201, response.get_data(as_text=True)
            return response.get_json()

        def refund(self, order_id: str, refund_id: str, amount: int):
            response = client.post(f"/v1/orders/{order_id}/refunds", json={"refund_id": refund_id, "amount": amount},
                                   headers=headers)
            assert response.status_code == 201, response.get_data(as_text=True)
            return response.get_json()

        def spend(self, member_id: str, points: int, order_id: str):
            body = {"member_id": member_id, "order_id": order_id, "currency": "usd", "amount": 100_000,
                    "points": points}
            redemption = client.post("/v1/redemptions", json=body,
                                     headers={**headers, "Idempotency-Key": order_id}).get_json()
            assert client.post(f"/v1/redemptions/{redemption['id']}/capture", headers=headers).status_code == 200

    return Shop()


@pytest.fixture
def pair(make_member):
    """A referrer and the friend they referred: (referrer id, friend id)."""
    referrer = make_member()
    friend = make_member(referral_code=referrer["referral_code"])
    return referrer["id"], friend["id"]


@pytest.fixture
def balances(in_app):
    def read(member_id: str) -> Balances:
        with in_app():
            member = members.get_member(member_id)
            ledger.settle(member.id, now())
            db.session.commit()
            return ledger.balances(member.id)

    return read


@pytest.fixture
def journal(in_app):
    """A member's journal, oldest first: (kind, points, shortfall, order_id, description)."""

    def read(member_id: str) -> list[tuple]:
        with in_app():
            member = members.get_member(member_id)
            return [(t.kind, t.points, t.shortfall, t.order_id, t.description) for t in db.session.scalars(
                select(JournalTransaction).where(JournalTransaction.member_id == member.id)
                .order_by(JournalTransaction.id))]

    return read


def _no_breaches(in_app) -> None:
    with in_app():
        assert [r.name for r in verify(db.session) if not r.ok] == []


def test_both_referral_bonuses_are_pending_while_the_order_can_be_returned(shop, pair, balances, clock):
    referrer, friend = pair
    shop.order(friend, "ord-1")
    assert balances(referrer) == Balances(available=0, pending=500, held=0, lifetime_earned=500)
    assert balances(friend) == Balances(available=0, pending=150 + 250, held=0, lifetime_earned=400)
    clock.travel(14 * DAY)
    assert balances(referrer).available == 500
    assert balances(friend).available == 400


def test_the_referral_bonuses_are_linked_to_the_order_that_paid_them(shop, pair, journal):
    referrer, friend = pair
    shop.order(friend, "ord-1")
    assert [(kind, points, order_id) for kind, points, _, order_id, _ in journal(referrer)] == [
        ("bonus", 500, "ord-1")]
    assert [(kind, points, order_id) for kind, points, _, order_id, _ in journal(friend)] == [
        ("earn", 150, "ord-1"), ("bonus", 250, "ord-1")]


def test_refer_buy_refund_leaves_no_points_on_either_side(shop, pair, balances, journal, in_app):
    referrer, friend = pair
    shop.order(friend, "ord-1")
    refund = shop.refund("ord-1", "re_1", 5000)
    assert (refund["points_clawed_back"], refund["shortfall"]) == (150, 0)  # the order's own points
    assert balances(referrer) == Balances()
    assert balances(friend) == Balances()
    assert journal(referrer)[-1][:4] == ("clawback", -500, 0, "ord-1")
    assert journal(friend)[-1][:4] == ("clawback", -250, 0, "ord-1")
    _no_breaches(in_app)


def test_a_bonus_already_spent_is_taken_back_as_far_as_it_can_be_and_the_rest_is_shortfall(shop, pair, balances,
                                                                                            journal, clock, in_app):
    referrer, friend = pair
    shop.order(friend, "ord-1")
    clock.travel(15 * DAY)  # the return window is over: the referrer spends 300 of the 500
    shop.spend(referrer, 300, "ord-spend")
    shop.refund("ord-1", "re_1", 5000)  # a late refund the shop still accepts
    assert balances(referrer) == Balances(lifetime_earned=300)
    assert journal(referrer)[-1] == (
        "clawback", -200, 300, "ord-1",
        "Order ord-1 was refunded: Referral bonus: a friend you referred placed their first order (500 points): "
        "200 points taken back; 300 of the 500 were already spent (shortfall)")
    _no_breaches(in_app)


def test_a_partial_refund_leaves_the_bonuses_and_the_last_refund_takes_them(shop, pair, balances):
    referrer, friend = pair
    shop.order(friend, "ord-1")
    shop.refund("ord-1", "re_1", 4999)
    assert balances(referrer).pending == 500
    assert balances(friend).pending == 150 - 149 + 250  # the order's own points follow in proportion
    shop.refund("ord-1", "re_2", 1)
    assert balances(referrer) == Balances()
    assert balances(friend) == Balances()


def test_a_second_order_after_a_refunded_first_one_pays_no_referral(shop, pair, balances, journal):
    referrer, friend = pair
    shop.order(friend, "ord-1")
    shop.refund("ord-1", "re_1", 5000)
    second = shop.order(friend, "ord-2")
    assert second["points_earned"] == 50  # no first-order bonus either
    assert balances(referrer) == Balances()
    assert balances(friend).pending == 50
    assert [kind for kind, *_ in journal(referrer)] == ["bonus", "clawback"]


def test_a_refund_that_finds_a_bonus_reversed_by_staff_takes_back_the_rest(shop, pair, balances, in_app):
    referrer, friend = pair
    shop.order(friend, "ord-1")
    with in_app():
        [bonus] = db.session.scalars(select(JournalTransaction).where(
            JournalTransaction.member_id == members.get_member(referrer).id))
        ledger.reverse(bonus, reference="staff-reversal", now=now(), reason="Self-referral")
        db.session.commit()
    shop.refund("ord-1", "re_1", 5000)
    assert balances(referrer) == Balances()
    assert balances(friend) == Balances()
    _no_breaches(in_app)


def test_a_disputed_order_keeps_its_bonuses_pending_and_a_lost_dispute_takes_them(shop, pair, balances, clock,
                                                                                  in_app):
    referrer, friend = pair
    shop.order(friend, "ord-1")
    with in_app():
        checkout.open_dispute(checkout.get_order("ord-1", lock=True))
        db.session.commit()
    clock.travel(20 * DAY)
    with in_app():
        jobs.activate_pending(now())
        db.session.commit()
    assert balances(referrer) == Balances(pending=500, lifetime_earned=500)
    with in_app():
        checkout.close_dispute(checkout.get_order("ord-1", lock=True), dispute_id="dp_1", lost=True, amount=5000,
                               now=now())
        db.session.commit()
    assert balances(referrer) == Balances()
    assert balances(friend) == Balances()
    _no_breaches(in_app)


def test_a_won_dispute_lets_the_bonuses_become_available(shop, pair, balances, clock, in_app):
    referrer, friend = pair
    shop.order(friend, "ord-1")
    with in_app():
        checkout.open_dispute(checkout.get_order("ord-1", lock=True))
        db.session.commit()
    clock.travel(20 * DAY)
    with in_app():
        checkout.close_dispute(checkout.get_order("ord-1", lock=True), dispute_id="dp_1", lost=False, amount=0,
                               now=now())
        db.session.commit()
    assert balances(referrer) == Balances(available=500, lifetime_earned=500)
    assert balances(friend) == Balances(available=400, lifetime_earned=400)


# --- what a refund leaves counts toward tiers and the lifetime total -----------------------------------

@pytest.fixture
def gold_at(in_app):
    """A base tier and Gold at `threshold` points earned over a year."""

    def make(threshold: int) -> None:
        with in_app():
            for code, rank, points in (("member", 0, 0), ("gold", 1, threshold)):
                tiers.create_tier({"code": code, "name": code.title(), "rank": rank, "threshold": points,
                                   "basis": "points", "window_days": 365})
            db.session.commit()

    return make


@pytest.fixture
def summary(client, make_api_key):
    headers = bearer(make_api_key("members:read"))
    return lambda member_id: client.get(f"/v1/members/{member_id}", headers=headers).get_json()


def _tier_history(in_app, member_id: str) -> list[tuple]:
    with in_app():
        return [(h["from"], h["to"], h["reason"]) for h in tiers.history(members.get_member(member_id))]


def test_a_refund_short_of_spent_points_leaves_the_kept_points_as_lifetime_and_tier_progress(
        shop, make_member, summary, gold_at, clock, in_app):
    gold_at(2000)
    member = make_member()["id"]
    shop.order(member, "ord-big", 226_000)  # 2,260 points, 100 more as a first order: Gold at once
    clock.travel(15 * DAY)
    shop.spend(member, 2159, "ord-spend")  # 201 points left
    refund = shop.refund("ord-big", "re_1", 35_000)  # 365 of the order's 2,360 points follow the money
    assert (refund["points_clawed_back"], refund["shortfall"]) == (365, 164)
    points = summary(member)["points"]
    # Taken back: 201, so 2,159 were issued and not returned; but only 1,995 were kept.
    assert (points["available"], points["lifetime_earned"]) == (0, 1995)
    assert summary(member)["tier"]["code"] == "member"
    assert _tier_history(in_app, member)[0] == (
        "gold", "member", "Refunded: 1995 points earned in 365 days; Gold needs 2000")


def test_a_tier_reached_with_an_order_goes_with_its_refund_without_grace(shop, make_member, summary, gold_at,
                                                                          in_app):
    gold_at(100)
    member = make_member()["id"]
    shop.order(member, "ord-1")  # 150 points: Gold
    assert summary(member)["tier"]["code"] == "gold"
    shop.refund("ord-1", "re_1", 5000)
    assert summary(member)["tier"]["code"] == "member"
    assert [(old, new) for old, new, _ in _tier_history(in_app, member)] == [("gold", "member"), ("member", "gold")]


def test_a_tier_reached_before_the_refunded_order_is_left_to_the_evaluation_and_its_grace(
        shop, make_member, summary, gold_at, clock, in_app):
    gold_at(100)
    member = make_member()["id"]
    shop.order(member, "ord-1")  # Gold with this order's 150 points
    clock.travel(400 * DAY)  # they leave the window; no evaluation has run
    shop.order(member, "ord-2")
    shop.refund("ord-2", "re_1", 5000)
    assert summary(member)["tier"]["code"] == "gold"
    assert [(old, new) for old, new, _ in _tier_history(in_app, member)] == [("member", "gold")]


def test_a_refund_takes_back_every_tier_reached_since_its_order_not_only_the_last(shop, make_member, summary,
                                                                               clock, in_app):
    with in_app():
        for code, rank, points in (("member", 0, 0), ("silver", 1, 200), ("gold", 2, 300)):
            tiers.create_tier({"code": code, "name": code.title(), "rank": rank, "threshold": points,
                               "basis": "points", "window_days": 365})
        db.session.commit()
    member = make_member()["id"]
    shop.order(member, "ord-1", 15_000)  # 150 points, 100 more as a first order: Silver
    clock.travel(DAY)
    shop.order(member, "ord-2", 6000)  # 60 more: Gold
    assert summary(member)["tier"]["code"] == "gold"
    shop.refund("ord-1", "re_1", 15_000)  # 60 points kept: neither Silver nor Gold was earned without it
    assert summary(member)["tier"]["code"] == "member"
    assert [(old, new) for old, new, _ in _tier_history(in_app, member)] == [
        ("gold", "member"), ("silver", "gold"), ("member", "silver")]


def test_the_referrer_lifted_into_a_tier_by_a_referral_bonus_loses_it_with_the_refund(shop, pair, summary, gold_at):
    gold_at(500)
    referrer, friend = pair
    shop.order(friend, "ord-1")
    assert summary(referrer)["tier"]["code"] == "gold"
    shop.refund("ord-1", "re_1", 5000)
    assert summary(referrer)["tier"]["code"] == "member"
    assert summary(referrer)["points"]["lifetime_earned"] == 0


def test_a_spend_tier_reached_with_an_order_goes_with_its_refund(shop, make_member, summary, in_app):
    with in_app():
        for code, rank, threshold in (("member", 0, 0), ("gold", 1, 5000)):
            tiers.create_tier({"code": code, "name": code.title(), "rank": rank, "threshold": threshold,
                               "basis": "spend", "currency": "usd", "window_days": 365})
        db.session.commit()
    member = make_member()["id"]
    shop.order(member, "ord-1")  # USD 50.00 spent: Gold
    assert summary(member)["tier"]["code"] == "gold"
    shop.refund("ord-1", "re_1", 1)  # USD 49.99 kept
    assert summary(member)["tier"]["code"] == "member"


# --- races (PostgreSQL) --------------------------------------------------------------------------------------

def test_the_two_refunds_that_complete_an_order_at_once_take_its_bonuses_back_once(pg, clock):
    """Each half refunded at the same moment: whichever completes the order takes both bonuses back, once."""
    with pg.app_context():
        publish_rules(RULES, at=T0 - timedelta(seconds=1))
        referrer = members.enrol(members.NewMember(email=unique_email("referrer")), source="test")
        friend = members.enrol(members.NewMember(email=unique_email("friend"), referral_code=referrer.referral_code),
                               source="test")
        _, secret = auth.create_api_key(name="shop", scopes=("checkout",))
        db.session.commit()
        people = (referrer.id, friend.id)
    paid = pg.test_client().post("/v1/orders", headers=bearer(secret), json={
        "order_id": "ord-refer", "member_id": friend.public_id, "currency": "usd", "lines": LINES,
        "total_amount": 5000})
    assert paid.status_code == 201
    barrier = threading.Barrier(2)

    def refund_half(n: int) -> int:
        client = pg.test_client()
        barrier.wait()
        return client.post("/v1/orders/ord-refer/refunds", headers=bearer(secret),
                           json={"refund_id": f"rfd-half-{n}", "amount": 2500}).status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        assert list(pool.map(refund_half, range(2))) == [201, 201]
    with pg.app_context():
        taken_back = db.session.scalars(select(JournalTransaction.member_id).where(
            JournalTransaction.kind == "clawback", JournalTransaction.reference.like("refund:%:clawback:%"))).all()
        assert sorted(taken_back) == sorted(people)  # each side's bonus, once
        assert [ledger.balances(member_id) for member_id in people] == [Balances(), Balances()]
        assert [r.name for r in verify(db.session) if not r.ok] == []
