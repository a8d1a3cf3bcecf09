"""The console's staff pages, for admins only: list, add, change a role, deactivate and reactivate. An admin cannot
demote or deactivate themselves, so the console always keeps an admin."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from loyalty.auth.models import StaffUser
from loyalty.extensions import db
from tests.conftest import PASSWORD, csrf_token, submit, unique_email

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def admin(console_client, stop_clock):
    stop_clock(T0)
    return console_client("admin")


def _staff(in_app, public_id: str) -> StaffUser:
    with in_app():
        staff = db.session.scalar(select(StaffUser).where(StaffUser.public_id == public_id))
        db.session.expunge(staff)
        return staff


def _by_email(in_app, email: str) -> StaffUser | None:
    with in_app():
        staff = db.session.scalar(select(StaffUser).where(StaffUser.email == email))
        if staff is not None:
            db.session.expunge(staff)
        return staff


def _sign_in(app, email: str, password: str = PASSWORD):
    client = app.test_client()
    response = client.post("/console/login", data={"email": email, "password": password,
                                                   "csrf_token": csrf_token(client, "/console/login")})
    return client, response


def _text(response) -> str:
    return response.get_data(as_text=True)


# --- The list ------------------------------------------------------------------------------------------------------

def test_the_list_shows_email_name_role_active_and_last_sign_in(admin, make_staff, in_app):
    analyst = make_staff("analyst", email="ana@example.test")
    with in_app():
        staff = db.session.scalar(select(StaffUser).where(StaffUser.public_id == analyst["id"]))
        staff.name, staff.active = "Ana Lyst", False
        db.session.commit()

    page = _text(admin.get("/console/staff"))

    assert ">ana@example.test</a>" in page and "<td>Ana Lyst</td>" in page and "<td>Analyst</td>" in page
    assert f">{admin.staff['email']}</a>" in page and "(you)" in page and "<td>Admin</td>" in page
    assert page.count('"badge badge-danger">Deactivated<') == 1 and page.count('"badge badge-ok">Active<') == 1
    assert page.count("<td>2026-03-02 09:00 UTC</td>") == 1  # the admin signed in; the analyst never did


def test_the_list_shows_25_a_page_with_a_link_to_the_next(admin, make_staff):
    ids = [make_staff("support")["id"] for _ in range(25)]  # with the admin: 26

    first = _text(admin.get("/console/staff"))
    second = _text(admin.get(f"/console/staff?starting_after={ids[23]}"))

    assert first.count('href="/console/staff/stf_') == 25 and f"starting_after={ids[23]}" in first
    assert second.count('href="/console/staff/stf_') == 1 and ids[24] in second


# --- Adding a staff user -------------------------------------------------------------------------------------------

def test_the_new_staff_form_offers_every_role_and_asks_for_8_characters(admin):
    page = _text(admin.get("/console/staff/new"))

    for role in ("admin", "manager", "support", "analyst"):
        assert f'<option value="{role}"' in page
    assert 'minlength="8"' in page and "At least 8 characters." in page


def test_adding_a_staff_user_who_can_then_sign_in(admin, app, in_app):
    response = submit(admin, "/console/staff/new", {"email": "sam@example.test", "name": "Sam", "role": "manager",
                                                    "password": PASSWORD})

    staff = _by_email(in_app, "sam@example.test")
    assert (response.status_code, response.location) == (303, f"/console/staff/{staff.public_id}")
    assert (staff.name, staff.role, staff.active) == ("Sam", "manager", True)
    assert PASSWORD not in staff.password_hash
    assert "Staff user sam@example.test created as manager" in _text(admin.get(response.location))
    assert _sign_in(app, "sam@example.test")[1].status_code == 302


@pytest.mark.parametrize(("form", "field", "message"), [
    pytest.param({"password": "short"}, "password", "Length must be between 8 and 128.", id="short password"),
    pytest.param({"password": ""}, "password", "Missing data for required field.", id="no password"),
    pytest.param({"email": "not an email"}, "email", "Not a valid email address.", id="bad email"),
    pytest.param({"email": ""}, "email", "Missing data for required field.", id="no email"),
    pytest.param({"role": "owner"}, "role", "Must be one of: admin, manager, support, analyst.", id="unknown role"),
    pytest.param({"name": "n" * 201}, "name", "Length must be between 1 and 200.", id="name too long"),
])
def test_bad_input_is_422_inline_and_writes_nothing(form, field, message, admin, row_counts):
    before = row_counts()
    data = {"email": "sam@example.test", "name": "Sam", "role": "support", "password": PASSWORD, **form}

    response = submit(admin, "/console/staff/new", data)

    assert response.status_code == 422
    assert f'<p class="field-error" id="{field}-error">{message}</p>' in _text(response)
    assert row_counts() == before


def test_a_refused_form_keeps_what_was_typed_but_never_the_password(admin):
    response = submit(admin, "/console/staff/new", {"email": "sam@example.test", "name": "Sam", "role": "analyst",
                                                    "password": "tiny-pw"})

    page = _text(response)
    assert 'value="sam@example.test"' in page and 'value="Sam"' in page
    assert '<option value="analyst" selected>' in page
    assert "tiny-pw" not in page


def test_an_email_already_in_use_whatever_its_case_is_409_inline_and_writes_nothing(admin, make_staff, row_counts):
    make_staff("support", email="sam@example.test")
    before = row_counts()

    response = submit(admin, "/console/staff/new", {"email": "SAM@example.test", "role": "analyst",
                                                    "password": PASSWORD})

    assert response.status_code == 409
    assert '<p class="field-error" id="email-error">Already registered.</p>' in _text(response)
    assert "A staff user with this email already exists." in _text(response)
    assert row_counts() == before


# --- A staff user's page: role and access --------------------------------------------------------------------------

def test_a_staff_users_page_shows_them_with_the_role_and_access_forms(admin, make_staff):
    support = make_staff("support")

    page = _text(admin.get(f"/console/staff/{support['id']}"))

    assert support["email"] in page and "<dd>Support</dd>" in page
    assert '<option value="support" selected>' in page and "Change the role" in page
    assert f"Deactivate {support['email']}" in page


def test_an_admins_own_page_offers_no_demotion_or_deactivation(admin):
    page = _text(admin.get(f"/console/staff/{admin.staff['id']}"))

    assert "You cannot change your own role" in page and "You cannot deactivate your own account" in page
    assert "Change the role" not in page and "Deactivate " not in page


def test_changing_a_role(admin, make_staff, in_app, app):
    support = make_staff("support")

    response = submit(admin, f"/console/staff/{support['id']}/role", {"role": "manager"})

    assert (response.status_code, response.location) == (303, f"/console/staff/{support['id']}")
    assert _staff(in_app, support["id"]).role == "manager"
    assert f"{support['email']} is now manager." in _text(admin.get(response.location))


def test_an_unknown_role_is_422_inline_and_changes_nothing(admin, make_staff, in_app):
    support = make_staff("support")

    response = submit(admin, f"/console/staff/{support['id']}/role", {"role": "owner"})

    assert response.status_code == 422
    assert '<p class="field-error" id="role-error">Must be one of: admin, manager, support, analyst.</p>' in _text(
        response)
    assert _staff(in_app, support["id"]).role == "support"


def test_an_admin_cannot_demote_themselves(admin, in_app):
    response = submit(admin, f"/console/staff/{admin.staff['id']}/role", {"role": "analyst"})

    assert response.status_code == 409
    assert "You cannot change your own role: ask another admin" in _text(response)
    assert _staff(in_app, admin.staff["id"]).role == "admin"


def test_an_admin_can_demote_another_admin(admin, make_staff, in_app):
    other = make_staff("admin")

    assert submit(admin, f"/console/staff/{other['id']}/role", {"role": "support"}).status_code == 303
    assert _staff(in_app, other["id"]).role == "support"


def test_an_admin_cannot_deactivate_themselves(admin, in_app):
    response = submit(admin, f"/console/staff/{admin.staff['id']}/deactivate")

    assert response.status_code == 409
    assert "You cannot deactivate your own account: ask another admin" in _text(response)
    assert _staff(in_app, admin.staff["id"]).active is True
    assert admin.get("/console/staff").status_code == 200


def test_a_deactivated_staff_user_cannot_sign_in(admin, make_staff, in_app, app):
    support = make_staff("support")

    response = submit(admin, f"/console/staff/{support['id']}/deactivate")

    assert (response.status_code, response.location) == (303, f"/console/staff/{support['id']}")
    assert _staff(in_app, support["id"]).active is False
    assert "is deactivated: they can no longer sign in." in _text(admin.get(response.location))
    assert _sign_in(app, support["email"])[1].status_code == 401


def test_a_deactivated_staff_users_open_session_is_sent_to_sign_in(admin, console_client):
    support = console_client("support")
    assert support.get("/console/").status_code == 200

    submit(admin, f"/console/staff/{support.staff['id']}/deactivate")

    response = support.get("/console/")
    assert (response.status_code, response.location) == (302, "/console/login?next=/console/")


def test_a_reactivated_staff_user_can_sign_in_again(admin, make_staff, in_app, app):
    support = make_staff("support")
    submit(admin, f"/console/staff/{support['id']}/deactivate")

    response = submit(admin, f"/console/staff/{support['id']}/reactivate")

    assert (response.status_code, response.location) == (303, f"/console/staff/{support['id']}")
    assert _staff(in_app, support["id"]).active is True
    assert _sign_in(app, support["email"])[1].status_code == 302


def test_an_unknown_staff_user_is_a_404_page(admin):
    assert admin.get("/console/staff/stf_nope").status_code == 404
    for action in ("role", "deactivate", "reactivate"):
        assert submit(admin, f"/console/staff/stf_nope/{action}", {"role": "support"}).status_code == 404


# --- Admins only, and CSRF -----------------------------------------------------------------------------------------

def _posts(target: str) -> list[tuple[str, dict]]:
    return [("/console/staff/new", {"email": unique_email(), "role": "admin", "password": PASSWORD}),
            (f"/console/staff/{target}/role", {"role": "admin"}),
            (f"/console/staff/{target}/deactivate", {}),
            (f"/console/staff/{target}/reactivate", {})]


def test_every_page_renders_for_an_admin(admin, make_staff):
    target = make_staff("support")["id"]
    for path in ("/console/staff", "/console/staff/new", f"/console/staff/{target}"):
        assert admin.get(path).status_code == 200, path


@pytest.mark.parametrize("role", ["analyst", "support", "manager"])
def test_every_page_is_403_for_other_roles(role, console_client, make_staff):
    client = console_client(role)
    target = make_staff("support")["id"]

    answered = {path: client.get(path).status_code
                for path in ("/console/staff", "/console/staff/new", f"/console/staff/{target}")}

    assert set(answered.values()) == {403}, answered


@pytest.mark.parametrize("role", ["analyst", "support", "manager"])
def test_every_form_action_is_403_for_other_roles_and_changes_nothing(role, console_client, make_staff, in_app,
                                                                      row_counts):
    client = console_client(role)
    target = make_staff("support")["id"]
    before = row_counts()

    answered = {path: submit(client, path, data).status_code for path, data in _posts(target)}
    answered[f"own role {role}"] = submit(client, f"/console/staff/{client.staff['id']}/role",
                                          {"role": "admin"}).status_code

    assert set(answered.values()) == {403}, answered
    assert row_counts() == before
    assert (_staff(in_app, target).role, _staff(in_app, target).active) == ("support", True)
    assert _staff(in_app, client.staff["id"]).role == role


def test_every_form_action_without_the_csrf_token_is_400_and_changes_nothing(admin, make_staff, in_app, row_counts):
    target = make_staff("support")["id"]
    before = row_counts()

    answered = {path: admin.post(path, data=data).status_code for path, data in _posts(target)}

    assert set(answered.values()) == {400}, answered
    assert row_counts() == before
    assert (_staff(in_app, target).role, _staff(in_app, target).active) == ("support", True)
