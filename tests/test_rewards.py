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
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.offers import engine
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.offers.models import CouponUse, Offer, OfferCode, RewardClaim
from loyalty.tiers import service as tiers
from loyalty.tiers.models import MemberTier, Tier
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
            ledger.adjust(internal, points, reason="Test", reference=f"seed:{member['id']}", now=now())
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
            ledger.adjust(member.id, 100, reason="Test", reference=f"s:{member.id}", now=T0)
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


# --- rewards the member could not use at once ------------------------------------------------------

@pytest.fixture
def ladder(in_app):
    """Silver (everyone) and Gold tiers, Gold with 72 hours of early access; `ladder.make_gold(member)`."""
    with in_app():
        for rank, (code, hours) in enumerate((("silver", 0), ("gold", 72))):
            tiers.create_tier({"code": code, "name": code.title(), "rank": rank, "threshold": 5000 * rank,
                               "basis": "points", "window_days": 365, "early_access_hours": hours,
                               "earn_multiplier": Decimal(1)})
        db.session.commit()

    class Ladder:
        @staticmethod
        def make_gold(member: dict) -> None:
            with in_app():
                gold = db.session.scalar(select(Tier).where(Tier.code == "gold"))
                db.session.add(MemberTier(member_id=members.get_member(member["id"]).id, tier_id=gold.id, since=now()))
                db.session.commit()

    return Ladder()


@pytest.fixture
def offered(manager):
    """A reward for 500 points of a new offer with `fields`; answers the reward's id."""

    def make(**fields) -> str:
        offer = manager.post("/v1/admin/offers", json={**TEN_OFF, **fields})
        assert offer.status_code == 201, offer.get_data(as_text=True)
        body = {"offer_id": offer.get_json()["id"], "name": "15% off for Gold", "points_cost": 500}
        return manager.post("/v1/admin/rewards", json=body).get_json()["id"]

    return make


def test_a_tier_locked_reward_is_not_sold_to_a_member_outside_the_tier(member_with, ladder, offered, row_counts):
    client, _ = member_with(800)
    reward_id = offered(eligible_tiers=["gold"])
    before = row_counts()
    body = assert_problem(client.post(f"/v1/me/rewards/{reward_id}/claim"), 409, "tier_required")
    assert body["detail"] == "Only for Gold members: you could not use this reward's coupon now."
    assert row_counts() == before
    assert client.get("/v1/me").get_json()["points"]["available"] == 800


def test_a_member_of_the_tier_claims_the_tier_locked_reward(member_with, ladder, offered):
    client, member = member_with(800)
    ladder.make_gold(member)
    reward_id = offered(eligible_tiers=["gold"])
    assert client.post(f"/v1/me/rewards/{reward_id}/claim").status_code == 201
    assert client.get("/v1/me").get_json()["points"]["available"] == 300


@pytest.mark.parametrize(("fields", "code"), [
    ({"ends_at": "2020-01-01T00:00:00+00:00"}, "coupon_expired"),
    ({"starts_at": "2099-01-01T00:00:00+00:00"}, "coupon_not_started"),
    ({"usage_limit_total": 1}, "usage_limit_reached"),
], ids=["offer ended", "offer not started", "offer used up"])
def test_a_reward_whose_coupon_would_be_refused_at_once_is_not_sold(member_with, offered, manager, in_app, fields,
                                                                    code):
    client, _ = member_with(800)
    reward_id = offered(**fields)
    if code == "usage_limit_reached":  # someone else used the offer's only use
        with in_app():
            offer = db.session.scalar(select(Offer).order_by(Offer.id.desc()))
            shopper = members.enrol(members.NewMember(email=unique_email()), source="test")
            offers.generate_codes(offer, 1, member_ids=[shopper.id])
            entry = db.session.scalar(select(OfferCode).where(OfferCode.offer_id == offer.id))
            offers.reserve(entry.code, shopper, CART, reference="other", expires_at=now() + timedelta(hours=1),
                           now=now())
            offers.consume("other", now=now())
            db.session.commit()
    assert_problem(client.post(f"/v1/me/rewards/{reward_id}/claim"), 409, code)
    assert client.get("/v1/me").get_json()["points"]["available"] == 800


def test_early_access_opens_a_reward_to_its_tier_only(member_with, ladder, offered):
    starts = (now() + timedelta(days=2)).replace(microsecond=0).isoformat()
    reward_id = offered(starts_at=starts, early_access={"gold": None})
    silver, _ = member_with(800)
    gold, gold_member = member_with(800)
    ladder.make_gold(gold_member)
    assert_problem(silver.post(f"/v1/me/rewards/{reward_id}/claim"), 409, "early_access_only")
    assert gold.post(f"/v1/me/rewards/{reward_id}/claim").status_code == 201


def test_the_catalog_marks_rewards_the_member_could_not_use_as_locked_with_the_reason(member_with, ladder, offered,
                                                                                       reward):
    client, _ = member_with(800)
    locked_id, open_id = offered(eligible_tiers=["gold"]), reward()
    entries = {entry["id"]: entry for entry in client.get("/v1/rewards").get_json()["data"]}
    assert {key: entries[locked_id][key] for key in ("locked", "locked_code", "locked_reason", "points_cost")} == {
        "locked": True, "locked_code": "tier_required", "locked_reason": "Only for Gold members", "points_cost": 500}
    assert (entries[open_id]["locked"], entries[open_id]["locked_code"], entries[open_id]["locked_reason"]) == (
        False, None, None)
