"""Cross-site writes refused (`loyalty.auth.cross_site`): a write made with a session cookie must come from the app's
own origin (or a configured one) and be sent as JSON, which an HTML form on another site cannot do. API keys are
left alone."""

from __future__ import annotations

import pytest

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from tests.conftest import assert_problem, bearer

EVIL = "https://evil.example"
OWN = "http://localhost"
# What a browser sends for `<form method="post" action="https://loyalty.../suspend">` on another site's page.
FORM_POST = {"content_type": "application/x-www-form-urlencoded",
             "headers": {"Origin": EVIL, "Sec-Fetch-Site": "cross-site"}}
TEN_OFF = {"name": "Ten percent", "kind": "percent_off", "percent": 10}


@pytest.fixture
def member_id(make_member) -> str:
    return make_member()["id"]


@pytest.fixture
def support(staff_client):
    return staff_client("support")


@pytest.fixture
def rich_member(member_client, in_app):
    """A signed-in member holding 1,000 points."""
    client, member = member_client()
    with in_app():
        ledger.adjust(members.get_member(member["id"]).id, 1000, reason="Test",
                      reference=f"seed:{member['id']}", now=now())
        db.session.commit()
    return client, member


@pytest.fixture
def reward_id(staff_client) -> str:
    manager = staff_client("manager")
    offer_id = manager.post("/v1/admin/offers", json=TEN_OFF).get_json()["id"]
    return manager.post("/v1/admin/rewards", json={"offer_id": offer_id, "name": "10% off",
                                                   "points_cost": 1000}).get_json()["id"]


def status_of(in_app, member_id: str) -> str:
    with in_app():
        return members.get_member(member_id).status


def test_a_form_post_from_another_site_cannot_suspend_a_member_with_a_support_session(support, member_id, in_app,
                                                                                      row_counts):
    before = row_counts()

    response = support.post(f"/v1/admin/members/{member_id}/suspend", **FORM_POST)

    assert_problem(response, 403, "csrf_failed")
    assert status_of(in_app, member_id) == "active"
    assert row_counts() == before


def test_a_form_post_from_another_site_cannot_claim_a_reward_with_a_member_session(rich_member, reward_id,
                                                                                   row_counts):
    client, _ = rich_member
    before = row_counts()

    response = client.post(f"/v1/me/rewards/{reward_id}/claim", **FORM_POST)

    assert_problem(response, 403, "csrf_failed")
    assert client.get("/v1/me").get_json()["points"]["available"] == 1000
    assert row_counts() == before


def test_json_from_another_origin_is_refused(support, member_id, in_app):
    response = support.post(f"/v1/admin/members/{member_id}/suspend", json={}, headers={"Origin": EVIL})

    assert_problem(response, 403, "csrf_failed")
    assert status_of(in_app, member_id) == "active"


def test_a_cross_site_fetch_without_an_origin_is_refused(support, member_id, in_app):
    response = support.post(f"/v1/admin/members/{member_id}/suspend", json={}, headers={"Sec-Fetch-Site": "cross-site"})

    assert_problem(response, 403, "csrf_failed")
    assert status_of(in_app, member_id) == "active"


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "text/plain"])
def test_a_bodyless_session_write_that_is_not_json_is_refused_even_from_the_own_origin(support, member_id, in_app,
                                                                                        content_type):
    response = support.post(f"/v1/admin/members/{member_id}/suspend", content_type=content_type,
                            headers={"Origin": OWN})

    assert_problem(response, 403, "csrf_failed")
    assert status_of(in_app, member_id) == "active"


def test_a_same_origin_json_write_with_a_session_works(support, member_id, in_app):
    response = support.post(f"/v1/admin/members/{member_id}/suspend", content_type="application/json",
                            headers={"Origin": OWN, "Sec-Fetch-Site": "same-origin"})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert status_of(in_app, member_id) == "suspended"


def test_a_same_origin_json_claim_with_a_member_session_works(rich_member, reward_id):
    client, _ = rich_member

    response = client.post(f"/v1/me/rewards/{reward_id}/claim", content_type="application/json",
                           headers={"Origin": OWN, "Sec-Fetch-Site": "same-origin"})

    assert response.status_code == 201, response.get_data(as_text=True)
    assert client.get("/v1/me").get_json()["points"]["available"] == 0


@pytest.mark.parametrize("configured", [["https://shop.example"], "https://other.example, https://shop.example"])
def test_a_configured_origin_may_write_with_a_session(app, support, member_id, in_app, configured):
    app.config["ALLOWED_ORIGINS"] = configured
    try:
        response = support.post(f"/v1/admin/members/{member_id}/suspend", json={},
                                headers={"Origin": "https://shop.example", "Sec-Fetch-Site": "cross-site"})
    finally:
        app.config["ALLOWED_ORIGINS"] = []

    assert response.status_code == 200, response.get_data(as_text=True)
    assert status_of(in_app, member_id) == "suspended"


def test_an_api_key_is_not_asked_where_it_came_from(client, make_api_key, member_id, in_app):
    response = client.post(f"/v1/admin/members/{member_id}/suspend", content_type="text/plain",
                           headers={**bearer(make_api_key("admin")), "Origin": EVIL})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert status_of(in_app, member_id) == "suspended"


def test_a_refused_cross_site_logout_leaves_the_session_open(support):
    assert_problem(support.post("/v1/auth/logout", **FORM_POST), 403, "csrf_failed")
    assert support.get("/v1/admin/members").status_code == 200


def test_basic_credentials_a_browser_adds_by_itself_do_not_pass_for_an_api_key(support):
    """A browser sends cached `Authorization: Basic` (a proxy's password prompt) with another site's form post too."""
    response = support.post("/v1/auth/logout", content_type="application/x-www-form-urlencoded",
                            headers={**FORM_POST["headers"], "Authorization": "Basic c3RhZ2luZzpzdGFnaW5n"})

    assert_problem(response, 403, "csrf_failed")
    assert support.get("/v1/admin/members").status_code == 200
