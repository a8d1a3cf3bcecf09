"""Offers and codes: administration, generation, and validation against the database's state."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from loyalty.extensions import db
from loyalty.members import service as members
from loyalty.offers import engine
from loyalty.offers import service as offers
from loyalty.offers.models import CouponUse, OfferCode
from loyalty.offers.service import CODE_ALPHABET, CODE_LENGTH
from loyalty.tiers import service as tiers
from loyalty.tiers.models import MemberTier
from tests.conftest import assert_problem, unique_email

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
TEN_OFF = {"name": "Ten percent", "kind": "percent_off", "percent": 10, "code": "save-ten"}
CART = engine.Cart(currency="usd", lines=(engine.CartLine(sku="A", quantity=1, unit_amount=333),
                                         engine.CartLine(sku="B", quantity=2, unit_amount=333)))


@pytest.fixture
def manager(staff_client):
    return staff_client("manager")


def test_manager_creates_an_offer_with_a_public_code(manager, in_app):
    response = manager.post("/v1/admin/offers", json=TEN_OFF)
    assert response.status_code == 201
    body = response.get_json()
    assert (body["kind"], body["percent"], body["active"]) == ("percent_off", 10, True)
    assert body["id"].startswith("off_")
    with in_app():
        assert offers.find_code("SAVE TEN").kind == "public"


TEN = {"name": "Bad", "kind": "percent_off", "percent": 10}


@pytest.mark.parametrize(("body", "error"), [
    ({"name": "Bad", "kind": "amount_off", "amount": 500}, "amount"),
    ({"name": "Bad", "kind": "percent_off"}, "percent"),
    ({**TEN, "starts_at": "2026-11-27T00:00:00+00:00", "ends_at": "2026-11-26T00:00:00+00:00"}, "ends_at"),
    ({**TEN, "eligible_tiers": ["platinum"]}, "eligible_tiers"),
    ({**TEN, "min_order_amount": 5000}, "currency"),
], ids=["amount without currency", "percent missing", "ends before it starts", "unknown tier",
        "minimum without currency"])
def test_an_inconsistent_offer_is_refused_naming_the_field(manager, row_counts, body, error):
    before = row_counts()
    problem = assert_problem(manager.post("/v1/admin/offers", json=body), 422, "validation_error")
    assert list(problem["errors"]) == [error]
    assert row_counts() == before


def test_a_public_code_is_unique_whatever_its_case(manager, row_counts):
    manager.post("/v1/admin/offers", json=TEN_OFF)
    before = row_counts()
    assert_problem(manager.post("/v1/admin/offers", json={**TEN_OFF, "code": "SAVE-TEN"}), 409, "conflict")
    assert row_counts() == before


def test_generating_codes_makes_that_many_unique_unambiguous_codes(manager, in_app):
    offer_id = manager.post("/v1/admin/offers", json=TEN_OFF).get_json()["id"]
    response = manager.post(f"/v1/admin/offers/{offer_id}/codes", json={"count": 2000})
    assert (response.status_code, response.get_json()) == (201, {"generated": 2000})
    with in_app():
        codes = db.session.scalars(select(OfferCode.code).where(OfferCode.kind == "unique")).all()
    assert len(codes) == len(set(codes)) == 2000
    assert all(len(code) == CODE_LENGTH and set(code) <= set(CODE_ALPHABET) for code in codes)


def test_codes_assigned_to_members_are_listed_with_their_owner(manager, make_member):
    owners = [make_member()["id"] for _ in range(3)]
    offer_id = manager.post("/v1/admin/offers", json=TEN_OFF).get_json()["id"]
    assert manager.post(f"/v1/admin/offers/{offer_id}/codes", json={"member_ids": owners}).get_json() == {
        "generated": 3}
    page = manager.get(f"/v1/admin/offers/{offer_id}/codes?limit=10").get_json()
    assert sorted(c["member_id"] for c in page["data"] if c["kind"] == "unique") == sorted(owners)


@pytest.mark.parametrize("body", [{}, {"count": 5, "member_ids": ["mem_x"]}], ids=["neither", "both"])
def test_codes_need_either_a_count_or_members(manager, body):
    offer_id = manager.post("/v1/admin/offers", json=TEN_OFF).get_json()["id"]
    problem = assert_problem(manager.post(f"/v1/admin/offers/{offer_id}/codes", json=body), 422, "validation_error")
    assert problem["errors"] == {"count": ["Give either count or member_ids."]}


def test_codes_for_an_unknown_member_are_refused(manager, row_counts):
    offer_id = manager.post("/v1/admin/offers", json=TEN_OFF).get_json()["id"]
    before = row_counts()
    response = manager.post(f"/v1/admin/offers/{offer_id}/codes", json={"member_ids": ["mem_nobody"]})
    assert assert_problem(response, 422, "validation_error")["errors"] == {
        "member_ids": ["No member has the id mem_nobody."]}
    assert row_counts() == before


def test_unknown_offer_is_not_found(manager):
    assert_problem(manager.get("/v1/admin/offers/off_nope"), 404, "not_found")


# --- validation against the database -----------------------------------------------------------

@pytest.fixture
def shop(in_app):
    """Tiers, a gold and a bronze member, inside one app context."""
    with in_app():
        for rank, (code, hours) in enumerate((("bronze", 0), ("gold", 24))):
            tiers.create_tier({"code": code, "name": code.title(), "rank": rank, "threshold": 1000 * rank,
                               "basis": "points", "window_days": 365, "early_access_hours": hours,
                               "earn_multiplier": Decimal(1)})
        gold_tier = db.session.scalar(select(tiers.Tier).where(tiers.Tier.code == "gold"))
        gold = members.enrol(members.NewMember(email=unique_email()), source="test")
        bronze = members.enrol(members.NewMember(email=unique_email()), source="test")
        db.session.add(MemberTier(member_id=gold.id, tier_id=gold_tier.id, since=T0))
        db.session.commit()
        yield {"gold": gold, "bronze": bronze}
        db.session.rollback()


def make_offer(**fields):
    offer = offers.create_offer({**TEN_OFF, **fields})
    db.session.commit()
    return offer


def test_a_public_code_gives_its_discount_line_by_line(shop):
    make_offer()
    result = offers.validate("Save-Ten", shop["bronze"], CART, T0)
    assert (result.valid, result.discount_amount, result.line_discounts) == (True, 99, (33, 66))


def test_an_unknown_code_is_invalid(shop):
    assert offers.validate("NOPE", shop["bronze"], CART, T0).code == "coupon_invalid"


def test_a_deactivated_offer_stops_its_codes(shop):
    offer = make_offer()
    offers.update_offer(offer, {"active": False})
    db.session.commit()
    assert offers.validate("SAVETEN", shop["bronze"], CART, T0).code == "coupon_invalid"


def test_early_access_uses_the_tiers_own_hours(shop):
    make_offer(starts_at=T0, early_access={"gold": None})
    before_gold = T0 - timedelta(hours=24, seconds=1)
    assert offers.validate("SAVETEN", shop["gold"], CART, before_gold).code == "coupon_not_started"
    assert offers.validate("SAVETEN", shop["gold"], CART, T0 - timedelta(hours=24)).valid
    assert offers.validate("SAVETEN", shop["bronze"], CART, T0 - timedelta(seconds=1)).code == "early_access_only"
    assert offers.validate("SAVETEN", shop["bronze"], CART, T0).valid


def test_an_exclusive_discount_requires_the_tier(shop):
    make_offer(eligible_tiers=["gold"])
    assert offers.validate("SAVETEN", shop["bronze"], CART, T0).code == "tier_required"
    assert offers.validate("SAVETEN", shop["gold"], CART, T0).valid


def test_the_usage_limit_counts_consumed_and_live_reservations(shop):
    offer = make_offer(usage_limit_total=2)
    code = offers.find_code("SAVETEN")
    db.session.add_all([
        CouponUse(offer_id=offer.id, code_id=code.id, member_id=shop["gold"].id, status="consumed", reference="u1"),
        CouponUse(offer_id=offer.id, code_id=code.id, member_id=shop["gold"].id, status="reserved", reference="u2",
                  expires_at=T0 + timedelta(minutes=30)),
        CouponUse(offer_id=offer.id, code_id=code.id, member_id=shop["gold"].id, status="released", reference="u3"),
    ])
    db.session.commit()
    assert offers.validate("SAVETEN", shop["bronze"], CART, T0).code == "usage_limit_reached"
    # Once the reservation has expired it no longer counts.
    assert offers.validate("SAVETEN", shop["bronze"], CART, T0 + timedelta(minutes=30)).valid


def test_a_code_assigned_to_another_member_is_invalid_for_others(shop):
    offer = make_offer(code=None)
    offers.generate_codes(offer, 1, member_ids=[shop["gold"].id])
    db.session.commit()
    code = db.session.scalar(select(OfferCode.code).where(OfferCode.offer_id == offer.id))
    assert offers.validate(code.lower(), shop["bronze"], CART, T0).code == "coupon_invalid"
    assert offers.validate(code, shop["gold"], CART, T0).valid


def test_generated_codes_draw_again_when_one_collides(shop, monkeypatch):
    offer = make_offer(code="TAKEN0000000")
    draws = iter(["TAKEN0000000", "FRESH2222222"])
    monkeypatch.setattr(offers, "_new_code", lambda: next(draws))
    assert offers.generate_codes(offer, 1) == 1
    assert db.session.scalar(select(func.count()).select_from(OfferCode).where(OfferCode.code == "FRESH2222222")) == 1
