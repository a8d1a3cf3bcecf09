"""The console's reward catalog: the list for every staff role, and the forms that add and change rewards."""

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from loyalty.extensions import db
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.offers.models import Reward
from tests.conftest import submit
from tests.test_console_offers import table_rows

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TEN_OFF_REWARD = {"name": "10% off your next order", "description": "", "points_cost": "500", "stock": "100",
                  "per_member_limit": "2", "coupon_valid_days": "30", "active": ["false", "true"]}
HEADER = ["Reward", "Points cost", "Offer", "Active", "Stock", "Per member", "Coupon valid", "Claimed"]


@pytest.fixture(autouse=True)
def clock(stop_clock):
    return stop_clock(NOW)


@pytest.fixture
def offer_id(in_app):
    with in_app():
        offer = offers.create_offer({"name": "Ten off", "kind": "percent_off", "percent": 10})
        db.session.commit()
        return offer.public_id


@pytest.fixture
def reward_id(in_app, offer_id):
    with in_app():
        reward = catalog.create_reward({"offer_id": offer_id, "name": "Ten off for points", "points_cost": 1500,
                                        "stock": None, "per_member_limit": None})
        db.session.commit()
        return reward.public_id


@pytest.fixture
def manager(console_client):
    return console_client("manager")


def stored_rewards(in_app) -> list[dict]:
    with in_app():
        return [{column.key: getattr(reward, column.key) for column in Reward.__table__.columns
                 if column.key not in ("id", "public_id", "created_at")}
                for reward in db.session.scalars(select(Reward).order_by(Reward.id))]


def offer_pk(in_app, public_id: str) -> int:
    with in_app():
        return offers.get_offer(public_id).id


# --- the list -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["admin", "manager", "support", "analyst"])
def test_every_staff_role_sees_the_catalog(console_client, reward_id, role):
    response = console_client(role).get("/console/rewards")
    assert response.status_code == 200
    rows = table_rows(response.get_data(as_text=True))
    assert rows[0][:8] == HEADER
    assert rows[1][:8] == ["Ten off for points", "1,500", "Ten off", "Active", "Unlimited", "No limit", "30 days", "0"]


@pytest.mark.parametrize(("role", "shown"), [("admin", True), ("manager", True), ("support", False),
                                             ("analyst", False)])
def test_only_program_writers_see_the_add_and_edit_links(console_client, reward_id, role, shown):
    html = console_client(role).get("/console/rewards").get_data(as_text=True)
    assert ('href="/console/rewards/new"' in html) is shown
    assert (f'href="/console/rewards/{reward_id}/edit"' in html) is shown


def test_the_catalog_is_paginated(console_client, in_app, offer_id):
    with in_app():
        for number in range(27):
            catalog.create_reward({"offer_id": offer_id, "name": f"Reward {number:02d}", "points_cost": 100})
        db.session.commit()
    client = console_client("analyst")
    first = client.get("/console/rewards").get_data(as_text=True)
    assert [row[0] for row in table_rows(first)[1:]] == [f"Reward {n:02d}" for n in range(25)]
    after = re.search(r'href="(/console/rewards\?starting_after=rwd_\w+)"', first).group(1)
    second = client.get(after).get_data(as_text=True)
    assert [row[0] for row in table_rows(second)[1:]] == ["Reward 25", "Reward 26"]


# --- adding ---------------------------------------------------------------------------------------------

def test_a_manager_adds_a_reward_and_the_catalog_shows_it(manager, in_app, offer_id):
    response = submit(manager, "/console/rewards/new", {**TEN_OFF_REWARD, "offer_id": offer_id})
    assert response.status_code == 303
    assert response.headers["Location"] == "/console/rewards"
    assert stored_rewards(in_app) == [{
        "offer_id": offer_pk(in_app, offer_id), "name": "10% off your next order", "description": None,
        "points_cost": 500, "stock": 100, "claimed": 0, "per_member_limit": 2, "coupon_valid_days": 30,
        "active": True}]
    html = manager.get("/console/rewards").get_data(as_text=True)
    assert "Reward “10% off your next order” added to the catalog." in html
    assert table_rows(html)[1][:8] == ["10% off your next order", "500", "Ten off", "Active", "100", "2", "30 days",
                                       "0"]


def test_the_new_reward_form_lists_active_offers_and_preselects_one(manager, in_app, offer_id):
    with in_app():
        offers.create_offer({"name": "Retired", "kind": "free_shipping", "active": False})
        db.session.commit()
    html = manager.get(f"/console/rewards/new?offer_id={offer_id}").get_data(as_text=True)
    assert f'<option value="{offer_id}" selected>Ten off ({offer_id})</option>' in html
    assert "Retired" not in html


def test_without_an_active_offer_the_form_asks_for_one_first(manager):
    html = manager.get("/console/rewards/new").get_data(as_text=True)
    assert 'href="/console/offers/new"' in html
    assert 'name="points_cost"' not in html


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"points_cost": "-5"}, "points_cost", "greater than or equal to 1"),
    ({"points_cost": "0"}, "points_cost", "greater than or equal to 1"),
    ({"points_cost": "lots"}, "points_cost", "Not a valid integer."),
    ({"points_cost": ""}, "points_cost", "Missing data for required field."),
    ({"stock": "-1"}, "stock", "greater than or equal to 0"),
    ({"per_member_limit": "0"}, "per_member_limit", "greater than or equal to 1"),
    ({"coupon_valid_days": "0"}, "coupon_valid_days", "greater than or equal to 1"),
    ({"coupon_valid_days": "99999"}, "coupon_valid_days", "less than or equal to 3660"),
    ({"name": ""}, "name", "Missing data for required field."),
    ({"name": "x" * 201}, "name", "Length must be between 1 and 200."),
    ({"offer_id": ""}, "offer_id", "Missing data for required field."),
], ids=["negative cost", "zero cost", "cost not a number", "no cost", "negative stock", "zero per member",
        "zero days", "too many days", "no name", "name too long", "no offer"])
