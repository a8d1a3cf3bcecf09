"""The reward catalog, reserving and consuming coupon uses, and the member's coupons."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from loyalty.clock import now
from loyalty.errors import Problem
from loyalty.extensions import db
from loyalty.ledger.service import Ledger
from loyalty.members import service as members
from loyalty.offers import engine
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.offers.models import CouponUse, RewardClaim
from loyalty.tiers import service as tiers
from tests.conftest import assert_problem, unique_email

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
CART = engine.Cart(currency="usd", lines=(engine.CartLine(sku="A", quantity=1, unit_amount=5000),))
TEN_OFF = {"name": "Ten percent", "kind": "percent_off", "percent": 10}


@pytest.fixture
def manager(staff_client):
    return staff_client("manager")


@pytest.fixture
def member_with(member_client, in_app):
    """A signed-in member holding `points` available points."""

    def make(points: int):
        client, member = member_client()
        with in_app():
            internal = members.get_member(member["id"]).id
            Ledger(db.session).adjust(internal, points, reason="Test", reference=f"seed:{member['id']}", now=now())
            db.session.commit()
        return client, member

    return make


@pytest.fixture
def reward(manager):
    offer_id = manager.post("/v1/admin/offers", json=TEN_OFF).get_json()["id"]

    def make(**fields) -> str:
        body = {"offer_id": offer_id, "name": "10% off", "points_cost": 500, **fields}
        response = manager.post("/v1/admin/rewards", json=body)
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()["id"]

    return make


def test_claiming_a_reward_spends_points_and_issues_a_coupon(member_with, reward):
    client, _ = member_with(800)
    reward_id = reward()
    response = client.post(f"/v1/me/rewards/{reward_id}/claim")
    assert response.status_code == 201
    body = response.get_json()
    assert (body["reward_id"], body["points_spent"]) == (reward_id, 500)
    assert body["transaction_id"].startswith("txn_")
    assert client.get("/v1/me").get_json()["points"]["available"] == 300
    coupons = client.get("/v1/me/coupons").get_json()["data"]
    assert [(c["code"], c["assigned"], c["open"]) for c in coupons] == [(body["code"], True, True)]


def test_a_claim_without_enough_points_changes_nothing(member_with, reward, row_counts):
    client, _ = member_with(499)
    reward_id = reward()
    before = row_counts()
    assert_problem(client.post(f"/v1/me/rewards/{reward_id}/claim"), 409, "insufficient_points")
    assert row_counts() == before


def test_a_claim_retried_with_its_key_claims_once(member_with, reward):
    client, _ = member_with(2000)
    reward_id = reward()
    first = client.post(f"/v1/me/rewards/{reward_id}/claim", headers={"Idempotency-Key": "c-1"}).get_json()
    again = client.post(f"/v1/me/rewards/{reward_id}/claim", headers={"Idempotency-Key": "c-1"}).get_json()
    assert again["code"] == first["code"]
    assert client.get("/v1/me").get_json()["points"]["available"] == 1500


def test_stock_runs_out(member_with, reward):
    reward_id = reward(stock=1)
    one, _ = member_with(1000)
    two, _ = member_with(1000)
    assert one.post(f"/v1/me/rewards/{reward_id}/claim").status_code == 201
    assert_problem(two.post(f"/v1/me/rewards/{reward_id}/claim"), 409, "reward_sold_out")


def test_the_per_member_limit_holds(member_with, reward):
    client, _ = member_with(5000)
    reward_id = reward(per_member_limit=2)
    for _ in range(2):
        assert client.post(f"/v1/me/rewards/{reward_id}/claim").status_code == 201
    assert_problem(client.post(f"/v1/me/rewards/{reward_id}/claim"), 409, "reward_limit_reached")


def test_an_inactive_reward_cannot_be_claimed(member_with, reward, manager):
    client, _ = member_with(5000)
    reward_id = reward()
    manager.patch(f"/v1/admin/rewards/{reward_id}", json={"active": False})
    assert_problem(client.post(f"/v1/me/rewards/{reward_id}/claim"), 409, "reward_unavailable")
    assert client.get("/v1/rewards").get_json()["data"] == []


def test_stock_cannot_drop_below_what_was_claimed(member_with, reward, manager):
    client, _ = member_with(5000)
    reward_id = reward(stock=5)
    client.post(f"/v1/me/rewards/{reward_id}/claim")
    response = manager.patch(f"/v1/admin/rewards/{reward_id}", json={"stock": 0})
    assert list(assert_problem(response, 422, "validation_error")["errors"]) == ["stock"]


def test_the_catalog_shows_what_is_left(member_with, reward):
    client, _ = member_with(5000)
    reward_id = reward(stock=3)
    client.post(f"/v1/me/rewards/{reward_id}/claim")
    [entry] = client.get("/v1/rewards").get_json()["data"]
    assert (entry["id"], entry["claimed"], entry["remaining"]) == (reward_id, 1, 2)


def test_my_coupons_show_early_access_with_its_opening(member_client, manager, in_app):
    client, _ = member_client()
    starts = (now() + timedelta(days=2)).replace(microsecond=0)
    manager.post("/v1/admin/offers", json={**TEN_OFF, "code": "LAUNCH", "starts_at": starts.isoformat()})
    manager.post("/v1/admin/offers", json={**TEN_OFF, "code": "LATER",
                                           "starts_at": (now() + timedelta(days=30)).isoformat()})
    [coupon] = client.get("/v1/me/coupons").get_json()["data"]
    assert (coupon["code"], coupon["open"], coupon["opens_at"]) == ("LAUNCH", False, starts.isoformat())


# --- reserving uses ------------------------------------------------------------------------------

@pytest.fixture
def shop(in_app):
    with in_app():
        tiers.create_tier({"code": "member", "name": "Member", "rank": 0, "threshold": 0, "basis": "points",
                           "window_days": 365, "earn_multiplier": Decimal(1)})
        people = [members.enrol(members.NewMember(email=unique_email()), source="test") for _ in range(2)]
        offers.create_offer({**TEN_OFF, "code": "LAST", "usage_limit_total": 1})
        db.session.commit()
        yield people
        db.session.rollback()


def test_a_reserved_use_counts_until_it_is_released(shop):
    first, second = shop
    offers.reserve("last", first, CART, reference="r1", expires_at=T0 + timedelta(minutes=30), now=T0)
    db.session.commit()
    with pytest.raises(Problem) as refused:
        offers.reserve("last", second, CART, reference="r2", expires_at=T0 + timedelta(minutes=30), now=T0)
    assert (refused.value.status, refused.value.code) == (422, "usage_limit_reached")
    db.session.rollback()
    offers.release("r1", now=T0)
    db.session.commit()
    use, result = offers.reserve("last", second, CART, reference="r2", expires_at=T0 + timedelta(minutes=30),
                                 now=T0)
    assert (use.status, result.discount_amount) == ("reserved", 500)


def test_consume_and_release_are_idempotent_and_exclusive(shop):
    first, _ = shop
    offers.reserve("LAST", first, CART, reference="r1", expires_at=T0 + timedelta(minutes=30), now=T0)
    assert offers.consume("r1", now=T0).status == "consumed"
    assert offers.consume("r1", now=T0).status == "consumed"
    with pytest.raises(Problem) as refused:
        offers.release("r1", now=T0)
    assert refused.value.code == "redemption_not_held"


def test_the_last_use_goes_to_exactly_one_of_two_racing_members(pg):
    """On PostgreSQL: two members reserve the last use of a limited coupon at the same moment."""
    with pg.app_context():
        tiers.create_tier({"code": "member", "name": "Member", "rank": 0, "threshold": 0, "basis": "points",
                           "window_days": 365, "earn_multiplier": Decimal(1)})
        offers.create_offer({**TEN_OFF, "code": "LAST", "usage_limit_total": 1})
        ids = [members.enrol(members.NewMember(email=unique_email()), source="test").id for _ in range(2)]
        db.session.commit()
    barrier = threading.Barrier(2)

    def reserve(n: int) -> str:
        with pg.app_context():
            member = db.session.get(members.Member, ids[n])
            barrier.wait()
            try:
                offers.reserve("LAST", member, CART, reference=f"race:{n}", expires_at=T0 + timedelta(hours=1),
                               now=T0)
                db.session.commit()
                return "ok"
            except Problem as problem:
                db.session.rollback()
                return problem.code

    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = sorted(pool.map(reserve, range(2)))
    assert outcomes == ["ok", "usage_limit_reached"]
    with pg.app_context():
        assert db.session.scalar(select(func.count()).select_from(CouponUse)) == 1


def test_the_last_reward_in_stock_goes_to_exactly_one_of_eight_racing_members(pg):
    with pg.app_context():
        offer = offers.create_offer(dict(TEN_OFF))
        entry = catalog.create_reward({"offer_id": offer.public_id, "name": "Last one", "points_cost": 100,
                                       "stock": 1})
        ids = []
        for _ in range(8):
            member = members.enrol(members.NewMember(email=unique_email()), source="test")
            Ledger(db.session).adjust(member.id, 100, reason="Test", reference=f"s:{member.id}", now=T0)
            ids.append(member.id)
        db.session.commit()
        reward_id = entry.public_id
    barrier = threading.Barrier(8)

    def claim(n: int) -> str:
        with pg.app_context():
            member = db.session.get(members.Member, ids[n])
            barrier.wait()
            try:
                catalog.claim(reward_id, member, reference=f"claim:{n}", now=T0)
                db.session.commit()
                return "ok"
            except Problem as problem:
                db.session.rollback()
                return problem.code

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = sorted(pool.map(claim, range(8)))
    assert outcomes == ["ok"] + ["reward_sold_out"] * 7
    with pg.app_context():
        assert db.session.scalar(select(func.count()).select_from(RewardClaim)) == 1
