"""A member's data from the console and from their own privacy page: consent, the export, erasure."""

from __future__ import annotations

import json

from sqlalchemy import select

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.members.models import MemberConsent
from tests.conftest import PASSWORD, submit


def give(in_app, member_id: str, points: int) -> None:
    with in_app():
        internal = members.get_member(member_id).id
        ledger.adjust(internal, points, reason="Gift", reference=f"gift:{member_id}", now=now())
        db.session.commit()


def state(in_app, member_id: str) -> tuple[str, str | None, int]:
    with in_app():
        member = members.get_member(member_id)
        return member.status, member.email, ledger.balances(member.id).available


def answers(in_app, member_id: str) -> list[tuple[str, bool, str]]:
    with in_app():
        internal = members.get_member(member_id).id
        return [(row.purpose, row.granted, row.source) for row in db.session.scalars(
            select(MemberConsent).where(MemberConsent.member_id == internal).order_by(MemberConsent.id))]


def test_support_downloads_everything_held_on_a_member(console_client, make_member):
    member = make_member(name="Ada Lovelace")
    response = console_client("support").get(f"/console/members/{member['id']}/export.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"].startswith(f'attachment; filename="loyalty-export-{member["id"]}-')
    assert json.loads(response.get_data())["member"]["email"] == member["email"]


def test_erasing_from_the_console_needs_the_member_id_typed_again(console_client, make_member, in_app, row_counts):
    member = make_member()
    client = console_client("support")
    before = row_counts()
    response = submit(client, f"/console/members/{member['id']}/erase", {"confirm": "yes"})
    assert response.status_code == 422
    assert f"Type {member['id']} to confirm." in response.get_data(as_text=True)
    assert row_counts() == before
    assert state(in_app, member["id"])[:2] == ("active", member["email"])


def test_support_erases_a_member_who_asked_and_their_points_are_forfeited(console_client, make_member, in_app):
    member = make_member()
    give(in_app, member["id"], 300)
    response = submit(console_client("support"), f"/console/members/{member['id']}/erase", {"confirm": member["id"]})
    assert (response.status_code, response.location) == (303, f"/console/members/{member['id']}")
    assert state(in_app, member["id"]) == ("erased", None, 0)


def test_a_member_sees_and_changes_what_they_agreed_to(account_client, in_app):
    client = account_client()
    page = client.get("/account/privacy").get_data(as_text=True)
    assert "Emails about offers and my points" in page
    response = submit(client, "/account/privacy/consents", {"granted": ["sms"]}, page="/account/privacy")
    assert (response.status_code, response.location) == (303, "/account/privacy")
    recorded = answers(in_app, client.member["id"])
    assert ("sms", True, "member") in recorded
    assert ("marketing_email", False, "member") in recorded


def test_saving_the_same_choices_again_records_nothing(account_client, in_app):
    client = account_client()
    submit(client, "/account/privacy/consents", {"granted": ["sms"]}, page="/account/privacy")
    recorded = answers(in_app, client.member["id"])
    submit(client, "/account/privacy/consents", {"granted": ["sms"]}, page="/account/privacy")
    assert answers(in_app, client.member["id"]) == recorded


def test_a_member_downloads_their_own_data(account_client):
    client = account_client()
    response = client.get("/account/privacy/export.json")
    assert response.status_code == 200
    assert json.loads(response.get_data())["member"]["id"] == client.member["id"]


def test_a_wrong_password_erases_nothing(account_client, in_app, row_counts):
    client = account_client()
    before = row_counts()
    response = submit(client, "/account/privacy/erase", {"password": "not it"}, page="/account/privacy")
    assert response.status_code == 422
    assert "The password is wrong." in response.get_data(as_text=True)
    assert row_counts() == before
    assert state(in_app, client.member["id"])[0] == "active"


def test_wrong_passwords_on_the_erasure_page_run_out_like_failed_sign_ins(account_client, in_app,
                                                                        tight_login_limits):
    client = account_client()
    for _ in range(3):
        submit(client, "/account/privacy/erase", {"password": "not it"}, page="/account/privacy")

    response = submit(client, "/account/privacy/erase", {"password": PASSWORD}, page="/account/privacy")

    assert response.status_code == 429
    assert state(in_app, client.member["id"])[0] == "active"


def test_a_member_erases_their_account_and_is_signed_out(account_client, in_app):
    client = account_client()
    give(in_app, client.member["id"], 120)
    response = submit(client, "/account/privacy/erase", {"password": PASSWORD}, page="/account/privacy")
    assert (response.status_code, response.location) == (303, "/account/login")
    assert state(in_app, client.member["id"]) == ("erased", None, 0)
    assert client.get("/account/").status_code == 302


def test_erasure_pages_are_not_for_analysts(console_client, make_member):
    member = make_member()
    client = console_client("analyst")
    assert client.get(f"/console/members/{member['id']}/export.json").status_code == 403
    assert submit(client, f"/console/members/{member['id']}/erase", {"confirm": member["id"]}).status_code == 403
