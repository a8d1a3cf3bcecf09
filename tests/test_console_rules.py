"""The console's rules pages: versions, the JSON and structured editors, simulation, impact and publishing."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.rules import service as rules
from loyalty.rules.models import RuleVersion
from tests.conftest import bearer, publish_rules, submit, unique_email

BASE = {"earn": {"rates": {"usd": "1"}, "pending_days": 14}, "redeem": {"point_values": {"usd": "0.01"}}}
SHOES = {"earn": {"rates": {"usd": "2"}, "pending_days": 14,
                  "multipliers": [{"id": "shoes", "categories": ["shoes"], "multiplier": "3"}]}}
# 2 x 19.99 of apparel and 1 x 50.00 of shoes, at 2 points per USD with shoes at x3:
# base floor(89.98 x 2) = 179; the shoes' multiplier adds (3 - 1) x 50.00 x 2 = 200; 379 in all.
SAMPLE = {"order.currency": "usd",
          "order.lines.0.sku": "TEE", "order.lines.0.category": "apparel", "order.lines.0.quantity": "2",
          "order.lines.0.unit_amount": "1999",
          "order.lines.1.sku": "SHOE", "order.lines.1.category": "shoes", "order.lines.1.quantity": "1",
          "order.lines.1.unit_amount": "5000"}
WRITERS, OTHERS = ["admin", "manager"], ["support", "analyst"]


@pytest.fixture
def draft(in_app):
    """A draft of SHOES, version 1 unless something came first; answers its number."""

    def make(document: dict = SHOES, note: str | None = "Shoes triple") -> int:
        with in_app():
            version = rules.create_draft(document, note=note, staff_id=None).version
            db.session.commit()
            return version

    return make


@pytest.fixture
def published(in_app):
    def make(document: dict = BASE) -> int:
        with in_app():
            return publish_rules(document)

    return make


def stored(in_app, version: int) -> dict:
    with in_app():
        row = db.session.scalar(select(RuleVersion).where(RuleVersion.version == version))
        return {"status": row.status, "note": row.note, "document": row.document,
                "effective_from": row.effective_from, "created_by_id": row.created_by_id}


def version_numbers(in_app) -> list[int]:
    with in_app():
        return list(db.session.scalars(select(RuleVersion.version).order_by(RuleVersion.version)))


def html_of(response) -> str:
    return response.get_data(as_text=True)


# --- the list -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", WRITERS + OTHERS)
def test_every_staff_role_sees_the_versions(console_client, published, draft, role):
    published()
    draft(note="Shoes triple")
    page = console_client(role).get("/console/rules")
    html = html_of(page)
    assert page.status_code == 200
    assert "<h1>Rules</h1>" in html
    newest, oldest = html.split("Version 2</a>")[1].split("</tr>")[0], html.split("Version 1</a>")[1].split("</tr>")[0]
    assert "draft" in newest and "Shoes triple" in newest and "in force" not in newest
    assert "published" in oldest and "in force" in oldest
    assert ('href="/console/rules/new"' in html) is (role in WRITERS)


def test_the_versions_are_paginated_newest_first(console_client, draft):
    for _ in range(26):
        draft()
    analyst = console_client("analyst")
    first = html_of(analyst.get("/console/rules"))
    assert "Version 26</a>" in first and "Version 2</a>" in first and "Version 1</a>" not in first
    assert 'href="/console/rules?starting_after=2"' in first
    second = html_of(analyst.get("/console/rules?starting_after=2"))
    assert "Version 1</a>" in second and "Version 2</a>" not in second


def test_a_cursor_that_is_not_a_version_is_refused(console_client):
    response = console_client("analyst").get("/console/rules?starting_after=abc")
    assert response.status_code == 422


# --- one version --------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", WRITERS + OTHERS)
def test_every_staff_role_reads_a_versions_document(console_client, draft, role):
    version = draft()
    page = console_client(role).get(f"/console/rules/{version}")
    html = html_of(page)
    assert page.status_code == 200
    assert f"<h1>Rules version {version}</h1>" in html
    assert "Shoes triple" in html and "Draft: it can still change" in html
    assert '  &#34;earn&#34;: {\n    &#34;rates&#34;: {\n      &#34;usd&#34;: &#34;2&#34;' in html  # pretty-printed
    assert ("Simulate a sample order" in html) is (role in WRITERS)
    assert ("Publish version 1" in html) is (role in WRITERS)
    assert "Impact on recent orders" in html


def test_a_published_version_offers_no_editing(console_client, published):
    version = published()
    html = html_of(console_client("manager").get(f"/console/rules/{version}"))
    assert "Published: it never changes" in html and "in force" in html
    assert "Edit as JSON" not in html and "Publish version" not in html
    assert "New draft from this version" in html


def test_an_unknown_version_is_not_found(console_client):
    response = console_client("analyst").get("/console/rules/99")
    assert response.status_code == 404
    assert "No rule version has this number." in html_of(response)


# --- new drafts: the JSON editor ----------------------------------------------------------------------

def test_a_new_draft_starts_from_the_version_in_force(console_client, published):
    published({"earn": {"rates": {"eur": "7"}}})
    html = html_of(console_client("manager").get("/console/rules/new"))
    assert "Starting from version 1." in html
    assert "&#34;eur&#34;: &#34;7&#34;" in html


def test_without_rules_a_new_draft_starts_from_a_valid_document(console_client):
    html = html_of(console_client("manager").get("/console/rules/new"))
    assert "No version is in force" in html
    document = html.split('name="document"')[1].split(">", 1)[1].split("</textarea>")[0]
    assert rules.validated(json.loads(document.replace("&#34;", '"')))["earn"]["rates"] == {"usd": 1}


def test_manager_creates_a_draft_from_json(console_client, in_app):
    manager = console_client("manager")
    response = submit(manager, "/console/rules/new", {"document": json.dumps(BASE), "note": "Launch"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/console/rules/1")
    assert "Draft version 1 saved." in html_of(manager.get("/console/rules/1"))
    saved = stored(in_app, 1)
    assert (saved["status"], saved["note"], saved["document"]["earn"]["rates"]) == ("draft", "Launch", {"usd": "1"})
    assert saved["created_by_id"] is not None


def test_invalid_json_is_shown_beside_the_document_and_saves_nothing(console_client, in_app, row_counts):
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, "/console/rules/new", {"document": '{"earn": {"rates": {"usd": "1"}', "note": "x"})
    html = html_of(response)
    assert response.status_code == 422
    assert 'id="document-error">Not valid JSON: Expecting' in html
    assert 'aria-invalid="true"' in html.split('name="document"')[1].split(">")[0]
    assert '{&#34;earn&#34;: {&#34;rates&#34;: {&#34;usd&#34;: &#34;1&#34;}</textarea>' in html  # kept as typed
    assert version_numbers(in_app) == []
    assert row_counts() == before


def test_a_document_breaking_the_schema_lists_every_error_by_path(console_client, in_app, row_counts):
    manager = console_client("manager")
    before = row_counts()
    document = {"earn": {"rates": {"usd": 1.5}, "pending_days": -1}, "redeem": {"step": 0}}
    response = submit(manager, "/console/rules/new", {"document": json.dumps(document)})
    html = html_of(response)
    assert response.status_code == 422
    assert '<code>document.earn.rates.usd</code>: Use a string such as &#34;1.5&#34;, not a JSON number.' in html
    assert "<code>document.earn.pending_days</code>: Must be greater than or equal to 0" in html
    assert "<code>document.redeem.step</code>" in html
    assert 'id="document-error">The document breaks the rules schema' in html
    assert row_counts() == before


@pytest.mark.parametrize("text", ['["earn"]', "null", "42"])
def test_a_document_must_be_a_json_object(console_client, row_counts, text):
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, "/console/rules/new", {"document": text})
    assert response.status_code == 422
    assert 'id="document-error">Must be a JSON object' in html_of(response)
    assert row_counts() == before


def test_json_nested_too_deeply_is_refused(console_client, row_counts):
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, "/console/rules/new", {"document": "[" * 100_000})
    assert response.status_code == 422
    assert 'id="document-error"' in html_of(response)
    assert row_counts() == before


def test_an_oversized_note_is_refused(console_client, row_counts):
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, "/console/rules/new", {"document": json.dumps(BASE), "note": "n" * 301})
    assert response.status_code == 422
    assert 'id="note-error">Longer than maximum length 300.' in html_of(response)
    assert row_counts() == before


def test_a_form_without_its_csrf_token_is_refused(console_client, draft, in_app, row_counts):
    version = draft()
    manager = console_client("manager")
    before = row_counts()
    assert manager.post("/console/rules/new", data={"document": json.dumps(BASE)}).status_code == 400
    assert manager.post(f"/console/rules/{version}/publish", data={}).status_code == 400
    assert row_counts() == before
    assert stored(in_app, version)["status"] == "draft"


# --- editing drafts -----------------------------------------------------------------------------------

def test_manager_edits_a_draft_as_json(console_client, draft, in_app):
    version = draft()
    manager = console_client("manager")
    assert "&#34;shoes&#34;" in html_of(manager.get(f"/console/rules/{version}/edit"))
    changed = {**SHOES, "earn": {**SHOES["earn"], "rates": {"usd": "5"}}}
    response = submit(manager, f"/console/rules/{version}/edit", {"document": json.dumps(changed), "note": "Five"})
    assert response.status_code == 303
    saved = stored(in_app, version)
    assert (saved["document"]["earn"]["rates"], saved["note"]) == ({"usd": "5"}, "Five")


def test_an_invalid_edit_changes_nothing(console_client, draft, in_app):
    version = draft()
    before = stored(in_app, version)
    response = submit(console_client("manager"), f"/console/rules/{version}/edit", {"document": "{nope"})
    assert response.status_code == 422
    assert stored(in_app, version) == before


@pytest.mark.parametrize("page", ["edit", "settings"])
def test_a_published_version_cannot_be_edited(console_client, published, in_app, page):
    version = published()
    manager = console_client("manager")
    response = manager.get(f"/console/rules/{version}/{page}")
    assert response.status_code == 409
    assert "A published version cannot change; create a new draft." in html_of(response)
    before = stored(in_app, version)
    assert submit(manager, f"/console/rules/{version}/{page}", {"document": json.dumps(SHOES)}).status_code == 409
    assert stored(in_app, version) == before


# --- editing drafts: the structured form --------------------------------------------------------------

SETTINGS = {"earn.rates.usd": "3", "earn.pending_days": "30", "expiry.policy": "rolling", "expiry.months": "12",
            "redeem.point_values.usd": "0.02", "redeem.min_points": "500", "redeem.step": "100",
            "redeem.max_share_percent": "50"}


def test_the_settings_form_shows_the_drafts_main_settings(console_client, draft):
    version = draft(BASE)
    html = html_of(console_client("admin").get(f"/console/rules/{version}/settings"))
    assert 'name="earn.rates.usd" type="text" value="1"' in html
    assert 'name="earn.pending_days" type="number" value="14"' in html
    assert 'name="redeem.point_values.usd" type="text" value="0.01"' in html
    assert '<option value="none" selected>' in html


def test_manager_edits_the_main_settings_and_the_rest_of_the_document_stays(console_client, draft, in_app):
    version = draft(SHOES)  # no point values yet: one is added
    manager = console_client("manager")
    form = {**SETTINGS, "redeem.point_values.new_currency": "usd", "redeem.point_values.new_value": "0.02"}
    response = submit(manager, f"/console/rules/{version}/settings", form)
    assert response.status_code == 303
    document = stored(in_app, version)["document"]
    assert document["earn"]["rates"] == {"usd": "3"}
    assert document["earn"]["pending_days"] == 30
    assert document["expiry"] == {"policy": "rolling", "months": 12}
    assert (document["redeem"]["point_values"], document["redeem"]["min_points"], document["redeem"]["step"],
            document["redeem"]["max_share_percent"]) == ({"usd": "0.02"}, 500, 100, 50)
    assert document["earn"]["multipliers"][0]["id"] == "shoes"
    assert stored(in_app, version)["note"] == "Shoes triple"


def test_the_settings_form_adds_and_removes_currencies(console_client, draft, in_app):
    version = draft(BASE)
    form = {**SETTINGS, "earn.rates.usd": "", "earn.rates.new_currency": "EUR", "earn.rates.new_value": "1.5",
            "redeem.point_values.new_currency": "eur", "redeem.point_values.new_value": "0.01"}
    assert submit(console_client("manager"), f"/console/rules/{version}/settings", form).status_code == 303
    document = stored(in_app, version)["document"]
    assert document["earn"]["rates"] == {"eur": "1.5"}
    assert document["redeem"]["point_values"] == {"usd": "0.02", "eur": "0.01"}


def test_blank_numbers_take_the_documents_defaults(console_client, draft, in_app):
    version = draft(BASE)
    form = {**SETTINGS, "earn.pending_days": "", "redeem.min_points": "", "redeem.step": "",
            "redeem.max_share_percent": "", "expiry.policy": "none"}
    assert submit(console_client("manager"), f"/console/rules/{version}/settings", form).status_code == 303
    document = stored(in_app, version)["document"]
    assert document["earn"]["pending_days"] == 0 and document["expiry"] == {"policy": "none"}
    assert (document["redeem"]["min_points"], document["redeem"]["step"],
            document["redeem"]["max_share_percent"]) == (0, 1, 100)


def test_invalid_settings_are_shown_beside_their_inputs_and_change_nothing(console_client, draft, in_app):
    version = draft(BASE)
    before = stored(in_app, version)
    form = {**SETTINGS, "earn.rates.usd": "1.2.3", "earn.pending_days": "two", "expiry.months": "",
            "redeem.max_share_percent": "150", "earn.rates.new_currency": "euro", "earn.rates.new_value": "1"}
    response = submit(console_client("manager"), f"/console/rules/{version}/settings", form)
    html = html_of(response)
    assert response.status_code == 422
    assert 'id="earn.rates.usd-error">Not a valid number.' in html
    assert 'id="earn.pending_days-error">Not a valid integer.' in html
    assert 'id="expiry.months-error">Missing data for required field.' in html
    assert 'id="redeem.max_share_percent-error">Must be greater than or equal to 1 and less than or equal to 100' \
        in html
    assert 'id="earn.rates.new_currency-error">Must be 3 lowercase letters' in html
    assert 'value="two"' in html  # what was typed comes back
    assert stored(in_app, version) == before


def test_removing_every_rate_is_refused(console_client, draft, in_app):
    version = draft(BASE)
    response = submit(console_client("manager"), f"/console/rules/{version}/settings",
                      {**SETTINGS, "earn.rates.usd": ""})
    assert response.status_code == 422
    assert "<code>earn.rates</code>: Give at least one currency." in html_of(response)
    assert stored(in_app, version)["document"]["earn"]["rates"] == {"usd": "1"}


# --- who may write --------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", OTHERS)
def test_roles_that_do_not_run_the_program_cannot_write_rules(console_client, draft, in_app, row_counts, role):
    version = draft()
    staff = console_client(role)
    before, document_before = row_counts(), stored(in_app, version)
    for page in ("/console/rules/new", f"/console/rules/{version}/edit", f"/console/rules/{version}/settings"):
        assert staff.get(page).status_code == 403, page
    for path, data in [("/console/rules/new", {"document": json.dumps(BASE)}),
                       (f"/console/rules/{version}/edit", {"document": json.dumps(BASE)}),
                       (f"/console/rules/{version}/settings", SETTINGS),
                       (f"/console/rules/{version}/publish", {}),
                       (f"/console/rules/{version}/simulate", SAMPLE)]:
        response = submit(staff, path, data)
        assert response.status_code == 403, path
        assert "Your role may not use this page." in html_of(response)
    assert row_counts() == before
    assert stored(in_app, version) == document_before


# --- simulation -----------------------------------------------------------------------------------------

def test_simulate_shows_the_exact_points_and_breakdown_and_writes_nothing(console_client, draft, row_counts):
    version = draft(SHOES)
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, f"/console/rules/{version}/simulate", SAMPLE)
    html = html_of(response)
    assert response.status_code == 200
    assert "It would earn 379 points" in html
    base = html.split("<code>base</code>")[1].split("</tr>")[0]
    shoes = html.split("<code>multiplier.shoes</code>")[1].split("</tr>")[0]
    assert '<td class="num">179</td>' in base and "2 points per USD 1.00 on USD 89.98" in base
    assert '<td class="num">200</td>' in shoes and "x3 on USD 50.00" in shoes
    assert 'value="SHOE"' in html  # the sample stays in the form to try again
    assert row_counts() == before


def test_simulate_for_a_member_reads_their_context(console_client, draft, make_member):
    version = draft({"earn": {"rates": {"usd": "1"}, "first_order_points": 100}})
    member = make_member()
    response = submit(console_client("manager"), f"/console/rules/{version}/simulate",
                      {**SAMPLE, "member_id": member["id"]})
    assert response.status_code == 200
    assert "It would earn 189 points" in html_of(response)  # 89 + the first order's 100


def test_simulate_at_a_chosen_moment_applies_the_campaigns_of_that_moment(console_client, draft):
    campaign = {"id": "jan", "name": "January bonus", "bonus_points": 500,
                "starts_at": "2030-01-01T00:00:00+00:00", "ends_at": "2030-02-01T00:00:00+00:00"}
    version = draft({"earn": {"rates": {"usd": "1"}, "campaigns": [campaign]}})
    manager = console_client("manager")
    during = html_of(submit(manager, f"/console/rules/{version}/simulate",
                            {**SAMPLE, "order.paid_at": "2030-01-15T12:00"}))
    assert "It would earn 589 points" in during and "January bonus: 500 bonus points" in during
    assert "It would earn 89 points" in html_of(submit(manager, f"/console/rules/{version}/simulate", SAMPLE))


def test_a_published_version_can_be_simulated_too(console_client, published):
    version = published(BASE)
    response = submit(console_client("admin"), f"/console/rules/{version}/simulate", SAMPLE)
    assert "It would earn 89 points" in html_of(response)


def test_bad_sample_input_is_shown_beside_its_inputs(console_client, draft, row_counts):
    version = draft()
    manager = console_client("manager")
    before = row_counts()
    form = {**SAMPLE, "order.currency": "dollars", "order.lines.0.quantity": "0",
            "order.lines.1.unit_amount": "lots", "order.shipping_amount": "-5"}
    response = submit(manager, f"/console/rules/{version}/simulate", form)
    html = html_of(response)
    assert response.status_code == 422
    assert 'id="order.currency-error">A lowercase ISO 4217 code' in html
    assert 'id="order.lines.0.quantity-error">Must be greater than or equal to 1' in html
    assert 'id="order.lines.1.unit_amount-error">Not a valid integer.' in html
    assert 'id="order.shipping_amount-error">' in html
    assert "It would earn" not in html
    assert row_counts() == before


def test_a_sample_without_lines_is_refused(console_client, draft):
    version = draft()
    response = submit(console_client("manager"), f"/console/rules/{version}/simulate", {"order.currency": "usd"})
    assert response.status_code == 422
    assert "<code>order.lines</code>" in html_of(response)


def test_an_unknown_member_is_shown_beside_the_member_id(console_client, draft):
    version = draft()
    response = submit(console_client("manager"), f"/console/rules/{version}/simulate",
                      {**SAMPLE, "member_id": "mem_nobody"})
    assert response.status_code == 422
    assert 'id="member_id-error">No member has this id.' in html_of(response)


# --- impact -----------------------------------------------------------------------------------------------

def test_impact_replays_recent_orders_for_any_staff_role(console_client, published, draft, make_member, client,
                                                         make_api_key):
    published(BASE)
    member = make_member()
    headers = bearer(make_api_key("checkout"))
    for _ in range(2):
        body = {"order_id": unique_email("ord"), "member_id": member["id"], "currency": "usd", "total_amount": 5000,
                "lines": [{"sku": "TEE", "category": "apparel", "quantity": 2, "unit_amount": 2500}]}
        assert client.post("/v1/orders", json=body, headers=headers).status_code in (200, 201)
    version = draft({"earn": {"rates": {"usd": "3"}}})
    response = console_client("analyst").get(f"/console/rules/{version}/impact?last=10")
    html = html_of(response)
    assert response.status_code == 200
    stats = [part.split("</span>")[0] for part in html.split('<span class="value">')[1:]]
    assert stats == ["2", "100", "300", "+200"]


def test_impact_refuses_a_bad_count(console_client, draft):
    version = draft()
    response = console_client("analyst").get(f"/console/rules/{version}/impact?last=0")
    assert response.status_code == 422
    assert 'id="last-error">' in html_of(response)


# --- publishing -------------------------------------------------------------------------------------------

def test_publishing_makes_the_draft_the_version_in_force(console_client, published, draft, in_app):
    published(BASE)
    version = draft()
    manager = console_client("manager")
    response = submit(manager, f"/console/rules/{version}/publish", {"effective_from": ""})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/console/rules/{version}")
    html = html_of(manager.get(f"/console/rules/{version}"))
    assert f"Version {version} is published, in force from" in html
    with in_app():
        assert rules.in_force(now()).version == version
    assert stored(in_app, version)["status"] == "published"


def test_publishing_for_later_takes_a_utc_date_and_time(console_client, draft, in_app):
    version = draft()
    later = (now() + timedelta(days=2)).replace(second=0, microsecond=0)
    response = submit(console_client("admin"), f"/console/rules/{version}/publish",
                      {"effective_from": later.strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 303
    assert stored(in_app, version)["effective_from"] == later
    with in_app():
        assert rules.in_force(now()) is None


def test_publishing_in_the_past_is_refused_beside_the_date(console_client, draft, in_app):
    version = draft()
    response = submit(console_client("manager"), f"/console/rules/{version}/publish",
                      {"effective_from": "2020-01-01T00:00"})
    assert response.status_code == 422
    assert 'id="effective_from-error">Cannot take effect in the past.' in html_of(response)
    assert stored(in_app, version)["status"] == "draft"


def test_a_date_that_is_not_a_date_is_refused(console_client, draft, in_app):
    version = draft()
    response = submit(console_client("manager"), f"/console/rules/{version}/publish", {"effective_from": "soon"})
    assert response.status_code == 422
    assert 'id="effective_from-error">Not a valid datetime.' in html_of(response)
    assert stored(in_app, version)["status"] == "draft"


def test_publishing_a_published_version_is_a_conflict(console_client, published, in_app):
    version = published()
    before = stored(in_app, version)
    response = submit(console_client("manager"), f"/console/rules/{version}/publish", {})
    assert response.status_code == 409
    assert "This version is already published." in html_of(response)
    assert stored(in_app, version) == before


def test_the_list_marks_the_newly_published_version_in_force(console_client, draft, stop_clock):
    stop_clock(datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    version = draft()
    manager = console_client("manager")
    submit(manager, f"/console/rules/{version}/publish", {})
    row = html_of(manager.get("/console/rules")).split(f"Version {version}</a>")[1].split("</tr>")[0]
    assert "in force" in row and "2026-03-01 09:30 UTC" in row
