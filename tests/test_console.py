"""The console's and account pages' shared behaviour: sign-in, CSRF, roles, error pages, headers."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from loyalty.auth.models import StaffUser
from loyalty.console.access import READERS
from loyalty.console.charts import bar_chart
from loyalty.extensions import db
from tests.conftest import PASSWORD, csrf_token, submit

SIGN_IN_AND_OUT = {"console.login", "console.logout", "console.static"}


def _console_rules(app):
    return [rule for rule in app.url_map.iter_rules()
            if rule.endpoint.startswith("console.") and rule.endpoint not in SIGN_IN_AND_OUT]


def _sample_path(rule) -> str:
    return rule.build({name: "1" for name in rule.arguments}, append_unknown=False)[1]


def _sign_in(client, email: str, password: str, **fields: str):
    token = csrf_token(client, "/console/login")
    return client.post("/console/login", data={"email": email, "password": password, "csrf_token": token, **fields})


def test_an_anonymous_visitor_is_sent_to_the_login_page_and_back(client):
    response = client.get("/console/members?q=ada")
    assert response.status_code == 302
    assert response.location == "/console/login?next=/console/members?q%3Dada"


def test_staff_sign_in_lands_on_the_page_they_asked_for(client, make_staff):
    staff = make_staff("support")
    response = _sign_in(client, staff["email"], PASSWORD, next="/console/members")
    assert (response.status_code, response.location) == (302, "/console/members")
    assert client.get("/console/").status_code == 200


@pytest.mark.parametrize("target", ["https://evil.test/console/", "//evil.test/console/", "/v1/me", "/console\\@evil"])
def test_sign_in_never_redirects_off_the_console(client, make_staff, target):
    staff = make_staff("support")
    response = _sign_in(client, staff["email"], PASSWORD, next=target)
    assert (response.status_code, response.location) == (302, "/console/")


def test_a_wrong_password_shows_the_form_again_with_401(client, make_staff):
    staff = make_staff("admin")
    response = _sign_in(client, staff["email"], "nope")
    assert response.status_code == 401
    assert "The email or password is wrong." in response.get_data(as_text=True)
    assert client.get("/console/").status_code == 302


def test_sign_in_without_the_csrf_token_is_refused_and_records_nothing(client, make_staff, in_app):
    staff = make_staff("admin")
    response = client.post("/console/login", data={"email": staff["email"], "password": PASSWORD})
    assert response.status_code == 400
    assert response.mimetype == "text/html"
    assert "This form has expired" in response.get_data(as_text=True)
    with in_app():
        assert db.session.scalar(select(StaffUser.last_login_at).where(StaffUser.public_id == staff["id"])) is None


def test_failed_console_sign_ins_are_throttled_per_account_with_the_apis_budget(client, make_staff,
                                                                               tight_login_limits):
    staff = make_staff("admin")
    client.post("/v1/auth/staff/login", json={"email": staff["email"], "password": "wrong"})
    for _ in range(2):
        assert _sign_in(client, staff["email"].upper(), "wrong").status_code == 401
    response = _sign_in(client, staff["email"], PASSWORD)
    assert response.status_code == 429
    assert response.mimetype == "text/html"


def test_successful_console_sign_ins_do_not_count(client, make_staff, tight_login_limits):
    staff = make_staff("admin")
    for _ in range(6):
        assert _sign_in(client, staff["email"], PASSWORD).status_code == 302
        submit(client, "/console/logout")


def test_member_credentials_do_not_open_the_console(client, make_member):
    member = make_member()
    response = _sign_in(client, member["email"], PASSWORD)
    assert response.status_code == 401


def test_a_signed_in_member_gets_403_on_the_console(account_client):
    client = account_client()
    response = client.get("/console/")
    assert response.status_code == 403
    assert "This page is for staff" in response.get_data(as_text=True)


def test_sign_out_ends_the_session(console_client):
    client = console_client("analyst")
    response = submit(client, "/console/logout")
    assert (response.status_code, response.location) == (302, "/console/login")
    assert client.get("/console/").status_code == 302


def test_sign_out_without_the_csrf_token_keeps_the_session(console_client):
    client = console_client("analyst")
    assert client.post("/console/logout").status_code == 400
    assert client.get("/console/").status_code == 200


@pytest.mark.parametrize("role", READERS)
def test_every_role_sees_the_dashboard_and_only_its_own_areas(console_client, role):
    page = console_client(role).get("/console/").get_data(as_text=True)
    assert ('href="/console/webhooks"' in page) == (role == "admin")
    assert 'href="/console/members"' in page


def test_every_console_page_is_guarded_by_a_role(app):
    unguarded = [rule.endpoint for rule in _console_rules(app)
                 if not hasattr(app.view_functions[rule.endpoint], "console_roles")]
    assert unguarded == []


def test_no_form_action_is_open_to_analysts(app):
    open_writes = [rule.endpoint for rule in _console_rules(app)
                   if "POST" in rule.methods and "analyst" in app.view_functions[rule.endpoint].console_roles]
    assert open_writes == []


def test_an_analyst_gets_403_on_every_write_page_and_form_action(app, console_client, row_counts):
    client = console_client("analyst")
    token = csrf_token(client)
    before = row_counts()
    answered = {}
    for rule in _console_rules(app):
        if "analyst" in app.view_functions[rule.endpoint].console_roles:
            continue
        path = _sample_path(rule)
        for method in sorted(rule.methods & {"GET", "POST"}):
            response = client.open(path, method=method, data={"csrf_token": token} if method == "POST" else None)
            answered[f"{method} {path}"] = response.status_code
    assert answered and set(answered.values()) == {403}, answered
    assert row_counts() == before


def test_a_missing_page_is_a_friendly_404(console_client):
    response = console_client("analyst").get("/console/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "There is nothing at this address." in response.get_data(as_text=True)


def test_the_api_still_answers_problem_json_for_missing_paths(client):
    assert client.get("/v1/no-such-thing").mimetype == "application/problem+json"


def test_pages_forbid_foreign_scripts_framing_and_caching(console_client):
    response = console_client("analyst").get("/console/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"


def test_the_session_cookie_is_http_only_and_same_site(client, make_staff):
    staff = make_staff("admin")
    response = _sign_in(client, staff["email"], PASSWORD)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_the_stylesheet_is_served_without_signing_in(client):
    response = client.get("/console/static/console.css")
    assert response.status_code == 200
    assert response.mimetype == "text/css"


def test_a_chart_scales_bars_to_the_largest_value():
    chart = bar_chart(["Mon", "Tue"], {"issued": [50, 100], "redeemed": [0, 25]})
    heights = [(bar.series, bar.height) for bar in chart.bars]
    assert heights == [(0, 100.0), (1, 0.0), (0, 200.0), (1, 50.0)]
    assert [row.values for row in chart.rows] == [(50, 0), (100, 25)]
    assert chart.legend == ("issued", "redeemed")


def test_a_chart_of_nothing_draws_flat_bars():
    chart = bar_chart(["Mon"], {"issued": [0]})
    assert [bar.height for bar in chart.bars] == [0.0]