def test_bad_input_is_shown_beside_its_field_and_writes_nothing(manager, offer_id, row_counts, changes, field,
                                                                 message):
    before = row_counts()
    response = submit(manager, "/console/rewards/new", {**TEN_OFF_REWARD, "offer_id": offer_id, **changes})
    assert response.status_code == 422
    error = re.search(rf'<p class="field-error" id="{field}-error">([^<]*)</p>', response.get_data(as_text=True))
    assert error and message in error.group(1)
    assert row_counts() == before


def test_an_unknown_offer_is_refused_and_writes_nothing(manager, offer_id, row_counts):
    before = row_counts()
    response = submit(manager, "/console/rewards/new", {**TEN_OFF_REWARD, "offer_id": "off_nope"})
    assert response.status_code == 404
    assert "No offer has this id." in response.get_data(as_text=True)
    assert 'name="points_cost"' in response.get_data(as_text=True)  # the form, again, to correct
    assert row_counts() == before


# --- changing -------------------------------------------------------------------------------------------

def test_the_edit_form_shows_the_rewards_values(manager, reward_id):
    html = manager.get(f"/console/rewards/{reward_id}/edit").get_data(as_text=True)
    assert 'value="Ten off for points"' in html
    assert 'value="1500"' in html
    assert re.search(r'id="active" name="active" value="true"\s+checked', html)


def test_a_manager_changes_a_reward_and_blank_inputs_clear_their_fields(manager, in_app, offer_id, reward_id):
    with in_app():
        catalog.update_reward(catalog.get_reward(reward_id), {"stock": 10, "per_member_limit": 1})
        db.session.commit()
    form = {"name": "Cheaper", "description": "", "points_cost": "900", "stock": "", "per_member_limit": "",
            "coupon_valid_days": "14", "active": "false"}
    response = submit(manager, f"/console/rewards/{reward_id}/edit", form)
    assert response.status_code == 303
    assert stored_rewards(in_app) == [{
        "offer_id": offer_pk(in_app, offer_id), "name": "Cheaper", "description": None, "points_cost": 900,
        "stock": None, "claimed": 0, "per_member_limit": None, "coupon_valid_days": 14, "active": False}]
    row = table_rows(manager.get("/console/rewards").get_data(as_text=True))[1]
    assert row[:8] == ["Cheaper", "900", "Ten off", "Inactive", "Unlimited", "No limit", "14 days", "0"]


def test_stock_below_what_was_claimed_is_refused(manager, in_app, reward_id):
    with in_app():
        reward = catalog.get_reward(reward_id)
        reward.claimed = 5
        db.session.commit()
    before = stored_rewards(in_app)
    response = submit(manager, f"/console/rewards/{reward_id}/edit",
                      {"name": "Ten off for points", "points_cost": "1500", "stock": "4", "coupon_valid_days": "30",
                       "active": ["false", "true"]})
    assert response.status_code == 422
    assert '<p class="field-error" id="stock-error">5 were claimed already.</p>' in response.get_data(as_text=True)
    assert stored_rewards(in_app) == before


def test_a_reward_cannot_move_to_another_offer(manager, in_app, reward_id):
    before = stored_rewards(in_app)
    response = submit(manager, f"/console/rewards/{reward_id}/edit", {**TEN_OFF_REWARD, "offer_id": "off_other"})
    assert response.status_code == 422
    assert stored_rewards(in_app) == before


def test_an_unknown_reward_is_a_404_page(manager):
    assert manager.get("/console/rewards/rwd_nope/edit").status_code == 404


# --- who may write --------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["analyst", "support"])
@pytest.mark.parametrize(("method", "path"), [
    ("get", "/console/rewards/new"), ("post", "/console/rewards/new"),
    ("get", "/console/rewards/{reward}/edit"), ("post", "/console/rewards/{reward}/edit")])
def test_roles_that_do_not_run_the_program_get_403_on_every_write(console_client, offer_id, reward_id, row_counts,
                                                                   role, method, path):
    client = console_client(role)
    path = path.format(reward=reward_id)
    before = row_counts()
    form = {**TEN_OFF_REWARD, "offer_id": offer_id}
    response = client.get(path) if method == "get" else submit(client, path, form)
    assert response.status_code == 403
    assert row_counts() == before


@pytest.mark.parametrize("path", ["/console/rewards/new", "/console/rewards/{reward}/edit"])
def test_a_form_without_its_csrf_token_is_refused(manager, offer_id, reward_id, in_app, row_counts, path):
    before, stored = row_counts(), stored_rewards(in_app)
    response = manager.post(path.format(reward=reward_id), data={**TEN_OFF_REWARD, "offer_id": offer_id})
    assert response.status_code == 400
    assert row_counts() == before
    assert stored_rewards(in_app) == stored


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_program_writers_open_the_forms(console_client, offer_id, reward_id, role):
    client = console_client(role)
    assert client.get("/console/rewards/new").status_code == 200
    assert client.get(f"/console/rewards/{reward_id}/edit").status_code == 200
