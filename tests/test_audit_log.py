"""The audit log: every write by staff or an API key, one entry per unit of work, append-only, never a secret.

An entry names who (staff or key, with their email or the key's name and prefix then), what (the method and
route, or the console page), when, the request id the response carried, and each row changed with its
columns before and after. Members acting on themselves, Stripe's webhooks and reads leave nothing; neither
does a refused request.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from loyalty.audit import service as audit
from loyalty.audit.models import AuditEntry, AuditLogIsAppendOnly
from loyalty.auth.models import StaffUser
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.tiers import service as tiers
from loyalty.tiers.models import Tier
from tests import stripe_events
from tests.conftest import PASSWORD, assert_problem, bearer, change_settings, publish_rules, submit, unique_email

BASE_TIER = {"code": "base", "name": "Member", "rank": 0, "threshold": 0, "basis": "points", "window_days": 365}
LINES = [{"sku": "SKU-1", "quantity": 1, "unit_amount": 1000}]
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def entries(app: Flask) -> list[dict]:
    """Every audit entry, oldest first, as the API shows it."""
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        return [{"id": row.public_id, "actor_kind": row.actor_kind, "actor_id": row.actor_id,
                 "actor_label": row.actor_label, "action": row.action, "request_id": row.request_id,
                 "status_code": row.status_code, "changes": row.change_list} for row in rows]


def everything_stored(app: Flask) -> str:
    """All the audit tables hold, as one text: to prove a value is nowhere in them."""
    with app.app_context():
        connection = db.session.connection()
        rows = [*connection.execute(text("SELECT * FROM audit_log")),
                *connection.execute(text("SELECT * FROM audit_log_resources"))]
    return "\n".join(repr(tuple(row)) for row in rows)


def audit_rows(app: Flask) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(AuditEntry))


@pytest.fixture
def staff_api(app: Flask, make_staff):
    """A client signed in through the API as a new staff user of `role`; `.staff` says who."""

    def signed_in(role: str):
        staff = make_staff(role)
        client = app.test_client()
        response = client.post("/v1/auth/staff/login", json={"email": staff["email"], "password": PASSWORD})
        assert response.status_code == 200
        client.staff = staff
        return client

    return signed_in


# --- What an entry holds ---------------------------------------------------------------------------------------

def test_an_adjustment_by_support_records_who_what_the_request_and_the_journal_transaction(staff_api, make_member,
                                                                                         app):
    support, member = staff_api("support"), make_member()

    response = support.post(f"/v1/admin/members/{member['id']}/adjustments",
                            json={"points": 250, "reason": "Goodwill"})

    assert response.status_code == 201
    [entry] = entries(app)
    after = entry["changes"][0]["after"]
    assert entry == {
        "id": entry["id"], "actor_kind": "staff", "actor_id": support.staff["id"],
        "actor_label": support.staff["email"], "action": "POST /v1/admin/members/{member_id}/adjustments",
        "request_id": response.headers["X-Request-Id"], "status_code": 201,
        "changes": [{"table": "ledger_transactions", "id": response.get_json()["id"], "op": "insert",
                     "before": None, "after": after}],
    }
    # The journal transaction without balances; accounts, postings and lots are left out.
    assert after == {"kind": "adjust", "points": 250, "description": "Adjustment: Goodwill",
                     "reference": after["reference"]}
    assert after["reference"].startswith("adjust:req_")


def test_an_entry_keeps_the_request_id_the_client_sent(staff_api, make_member, app):
    support, member = staff_api("support"), make_member()

    response = support.post(f"/v1/admin/members/{member['id']}/adjustments", json={"points": 5, "reason": "Hi"},
                            headers={"X-Request-Id": "shop-req-42"})

    assert response.headers["X-Request-Id"] == "shop-req-42"
    assert [e["request_id"] for e in entries(app)] == ["shop-req-42"]


def test_a_tier_update_records_the_changed_columns_only_before_and_after(staff_api, in_app, app):
    manager = staff_api("manager")
    with in_app():
        tier_id = tiers.create_tier(dict(BASE_TIER)).public_id
        db.session.commit()

    response = manager.patch(f"/v1/admin/tiers/{tier_id}", json={"name": "Friends", "threshold": 0})

    assert response.status_code == 200
    [entry] = entries(app)
    assert entry["action"] == "PATCH /v1/admin/tiers/{tier_id}"
    assert entry["changes"] == [{"table": "tiers", "id": tier_id, "op": "update",
                                 "before": {"name": "Member"}, "after": {"name": "Friends"}}]


def test_a_checkout_write_by_an_api_key_is_recorded_with_the_key_name_and_prefix(client, make_api_key, make_member,
                                                                                 in_app, app):
    with in_app():
        publish_rules({"earn": {"rates": {"usd": "1"}}})
    secret, member = make_api_key("checkout"), make_member()

    response = client.post("/v1/orders", headers=bearer(secret), json={
        "order_id": "order-1", "member_id": member["id"], "currency": "usd", "lines": LINES, "total_amount": 1000})

    assert response.status_code == 201
    [entry] = entries(app)
    assert entry["actor_kind"] == "api_key"
    assert entry["actor_id"].startswith("key_")
    assert entry["actor_label"] == f"test ({secret[:9]}…)"
    assert entry["action"] == "POST /v1/orders"
    earned = [c for c in entry["changes"] if c["table"] == "ledger_transactions"]
    assert [(c["op"], c["after"]["kind"], c["after"]["points"]) for c in earned] == [("insert", "earn", 10)]
    assert {c["table"] for c in entry["changes"]} >= {"orders", "ledger_transactions"}


def test_a_members_personal_fields_are_recorded_as_changed_never_by_value(client, make_api_key, app):
    response = client.post("/v1/members", headers=bearer(make_api_key("members:write")),
                           json={"email": "ada.lovelace@example.test", "name": "Ada Lovelace"})

    assert response.status_code == 201
    [entry] = entries(app)
    [member] = [c for c in entry["changes"] if c["table"] == "members"]
    assert member["id"] == response.get_json()["id"]
    assert member["after"]["email"] == member["after"]["name"] == "[personal data]"
    assert "ada.lovelace" not in everything_stored(app).lower()
    assert "Lovelace" not in everything_stored(app)


# --- Secrets: never ------------------------------------------------------------------------------------------------

def test_creating_an_api_key_records_neither_its_secret_nor_its_hash(staff_api, app):
    admin = staff_api("admin")

    response = admin.post("/v1/admin/api-keys", json={"name": "shop server", "scopes": ["checkout"]})

    assert response.status_code == 201
    secret = response.get_json()["key"]
    [entry] = entries(app)
    [key] = entry["changes"]
    assert (key["table"], key["id"], key["op"]) == ("api_keys", response.get_json()["id"], "insert")
    assert key["after"]["key_hash"] == "[redacted]"
    assert key["after"]["name"] == "shop server"
    stored = everything_stored(app)
    assert secret not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() not in stored


def test_an_api_key_creating_a_key_is_named_by_its_own_name_and_prefix_and_stores_no_secret(client, make_api_key, app):
    admin_key = make_api_key("admin")

    response = client.post("/v1/admin/api-keys", headers={**bearer(admin_key), "Idempotency-Key": "key-1"},
                           json={"name": "relay", "scopes": ["checkout"]})

    assert response.status_code == 201
    [entry] = entries(app)
    assert entry["actor_label"] == f"test ({admin_key[:9]}…)"
    assert response.get_json()["key"] not in everything_stored(app)


def test_registering_a_webhook_endpoint_records_no_signing_secret(staff_api, app):
    response = staff_api("admin").post("/v1/admin/webhook-endpoints", json={"url": "https://crm.example.test/hook"})

    assert response.status_code == 201
    secret = response.get_json()["secret"]
    [entry] = entries(app)
    assert entry["changes"][0]["after"]["secret"] == "[redacted]"
    assert secret not in everything_stored(app)


def test_creating_a_staff_user_records_no_password_nor_its_hash(staff_api, in_app, app):
    response = staff_api("admin").post("/v1/admin/staff", json={
        "email": unique_email("staff"), "role": "analyst", "password": "a much longer secret phrase"})

    assert response.status_code == 201
    [entry] = entries(app)
    assert entry["changes"][0]["after"]["password_hash"] == "[redacted]"
    with in_app():
        password_hash = db.session.scalar(select(StaffUser.password_hash)
                                          .where(StaffUser.public_id == response.get_json()["id"]))
    stored = everything_stored(app)
    assert "a much longer secret phrase" not in stored
    assert password_hash not in stored


# --- What leaves nothing -------------------------------------------------------------------------------------------

def test_a_refused_write_records_nothing(staff_api, make_member, app):
    support, member = staff_api("support"), make_member()

    response = support.post(f"/v1/admin/members/{member['id']}/adjustments", json={"points": -5, "reason": "Oops"})

    assert_problem(response, 409, "insufficient_points")
    assert audit_rows(app) == 0


def test_invalid_input_and_a_forbidden_write_record_nothing(staff_api, make_member, app):
    member = make_member()

    invalid = staff_api("support").post(f"/v1/admin/members/{member['id']}/adjustments", json={"points": "ten"})
    forbidden = staff_api("analyst").post(f"/v1/admin/members/{member['id']}/adjustments",
                                          json={"points": 5, "reason": "Hi"})

    assert_problem(invalid, 422, "validation_error")
    assert_problem(forbidden, 403, "forbidden")
    assert audit_rows(app) == 0


def test_a_members_own_write_records_nothing(member_client, in_app, app):
    client, member = member_client()
    with in_app():
        offer = offers.create_offer({"name": "Ten off", "kind": "amount_off", "amount": 1000, "currency": "usd"})
        reward = catalog.create_reward({"offer_id": offer.public_id, "name": "Ten off", "points_cost": 100})
        ledger.adjust(members.get_member(member["id"]).id, 100, reason="Start", reference="start",
                      now=now())
        reward_id = reward.public_id
        db.session.commit()

    response = client.post(f"/v1/me/rewards/{reward_id}/claim")

    assert response.status_code == 201
    assert audit_rows(app) == 0


def test_a_stripe_webhook_records_nothing(client, app, monkeypatch):
    change_settings(monkeypatch, app, STRIPE_WEBHOOK_SECRET="whsec_audit")
    session = stripe_events.checkout_session(amount_subtotal=1000, amount_total=1000, metadata={},
                                             payment_intent=stripe_events.new_id("pi"))
    payload = stripe_events.body(stripe_events.event("checkout.session.completed", session))

    response = client.post("/v1/webhooks/stripe", data=payload, content_type="application/json",
                           headers={"Stripe-Signature": stripe_events.sign(payload, "whsec_audit")})

    assert response.status_code == 200
    assert audit_rows(app) == 0


def test_reads_record_nothing(staff_api, make_member, app):
    admin, member = staff_api("admin"), make_member()

    for path in ("/v1/admin/members?q=a", f"/v1/members/{member['id']}", "/v1/admin/api-keys", "/v1/admin/audit-log",
                 "/console/audit"):
        assert admin.get(path).status_code in (200, 302), path

    assert audit_rows(app) == 0


def test_a_replayed_idempotent_write_records_only_the_first(client, make_api_key, make_member, app):
    headers = {**bearer(make_api_key("admin")), "Idempotency-Key": "adjust-1"}
    path = f"/v1/admin/members/{make_member()['id']}/adjustments"

    first = client.post(path, headers=headers, json={"points": 5, "reason": "Hi"})
    replay = client.post(path, headers=headers, json={"points": 5, "reason": "Hi"})

    assert (first.status_code, replay.status_code, replay.headers["Idempotent-Replayed"]) == (201, 201, "true")
    assert audit_rows(app) == 1


# --- The console ---------------------------------------------------------------------------------------------------

def test_a_console_form_write_is_recorded_with_the_console_page(console_client, app):
    admin = console_client("admin")

    response = submit(admin, "/console/api-keys/new", {"name": "Relay", "scopes": "checkout"})

    assert response.status_code == 201
    [entry] = entries(app)
    assert (entry["actor_kind"], entry["actor_id"], entry["actor_label"]) == ("staff", admin.staff["id"],
                                                                              admin.staff["email"])
    assert entry["action"] == "POST /console/api-keys/new"
    assert entry["status_code"] is None
    assert entry["request_id"].startswith("req_")
    assert [(c["table"], c["op"]) for c in entry["changes"]] == [("api_keys", "insert")]
    secret = re.search(r'id="api-key-secret">([^<]+)<', response.get_data(as_text=True)).group(1)
    assert secret.startswith("lk_")
    assert secret not in everything_stored(app)


def test_a_refused_console_form_records_nothing(console_client, app):
    response = submit(console_client("admin"), "/console/api-keys/new", {"name": "Relay"})  # no scopes

    assert response.status_code == 422
    assert audit_rows(app) == 0


def test_the_console_lists_entries_and_shows_one_with_before_and_after(console_client, staff_api, in_app, app):
    with in_app():
        tier_id = tiers.create_tier(dict(BASE_TIER)).public_id
        db.session.commit()
    manager = staff_api("manager")
    manager.patch(f"/v1/admin/tiers/{tier_id}", json={"name": "Friends"})
    [entry] = entries(app)
    admin = console_client("admin")

    listing = admin.get("/console/audit").get_data(as_text=True)
    shown = admin.get(f"/console/audit/{entry['id']}")

    assert manager.staff["email"] in listing
    assert "PATCH /v1/admin/tiers/{tier_id}" in listing
    assert "tiers: 1 updated" in listing
    page = shown.get_data(as_text=True)
    assert shown.status_code == 200
    assert tier_id in page
    assert "<td>Member</td><td>Friends</td>" in page.replace("\n", "")


def test_the_console_filters_by_actor_and_refuses_a_bad_filter_with_422(console_client, staff_api, make_member, app):
    member = make_member()
    first, second = staff_api("support"), staff_api("support")
    first.post(f"/v1/admin/members/{member['id']}/adjustments", json={"points": 5, "reason": "One"})
    second.post(f"/v1/admin/members/{member['id']}/adjustments", json={"points": 5, "reason": "Two"})
    admin = console_client("admin")

    mine = admin.get(f"/console/audit?actor_id={first.staff['id']}").get_data(as_text=True)
    refused = admin.get("/console/audit?from=yesterday")

    assert first.staff["email"] in mine and second.staff["email"] not in mine
    assert refused.status_code == 422
    assert "Not a valid datetime." in refused.get_data(as_text=True)


@pytest.mark.parametrize("role", ["manager", "support", "analyst"])
def test_only_admins_open_the_audit_log_in_the_console(console_client, role):
    assert console_client(role).get("/console/audit").status_code == 403


def test_an_unknown_entry_is_a_404_page(console_client):
    assert console_client("admin").get("/console/audit/aud_nothing").status_code == 404


# --- Append-only ---------------------------------------------------------------------------------------------------

@pytest.fixture
def one_entry(staff_api, make_member, app) -> dict:
    path = f"/v1/admin/members/{make_member()['id']}/adjustments"
    staff_api("support").post(path, json={"points": 5, "reason": "Hi"})
    [entry] = entries(app)
    return entry


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET actor_label = 'someone else'",
    "DELETE FROM audit_log",
    "UPDATE audit_log_resources SET resource_id = 'mem_other'",
    "DELETE FROM audit_log_resources",
])
@pytest.mark.real_commits  # the statement runs on a connection of its own
def test_the_database_refuses_to_change_or_delete_audit_rows(one_entry, statement, app):
    before = everything_stored(app)

    with app.app_context(), pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
        connection.execute(text(statement))

    assert everything_stored(app) == before


def test_postgresql_also_refuses_to_truncate_the_audit_log(pg):
    with pg.app_context(), pytest.raises(DBAPIError, match="append-only"), db.engine.begin() as connection:
        connection.execute(text("TRUNCATE audit_log CASCADE"))


def test_the_code_refuses_to_change_or_delete_an_entry(one_entry, in_app):
    with in_app():
        entry = db.session.scalar(select(AuditEntry))
        entry.actor_label = "someone else"
        with pytest.raises(AuditLogIsAppendOnly):
            db.session.flush()
        db.session.rollback()
        db.session.delete(db.session.scalar(select(AuditEntry)))
        with pytest.raises(AuditLogIsAppendOnly):
            db.session.flush()


# --- The capture's limits ------------------------------------------------------------------------------------------

ADMIN = audit.Actor("staff", "stf_test", "admin@example.test")


def _tier(rank: int) -> Tier:
    return Tier(code=f"t{rank}", name=f"Tier {rank}", rank=rank, threshold=rank, basis="points", window_days=365)


def test_past_twenty_rows_of_a_table_only_the_count_is_kept(app):
    with app.test_request_context("/v1/admin/tiers", method="POST"):
        with audit.capturing(ADMIN) as capture:
            db.session.add_all(_tier(rank) for rank in range(25))
            entry = capture.record(201)
            db.session.commit()
        changes = entry.change_list

    assert len(changes) == 21
    assert [(c["table"], c["op"], c["after"]["code"]) for c in changes[:20]] == [
        ("tiers", "insert", f"t{rank}") for rank in range(20)]
    assert changes[20] == {"table": "tiers", "more": 5}


def test_rows_flushed_in_a_savepoint_that_was_rolled_back_are_not_recorded(app):
    with app.test_request_context("/v1/admin/tiers", method="POST"):
        with audit.capturing(ADMIN) as capture:
            savepoint = db.session.begin_nested()
            db.session.add(_tier(0))
            db.session.flush()
            savepoint.rollback()
            db.session.add(_tier(1))
            entry = capture.record(201)
            db.session.commit()
        changes = entry.change_list

    assert [(c["table"], c["op"], c["after"]["code"]) for c in changes] == [("tiers", "insert", "t1")]


def test_a_row_changed_twice_is_one_change_from_the_first_before_to_the_last_after(app):
    with app.app_context():
        tiers.create_tier(dict(BASE_TIER))
        db.session.commit()
    with app.test_request_context("/v1/admin/tiers/x", method="PATCH"):
        with audit.capturing(ADMIN) as capture:
            tier = db.session.scalar(select(Tier))
            tier.name = "Friends"
            db.session.flush()
            tier.name, tier.perks = "Family", "Free shipping"
            entry = capture.record(200)
            db.session.commit()
        changes = entry.change_list

    assert changes == [{"table": "tiers", "id": changes[0]["id"], "op": "update",
                        "before": {"name": "Member", "perks": None},
                        "after": {"name": "Family", "perks": "Free shipping"}}]


# --- GET /v1/admin/audit-log ---------------------------------------------------------------------------------------

@pytest.fixture
def history(app, staff_api, make_member, make_api_key, in_app, stop_clock):
    """Three entries an hour apart: support adjusts member A at T0, another support adjusts member B at
    T0+1h, a manager renames a tier at T0+2h."""
    clock = stop_clock(T0)
    with in_app():
        tier_id = tiers.create_tier(dict(BASE_TIER)).public_id
        db.session.commit()
    a, b = make_member(), make_member()
    first, second, manager = staff_api("support"), staff_api("support"), staff_api("manager")
    first.post(f"/v1/admin/members/{a['id']}/adjustments", json={"points": 5, "reason": "One"})
    clock.travel(timedelta(hours=1))
    second.post(f"/v1/admin/members/{b['id']}/adjustments", json={"points": 5, "reason": "Two"})
    clock.travel(timedelta(hours=1))
    manager.patch(f"/v1/admin/tiers/{tier_id}", json={"name": "Friends"})
    ids = [e["id"] for e in entries(app)]
    return {"ids": ids, "members": (a["id"], b["id"]), "tier": tier_id, "first": first.staff["id"],
            "headers": bearer(make_api_key("admin"))}


def _listed(client, history, query: str = "") -> dict:
    response = client.get(f"/v1/admin/audit-log{query}", headers=history["headers"])
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_the_list_is_newest_first_with_every_field(client, history):
    body = _listed(client, history)

    assert [e["id"] for e in body["data"]] == history["ids"][::-1]
    assert body["has_more"] is False
    newest = body["data"][0]
    assert set(newest) == {"id", "occurred_at", "actor_kind", "actor_id", "actor_label", "action", "request_id",
                           "status_code", "changes"}
    assert newest["occurred_at"] == (T0 + timedelta(hours=2)).isoformat()
    assert newest["changes"] == [{"table": "tiers", "id": history["tier"], "op": "update",
                                  "before": {"name": "Member"}, "after": {"name": "Friends"}}]


def test_the_list_pages_with_limit_and_starting_after(client, history):
    ids = history["ids"][::-1]

    first = _listed(client, history, "?limit=2")
    second = _listed(client, history, f"?limit=2&starting_after={ids[1]}")

    assert ([e["id"] for e in first["data"]], first["has_more"]) == (ids[:2], True)
    assert ([e["id"] for e in second["data"]], second["has_more"]) == (ids[2:], False)


@pytest.mark.parametrize(("query", "expected"), [
    pytest.param("?actor_id={first}", [0], id="by actor"),
    pytest.param("?table=tiers", [2], id="by table"),
    pytest.param("?table=ledger_transactions", [1, 0], id="by the journal's table"),
    pytest.param("?resource_id={tier}", [2], id="by a row"),
    pytest.param("?resource_id={member_b}", [1], id="by a member whose rows changed"),
    pytest.param("?table=members&resource_id={member_a}", [0], id="by table and row"),
    pytest.param("?from=2026-11-23T13:00:00%2B00:00", [2, 1], id="from, inclusive"),
    pytest.param("?to=2026-11-23T13:00:00Z", [0], id="to, exclusive"),
    pytest.param("?from=2026-11-23T12:30:00Z&to=2026-11-23T13:30:00Z", [1], id="between"),
    pytest.param("?actor_id=stf_nobody", [], id="an actor with no entries"),
])
def test_the_list_filters(client, history, query, expected):
    query = query.format(first=history["first"], tier=history["tier"], member_a=history["members"][0],
                         member_b=history["members"][1])

    body = _listed(client, history, query)

    assert [e["id"] for e in body["data"]] == [history["ids"][i] for i in expected]


def test_the_list_is_for_admins_only(staff_api, client, make_api_key):
    for role in ("manager", "support", "analyst"):
        assert_problem(staff_api(role).get("/v1/admin/audit-log"), 403, "forbidden")
    assert_problem(client.get("/v1/admin/audit-log", headers=bearer(make_api_key("members:read"))), 403, "forbidden")
    assert staff_api("admin").get("/v1/admin/audit-log").status_code == 200


def test_the_list_is_described_in_the_openapi_document(client):
    spec = client.get("/openapi.json").get_json()

    operation = spec["paths"]["/v1/admin/audit-log"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"limit", "starting_after", "actor_id", "table",
                                                           "resource_id", "from", "to"}
    assert "changes" in spec["components"]["schemas"]["AuditEntry"]["properties"]
