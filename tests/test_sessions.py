"""Sessions end on the server (`loyalty.auth.sessions`): a copy of the session cookie saved before signing out, erasure,
suspension or deactivation no longer signs anyone in."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from loyalty.auth import service as auth
from loyalty.auth.sessions import end_sessions
from loyalty.extensions import db
from loyalty.members import service as members
from tests.conftest import PASSWORD, assert_problem, csrf_token

COOKIE = "loyalty_session"


def saved_cookie(client: FlaskClient) -> str:
    return client.get_cookie(COOKIE).value


def replay(app: Flask, cookie: str) -> FlaskClient:
    """Another client, presenting a saved copy of a session cookie."""
    thief = app.test_client()
    thief.set_cookie(COOKIE, cookie)
    return thief


def member_session(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    assert client.post("/v1/auth/login", json={"email": email, "password": PASSWORD}).status_code == 200
    return client


def staff_session(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    assert client.post("/v1/auth/staff/login", json={"email": email, "password": PASSWORD}).status_code == 200
    return client


@pytest.fixture
def member(make_member) -> dict:
    return make_member()


def test_a_member_cookie_saved_before_logout_no_longer_signs_in(app, member):
    client = member_session(app, member["email"])
    cookie = saved_cookie(client)

    assert client.post("/v1/auth/logout").status_code == 204

    assert_problem(replay(app, cookie).get("/v1/me"), 401, "unauthenticated")


def test_a_staff_cookie_saved_before_logout_no_longer_signs_in(app, make_staff):
    client = staff_session(app, make_staff("admin")["email"])
    cookie = saved_cookie(client)

    assert client.post("/v1/auth/logout").status_code == 204

    assert_problem(replay(app, cookie).get("/v1/admin/staff"), 401, "unauthenticated")


def test_logout_ends_the_members_sessions_on_every_device(app, member):
    laptop, phone = member_session(app, member["email"]), member_session(app, member["email"])

    laptop.post("/v1/auth/logout")

    assert_problem(phone.get("/v1/me"), 401, "unauthenticated")


def test_a_member_signs_in_again_after_logging_out(app, member):
    member_session(app, member["email"]).post("/v1/auth/logout")

    assert member_session(app, member["email"]).get("/v1/me").status_code == 200


def test_signing_out_of_the_console_ends_a_saved_copy_of_its_cookie(app, console_client):
    client = console_client("admin")
    cookie = saved_cookie(client)

    client.post("/console/logout", data={"csrf_token": csrf_token(client)})

    assert replay(app, cookie).get("/console/").status_code == 302  # to the login page


def test_signing_out_of_the_account_pages_ends_a_saved_copy_of_their_cookie(app, account_client):
    client = account_client()
    cookie = saved_cookie(client)

    client.post("/account/logout", data={"csrf_token": csrf_token(client, "/account/")})

    assert replay(app, cookie).get("/account/").status_code == 302


def test_suspending_a_member_ends_their_sessions_and_they_may_sign_in_again(app, member, staff_client):
    phone = member_session(app, member["email"])

    assert staff_client("support").post(f"/v1/admin/members/{member['id']}/suspend").status_code == 200

    assert_problem(phone.get("/v1/me"), 401, "unauthenticated")
    assert member_session(app, member["email"]).get("/v1/me").get_json()["status"] == "suspended"


def test_reinstating_a_member_leaves_their_sessions_open(app, member, staff_client, in_app):
    with in_app():
        members.set_status(members.get_member(member["id"]), "suspended")
        db.session.commit()
    phone = member_session(app, member["email"])

    staff_client("support").post(f"/v1/admin/members/{member['id']}/reinstate")

    assert phone.get("/v1/me").get_json()["status"] == "active"


def test_deactivating_a_staff_user_ends_their_sessions(app, make_staff, in_app):
    admin, analyst = make_staff("admin"), make_staff("analyst")
    session = staff_session(app, analyst["email"])

    with in_app():
        auth.set_staff_active(auth.find_staff_by_email(analyst["email"]), False,
                              by=auth.find_staff_by_email(admin["email"]))
        db.session.commit()

    assert_problem(session.get("/v1/admin/reports/liability"), 401, "unauthenticated")


def test_ending_a_members_sessions_ends_every_one_of_them(app, member, in_app):
    """What a password change calls."""
    laptop, phone = member_session(app, member["email"]), member_session(app, member["email"])

    with in_app():
        end_sessions(members.get_member(member["id"]))
        db.session.commit()

    assert_problem(laptop.get("/v1/me"), 401, "unauthenticated")
    assert_problem(phone.get("/v1/me"), 401, "unauthenticated")


def test_a_session_from_before_session_keys_is_refused(app, member):
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = f"member:{member['id']}"

    assert_problem(client.get("/v1/me"), 401, "unauthenticated")


def test_a_session_with_another_key_is_refused(app, member):
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = f"member:{member['id']}:{'k' * 32}"

    assert_problem(client.get("/v1/me"), 401, "unauthenticated")


@pytest.mark.parametrize("area", ["console", "account"])
def test_signing_in_starts_a_new_session_so_a_form_token_from_before_no_longer_works(app, member, make_staff, area):
    """A token someone read from a session they planted before the sign-in cannot post forms after it."""
    email = make_staff("admin")["email"] if area == "console" else member["email"]
    client = app.test_client()
    planted = csrf_token(client, f"/{area}/login")
    assert client.post(f"/{area}/login", data={"email": email, "password": PASSWORD,
                                               "csrf_token": planted}).status_code == 302

    assert client.post(f"/{area}/logout", data={"csrf_token": planted}).status_code == 400
    assert client.get(f"/{area}/").status_code == 200


def test_signing_in_through_the_api_starts_a_new_session(app, member):
    client = app.test_client()
    planted = csrf_token(client, "/account/login")
    assert client.post("/v1/auth/login", json={"email": member["email"], "password": PASSWORD}).status_code == 200

    assert client.post("/account/logout", data={"csrf_token": planted}).status_code == 400
    assert client.get("/v1/me").status_code == 200
