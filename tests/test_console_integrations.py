"""The console's integrations pages, for admins only: webhook endpoints with their delivery log and replays, Stripe
events that failed or wait, with retries, and API keys. Secrets are shown once, in the answer that made them, and
never reach the session cookie."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from loyalty import events
from loyalty.auth import service as auth
from loyalty.auth.models import ApiKey
from loyalty.extensions import db
from loyalty.jobs import service as jobs
from loyalty.members import service as members
from loyalty.webhooks import inbound, outbound
from loyalty.webhooks.models import StripeEvent, WebhookDelivery, WebhookEndpoint
from tests import stripe_events as se
from tests.conftest import bearer, change_settings, publish_rules, submit, unique_email

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
CRM = "https://crm.example.test/loyalty"


@pytest.fixture
def clock(stop_clock):
    return stop_clock(T0)


@pytest.fixture
def admin(console_client, clock):
    return console_client("admin")


@pytest.fixture
def register(in_app):
    """Register an endpoint through the service; answers its public id."""

    def make(url: str = CRM, **fields) -> str:
        with in_app():
            endpoint = outbound.create_endpoint({"url": url, **fields}, allow_private=True)
            db.session.commit()
            return endpoint.public_id

    return make


@pytest.fixture
def deliveries(in_app):
    """`deliveries(endpoint_id, statuses)`: one event per status, dispatched, each delivery set to its status;
    answers the delivery ids in the order the events happened."""

    def make(endpoint_id: str, statuses: list[str]) -> list[str]:
        with in_app():
            for n, _ in enumerate(statuses):
                events.emit("member.created", {"n": n})
            db.session.commit()
            jobs.dispatch_events(T0)
            endpoint = outbound.get_endpoint(endpoint_id)
            rows = db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
                                      .order_by(WebhookDelivery.id)).all()
            for row, status in zip(rows, statuses, strict=True):
                row.status, row.attempts = status, 0 if status == "pending" else 1
                if status == "delivered":
                    row.delivered_at, row.last_status_code = T0, 200
                if status == "failed":
                    row.last_status_code, row.last_error = 500, "answered HTTP 500"
            db.session.commit()
            return [row.public_id for row in rows]

    return make


@pytest.fixture
def make_key(in_app):
    def make(name: str = "checkout", scopes: tuple[str, ...] = ("checkout",)) -> tuple[str, str]:
        with in_app():
            key, secret = auth.create_api_key(name=name, scopes=scopes)
            db.session.commit()
            return key.public_id, secret

    return make


def _endpoint(in_app, endpoint_id: str) -> WebhookEndpoint:
    with in_app():
        endpoint = outbound.get_endpoint(endpoint_id)
        db.session.expunge(endpoint)
        return endpoint


def _delivery(in_app, delivery_id: str) -> WebhookDelivery:
    with in_app():
        row = db.session.scalar(select(WebhookDelivery).where(WebhookDelivery.public_id == delivery_id))
        db.session.expunge(row)
        return row


def _key(in_app, key_id: str) -> ApiKey:
    with in_app():
        key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == key_id))
        db.session.expunge(key)
        return key


def _session_text(client) -> str:
    """What the signed (not encrypted) session cookie holds, decoded as the server reads it."""
    with client.session_transaction() as session:
        return repr(dict(session))


def _text(response) -> str:
    return response.get_data(as_text=True)


# --- Webhook endpoints: the list -----------------------------------------------------------------------------------

def test_the_endpoint_list_shows_url_event_types_enabled_health_and_created(admin, register, in_app):
    register(CRM, event_types=["member.created", "tier.changed"], description="CRM")
    quiet = register("https://mail.example.test/hook")
    with in_app():
        endpoint = outbound.get_endpoint(quiet)
        endpoint.enabled, endpoint.failing, endpoint.consecutive_failures = False, True, 6
        db.session.commit()

    page = _text(admin.get("/console/webhooks"))

    assert CRM in page and "member.created, tier.changed" in page and "CRM" in page
    assert "https://mail.example.test/hook" in page and "All event types" in page
    assert page.count('"badge badge-ok">Enabled<') == 1 and page.count('"badge">Disabled<') == 1
    assert "Failing</span> 6 failed attempts in a row" in page and page.count('"badge badge-ok">Healthy<') == 1
    assert page.count("2026-03-02 09:00 UTC") == 2


def test_the_endpoint_list_shows_25_a_page_with_a_link_to_the_next(admin, register):
    ids = [register(f"https://crm.example.test/{n}") for n in range(26)]

    first = _text(admin.get("/console/webhooks"))
    second = _text(admin.get(f"/console/webhooks?starting_after={ids[24]}"))

    assert first.count('href="/console/webhooks/whe_') == 25
    assert f'href="/console/webhooks?starting_after={ids[24]}"' in first
    assert second.count('href="/console/webhooks/whe_') == 1 and ids[25] in second and "Next page" not in second


def test_no_endpoint_yet_says_so(admin):
    assert "No endpoint is registered yet" in _text(admin.get("/console/webhooks"))


# --- Webhook endpoints: registering --------------------------------------------------------------------------------

def test_the_new_endpoint_form_offers_every_event_type_as_a_checkbox(admin):
    page = _text(admin.get("/console/webhooks/new"))

    for event_type in events.EVENT_TYPES:
        assert f'type="checkbox" name="event_types" value="{event_type}"' in page


def test_registering_an_endpoint_shows_its_signing_secret_once_with_201(admin, in_app):
    response = submit(admin, "/console/webhooks/new", {"url": CRM, "description": "CRM", "enabled": "true",
                                                       "event_types": ["points.earned", "member.created"]})

    assert response.status_code == 201, _text(response)
    with in_app():
        [endpoint] = db.session.scalars(select(WebhookEndpoint)).all()
        stored = (endpoint.url, endpoint.description, endpoint.event_types, endpoint.enabled, endpoint.secret)
    assert stored[:4] == (CRM, "CRM", ["points.earned", "member.created"], True)
    assert f'<p class="secret" id="signing-secret">{stored[4]}</p>' in _text(response)
    assert "it is shown only on this page, never again" in _text(response)
    assert response.headers["Cache-Control"] == "no-store"


def test_no_event_type_ticked_means_every_type(admin, in_app):
    response = submit(admin, "/console/webhooks/new", {"url": CRM, "enabled": "true"})

    assert response.status_code == 201, _text(response)
    with in_app():
        assert db.session.scalar(select(WebhookEndpoint.event_types)) == []


def test_registered_disabled_the_endpoint_is_disabled(admin, in_app):
    submit(admin, "/console/webhooks/new", {"url": CRM, "enabled": "false"})

    with in_app():
        assert db.session.scalar(select(WebhookEndpoint.enabled)) is False


def test_the_signing_secret_is_not_in_the_session_nor_on_any_later_page(admin, in_app):
    response = submit(admin, "/console/webhooks/new", {"url": CRM, "enabled": "true"})
    assert response.status_code == 201
    with in_app():
        endpoint_id, secret = db.session.execute(select(WebhookEndpoint.public_id, WebhookEndpoint.secret)).one()

    later = [admin.get(path) for path in ("/console/webhooks", f"/console/webhooks/{endpoint_id}",
                                          f"/console/webhooks/{endpoint_id}/edit", "/console/")]

    assert [page.status_code for page in later] == [200, 200, 200, 200]
    assert not any(secret in _text(page) for page in later)
    assert secret not in _session_text(admin)


@pytest.mark.parametrize(("url", "message"), [
    pytest.param("ftp://crm.example.test/loyalty", "Only http:// and https:// URLs can receive events.", id="ftp"),
    pytest.param("https://user:pw@crm.example.test/", "The URL must not contain a user name or password.",
                 id="credentials"),
    pytest.param("", "Missing data for required field.", id="blank"),
    pytest.param("https://crm.example.test/" + "a" * 2000, "Length must be between 1 and 2000.", id="too long"),
])
def test_a_bad_url_is_422_inline_and_writes_nothing(url, message, admin, row_counts):
    before = row_counts()

    response = submit(admin, "/console/webhooks/new", {"url": url, "enabled": "true",
                                                       "event_types": ["tier.changed"]})

    assert response.status_code == 422
    page = _text(response)
    assert f'<p class="field-error" id="url-error">{message}</p>' in page
    assert 'value="tier.changed" checked' in page  # the form keeps what was typed
    assert row_counts() == before


@pytest.mark.parametrize(("url", "why"), [
    ("http://127.0.0.1/hook", "127.0.0.1 is a loopback address"),
    ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address"),
    ("http://10.0.0.1/hook", "10.0.0.1 is a private address"),
])
def test_in_production_a_private_address_is_refused_inline(url, why, admin, app, monkeypatch, row_counts):
    change_settings(monkeypatch, app, WEBHOOK_ALLOW_PRIVATE_URLS=False)
    before = row_counts()

    response = submit(admin, "/console/webhooks/new", {"url": url, "enabled": "true"})

    assert response.status_code == 422
    assert (f'<p class="field-error" id="url-error">{why}; events are only sent to public addresses.</p>'
            in _text(response))
    assert row_counts() == before


def test_an_unknown_event_type_is_422_and_writes_nothing(admin, row_counts):
    before = row_counts()

    response = submit(admin, "/console/webhooks/new", {"url": CRM, "event_types": ["points.stolen"]})

    assert response.status_code == 422
    assert "<code>event_types.0</code>" in _text(response)
    assert row_counts() == before


# --- Webhook endpoints: editing ------------------------------------------------------------------------------------

def test_the_edit_form_shows_the_endpoint_as_it_is(admin, register):
    endpoint_id = register(CRM, event_types=["tier.changed"], description="CRM")

    page = _text(admin.get(f"/console/webhooks/{endpoint_id}/edit"))

    assert f'value="{CRM}"' in page and 'value="CRM"' in page
    assert 'value="tier.changed" checked' in page and 'value="member.created" checked' not in page
    assert '<option value="true" selected>' in page


def test_editing_changes_the_url_the_event_types_and_enabled(admin, register, in_app):
    endpoint_id = register(CRM, description="CRM")

    response = submit(admin, f"/console/webhooks/{endpoint_id}/edit", {
        "url": "https://crm.example.test/v2", "event_types": ["tier.changed", "coupon.issued"], "enabled": "false"})

    assert (response.status_code, response.location) == (303, f"/console/webhooks/{endpoint_id}")
    endpoint = _endpoint(in_app, endpoint_id)
    assert (endpoint.url, endpoint.event_types, endpoint.enabled, endpoint.description) == (
        "https://crm.example.test/v2", ["tier.changed", "coupon.issued"], False, None)
    assert "Webhook endpoint saved." in _text(admin.get(response.location))


def test_unticking_every_event_type_sends_every_type_again(admin, register, in_app):
    endpoint_id = register(CRM, event_types=["tier.changed"])

    submit(admin, f"/console/webhooks/{endpoint_id}/edit", {"url": CRM, "enabled": "true"})

    assert _endpoint(in_app, endpoint_id).event_types == []


def test_enabling_a_failing_endpoint_again_clears_failing(admin, register, in_app):
    endpoint_id = register(CRM)
    with in_app():
        endpoint = outbound.get_endpoint(endpoint_id)
        endpoint.enabled, endpoint.failing, endpoint.consecutive_failures = False, True, 5
        db.session.commit()

    submit(admin, f"/console/webhooks/{endpoint_id}/edit", {"url": CRM, "enabled": "true"})

    endpoint = _endpoint(in_app, endpoint_id)
    assert (endpoint.enabled, endpoint.failing, endpoint.consecutive_failures) == (True, False, 0)


def test_in_production_an_edit_to_a_private_address_is_422_inline_and_changes_nothing(admin, register, in_app, app,
                                                                                      monkeypatch):
    endpoint_id = register("https://93.184.215.14/loyalty")
    change_settings(monkeypatch, app, WEBHOOK_ALLOW_PRIVATE_URLS=False)

    response = submit(admin, f"/console/webhooks/{endpoint_id}/edit", {
        "url": "http://127.0.0.1/hook", "event_types": ["tier.changed"], "enabled": "false"})

    assert response.status_code == 422
    page = _text(response)
    assert "127.0.0.1 is a loopback address; events are only sent to public addresses." in page
    assert 'value="http://127.0.0.1/hook"' in page
    endpoint = _endpoint(in_app, endpoint_id)
    assert (endpoint.url, endpoint.event_types, endpoint.enabled) == ("https://93.184.215.14/loyalty", [], True)


def test_an_unknown_endpoint_is_a_404_page(admin):
    for path in ("/console/webhooks/whe_nope", "/console/webhooks/whe_nope/edit"):
        response = admin.get(path)
        assert (response.status_code, response.mimetype) == (404, "text/html")
        assert "No webhook endpoint has this id." in _text(response)


# --- Webhook endpoints: the delivery log and replays ---------------------------------------------------------------

def test_the_endpoint_page_lists_its_deliveries_newest_first(admin, register, deliveries):
    endpoint_id = register(CRM)
    ids = deliveries(endpoint_id, ["delivered", "failed", "pending"])

    page = _text(admin.get(f"/console/webhooks/{endpoint_id}"))

    assert [page.index(f"Replay delivery {delivery_id}") for delivery_id in reversed(ids)] == sorted(
        page.index(f"Replay delivery {delivery_id}") for delivery_id in ids)
    assert "HTTP 500" in page and "answered HTTP 500" in page and "HTTP 200" in page
    assert [page.count(f'">{status}</span>') for status in ("Delivered", "Failed", "Pending")] == [1, 1, 1]


@pytest.mark.parametrize(("status", "expected"), [("delivered", [0, 3]), ("failed", [1]), ("pending", [2]),
                                                  ("", [0, 1, 2, 3])])
def test_the_delivery_log_filters_by_status(status, expected, admin, register, deliveries):
    endpoint_id = register(CRM)
    ids = deliveries(endpoint_id, ["delivered", "failed", "pending", "delivered"])

    page = _text(admin.get(f"/console/webhooks/{endpoint_id}?status={status}"))

    assert [delivery_id for delivery_id in ids if f"Replay delivery {delivery_id}" in page] == [
        ids[i] for i in expected]
    assert f'<option value="{status}" selected>' in page or not status


def test_a_filter_with_nothing_to_show_says_so(admin, register, deliveries):
    endpoint_id = register(CRM)
    deliveries(endpoint_id, ["delivered"])

    assert "No failed deliveries." in _text(admin.get(f"/console/webhooks/{endpoint_id}?status=failed"))


def test_an_unknown_status_filter_is_a_422_page(admin, register):
    endpoint_id = register(CRM)

    response = admin.get(f"/console/webhooks/{endpoint_id}?status=lost")

    assert (response.status_code, response.mimetype) == (422, "text/html")


def test_the_delivery_log_shows_25_a_page_newest_first(admin, register, deliveries):
    endpoint_id = register(CRM)
    ids = deliveries(endpoint_id, ["delivered"] * 26)

    first = _text(admin.get(f"/console/webhooks/{endpoint_id}?status=delivered"))
    second = _text(admin.get(f"/console/webhooks/{endpoint_id}?status=delivered&starting_after={ids[1]}"))

    assert first.count("Replay delivery") == 25 and f"Replay delivery {ids[0]}" not in first
    assert f"starting_after={ids[1]}" in first and "status=delivered" in first
    assert second.count("Replay delivery") == 1 and f"Replay delivery {ids[0]}" in second


def test_replaying_a_failed_delivery_makes_it_pending_again_at_once(admin, register, deliveries, in_app, clock):
    endpoint_id = register(CRM)
    [delivery_id] = deliveries(endpoint_id, ["failed"])
    clock.travel(timedelta(hours=2))

    response = submit(admin, f"/console/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay")

    assert (response.status_code, response.location) == (303, f"/console/webhooks/{endpoint_id}")
    row = _delivery(in_app, delivery_id)
    assert (row.status, row.next_attempt_at, row.delivered_at) == ("pending", T0 + timedelta(hours=2), None)
    assert f"Delivery {delivery_id} will be sent again" in _text(admin.get(response.location))


def test_replaying_a_delivered_delivery_makes_it_pending_again(admin, register, deliveries, in_app):
    endpoint_id = register(CRM)
    [delivery_id] = deliveries(endpoint_id, ["delivered"])

    submit(admin, f"/console/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay")

    row = _delivery(in_app, delivery_id)
    assert (row.status, row.delivered_at) == ("pending", None)


def test_replaying_another_endpoints_delivery_is_404_and_changes_nothing(admin, register, deliveries, in_app):
    one, other = register(CRM), register("https://mail.example.test/hook", event_types=["tier.changed"])
    [delivery_id] = deliveries(one, ["failed"])

    response = submit(admin, f"/console/webhooks/{other}/deliveries/{delivery_id}/replay")

    assert (response.status_code, response.mimetype) == (404, "text/html")
    assert _delivery(in_app, delivery_id).status == "failed"


# --- Stripe events: failed and waiting ones, retried ----------------------------------------------------------------

@pytest.fixture
def receive(in_app, clock):
    """Receive a Stripe event as the webhook does, at the clock's time; answers its id."""

    def make(event: dict) -> str:
        with in_app():
            inbound.receive(inbound.Verified(event["id"], event["type"], T0, False, event), None, now=clock())
            db.session.commit()
        return event["id"]

    return make


@pytest.fixture
def member_named(in_app):
    """A member whose public id is the one a Stripe event named: the cause of its failure, fixed."""

    def make(public_id: str) -> None:
        with in_app():
            publish_rules({"earn": {"rates": {"usd": "1"}}}, at=T0 - timedelta(days=1))
            member = members.enrol(members.NewMember(email=unique_email()), source="test")
            member.public_id = public_id
            db.session.commit()

    return make


def _payment(member_id: str, order_id: str = "ord_1") -> dict:
    intent = se.payment_intent(amount=5000, metadata={"loyalty_member_id": member_id, "order_id": order_id})
    return se.event("payment_intent.succeeded", intent)


def _refund_before_its_payment() -> dict:
    return se.event("charge.refunded", se.charge(amount=5000, amount_refunded=5000, payment_intent=se.new_id("pi")))


def _stripe_status(in_app, event_id: str) -> tuple[str, str]:
    with in_app():
        return tuple(db.session.execute(select(StripeEvent.status, StripeEvent.detail)
                                        .where(StripeEvent.event_id == event_id)).one())


@pytest.fixture
def stripe_world(receive) -> dict[str, str]:
    """A failed payment (for a member not yet known), a refund waiting for its payment, an applied-nothing
    ignored event; answers their ids."""
    return {"failed": receive(_payment("mem_not_yet")), "waiting": receive(_refund_before_its_payment()),
            "ignored": receive(se.event("charge.succeeded", se.charge(amount=5000, payment_intent="pi_x")))}


def test_the_stripe_events_page_shows_each_event_with_what_became_of_it_and_a_retry_for_those_not_settled(
        admin, stripe_world):
    page = _text(admin.get("/console/stripe-events"))

    for event_id in stripe_world.values():
        assert f"<code class=\"muted\">{event_id}</code>" in page
    assert "validation_error: Invalid input (member_id: No member has this id.)" in page
    assert "A refund arrived before its payment; applied once the payment is recorded." in page
    assert page.count('>Retry</button>') == 2
    assert f'action="/console/stripe-events/{stripe_world["failed"]}/retry"' in page
    assert f'action="/console/stripe-events/{stripe_world["waiting"]}/retry"' in page
    assert "1 failed</a>" in page and "1 waiting</a>" in page and "0 overdue</a>" in page


@pytest.mark.parametrize(("status", "shown"), [("failed", ["failed"]), ("waiting", ["waiting"]),
                                               ("ignored", ["ignored"]), ("applied", [])])
def test_the_stripe_events_page_filters_by_status(status, shown, admin, stripe_world):
    page = _text(admin.get(f"/console/stripe-events?status={status}"))

    assert [kind for kind, event_id in stripe_world.items() if event_id in page] == shown
    assert shown or f"No Stripe event is {status}." in page


def test_a_waiting_event_is_marked_overdue_after_the_configured_hours(admin, stripe_world, clock):
    clock.set(T0 + timedelta(hours=24))

    page = _text(admin.get("/console/stripe-events"))
    overdue = _text(admin.get("/console/stripe-events?status=overdue"))

    assert page.count('"badge badge-danger">Overdue<') == 1 and "1 overdue</a>" in page
    assert stripe_world["waiting"] in overdue and stripe_world["failed"] not in overdue


def test_retrying_a_failed_event_once_its_cause_is_fixed_applies_it(admin, stripe_world, member_named, in_app):
    member_named("mem_not_yet")

    response = submit(admin, f"/console/stripe-events/{stripe_world['failed']}/retry")

    assert (response.status_code, response.location) == (303, "/console/stripe-events")
    assert _stripe_status(in_app, stripe_world["failed"]) == ("applied", "Order ord_1 earned 50 points.")
    assert (f"Stripe event {stripe_world['failed']} tried again: applied. Order ord_1 earned 50 points."
            in _text(admin.get(response.location)))


def test_retrying_an_event_that_still_fails_says_so_and_changes_nothing(admin, stripe_world, in_app, row_counts):
    before = row_counts()

    response = submit(admin, f"/console/stripe-events/{stripe_world['failed']}/retry")

    assert (f'<div class="alert alert-warning" role="status">Stripe event {stripe_world["failed"]} tried again: '
            'failed. validation_error') in _text(admin.get(response.location))
    assert {table: count for table, count in row_counts().items() if count != before[table]} == {
        "audit_log": before["audit_log"] + 1}


def test_retrying_a_settled_event_is_a_409_page(admin, stripe_world):
    assert submit(admin, f"/console/stripe-events/{stripe_world['ignored']}/retry").status_code == 409


# --- API keys ------------------------------------------------------------------------------------------------------

def test_the_key_list_shows_name_prefix_scopes_created_last_used_and_revoked(admin, make_key, in_app, clock):
    used_id, _ = make_key("crm", ("members:read", "members:write"))
    revoked_id, _ = make_key("old checkout", ("checkout",))
    with in_app():
        used = db.session.scalar(select(ApiKey).where(ApiKey.public_id == used_id))
        used.last_used_at = T0 + timedelta(hours=1)
        auth.revoke_api_key(revoked_id)
        db.session.commit()
        prefixes = [key.prefix for key in db.session.scalars(select(ApiKey).order_by(ApiKey.id))]

    page = _text(admin.get("/console/api-keys"))

    assert ">crm<" in page and ">old checkout<" in page
    assert all(f"<code>{prefix}…</code>" in page for prefix in prefixes)
    assert "members:read, members:write" in page and "<td>checkout</td>" in page
    assert "2026-03-02 10:00 UTC" in page  # last used
    assert page.count(">Revoked<") == 1 and page.count(">Active<") == 1
    assert f"/console/api-keys/{used_id}/revoke" in page and f"/console/api-keys/{revoked_id}/revoke" not in page


def test_the_key_list_shows_25_a_page(admin, make_key):
    ids = [make_key(f"key {n}")[0] for n in range(26)]

    first = _text(admin.get("/console/api-keys"))
    second = _text(admin.get(f"/console/api-keys?starting_after={ids[24]}"))

    assert first.count("Revoke the key") == 25 and f"starting_after={ids[24]}" in first
    assert second.count("Revoke the key") == 1 and ids[25] in second


def test_the_new_key_form_offers_every_scope_as_a_checkbox(admin):
    page = _text(admin.get("/console/api-keys/new"))

    for scope in ("members:read", "members:write", "checkout", "admin"):
        assert f'type="checkbox" name="scopes" value="{scope}"' in page


def test_creating_a_key_shows_its_secret_once_with_201_and_the_key_works(admin, in_app, client, make_member):
    response = submit(admin, "/console/api-keys/new", {"name": "CRM", "scopes": ["members:read"]})

    assert response.status_code == 201, _text(response)
    page = _text(response)
    secret = page.split('<p class="secret" id="api-key-secret">')[1].split("</p>")[0]
    with in_app():
        [key] = db.session.scalars(select(ApiKey)).all()
        assert (key.name, key.scope_list, key.created_by_id is not None) == ("CRM", ["members:read"], True)
        assert secret.startswith(key.prefix) and key.key_hash != secret
    assert "it cannot be shown again" in page
    member = make_member()
    assert client.get(f"/v1/members/{member['id']}", headers=bearer(secret)).status_code == 200


def test_the_key_is_not_in_the_session_nor_on_any_later_page(admin):
    response = submit(admin, "/console/api-keys/new", {"name": "CRM", "scopes": ["checkout"]})
    secret = _text(response).split('<p class="secret" id="api-key-secret">')[1].split("</p>")[0]
    assert secret.startswith("lk_")

    later = [admin.get("/console/api-keys"), admin.get("/console/api-keys/new"), admin.get("/console/")]

    assert [page.status_code for page in later] == [200, 200, 200]
    assert not any(secret in _text(page) for page in later)
    assert secret not in _session_text(admin)


@pytest.mark.parametrize(("form", "field", "message"), [
    pytest.param({"name": "CRM"}, "scopes", "Missing data for required field.", id="no scopes"),
    pytest.param({"scopes": ["checkout"]}, "name", "Missing data for required field.", id="no name"),
    pytest.param({"name": "x" * 101, "scopes": ["checkout"]}, "name", "Length must be between 1 and 100.",
                 id="name too long"),
])
def test_a_bad_key_form_is_422_inline_and_writes_nothing(form, field, message, admin, row_counts):
    before = row_counts()

    response = submit(admin, "/console/api-keys/new", form)

    assert response.status_code == 422
    assert f'<p class="field-error" id="{field}-error">{message}</p>' in _text(response)
    assert row_counts() == before


def test_an_unknown_scope_is_422_and_writes_nothing(admin, row_counts):
    before = row_counts()

    response = submit(admin, "/console/api-keys/new", {"name": "CRM", "scopes": ["everything"]})

    assert response.status_code == 422
    assert row_counts() == before


def test_revoking_asks_first_and_changes_nothing_until_confirmed(admin, make_key, in_app):
    key_id, _ = make_key("CRM")

    page = _text(admin.get(f"/console/api-keys/{key_id}/revoke"))

    assert "Revoke this key now" in page and "Every request made with this key will be refused" in page
    assert _key(in_app, key_id).revoked_at is None


def test_a_revoked_key_is_refused_by_the_api_with_401(admin, make_key, make_member, client, in_app, clock):
    key_id, secret = make_key("CRM", ("members:read",))
    member = make_member()
    assert client.get(f"/v1/members/{member['id']}", headers=bearer(secret)).status_code == 200

    response = submit(admin, f"/console/api-keys/{key_id}/revoke")

    assert (response.status_code, response.location) == (303, "/console/api-keys")
    assert _key(in_app, key_id).revoked_at == T0
    assert client.get(f"/v1/members/{member['id']}", headers=bearer(secret)).status_code == 401
    listed = _text(admin.get(response.location))
    assert "API key “CRM”" in listed and "is revoked" in listed and ">Revoked<" in listed


def test_revoking_a_revoked_key_keeps_the_first_time(admin, make_key, in_app, clock):
    key_id, _ = make_key()
    submit(admin, f"/console/api-keys/{key_id}/revoke")
    clock.travel(timedelta(days=1))

    submit(admin, f"/console/api-keys/{key_id}/revoke")

    assert _key(in_app, key_id).revoked_at == T0
    assert "This key was revoked on 2026-03-02 09:00 UTC" in _text(admin.get(f"/console/api-keys/{key_id}/revoke"))


def test_revoking_an_unknown_key_is_a_404_page(admin):
    assert admin.get("/console/api-keys/key_nope/revoke").status_code == 404
    assert submit(admin, "/console/api-keys/key_nope/revoke").status_code == 404


# --- Admins only, and CSRF -----------------------------------------------------------------------------------------

@pytest.fixture
def world(register, deliveries, make_key, receive, member_named) -> dict[str, str]:
    endpoint = register(CRM)
    [delivery] = deliveries(endpoint, ["failed"])
    key, _ = make_key()
    stripe_event = receive(_payment("mem_world"))
    member_named("mem_world")  # so a retry would apply it
    return {"endpoint": endpoint, "delivery": delivery, "key": key, "stripe_event": stripe_event}


def _pages(world: dict[str, str]) -> list[str]:
    return ["/console/webhooks", "/console/webhooks/new", f"/console/webhooks/{world['endpoint']}",
            f"/console/webhooks/{world['endpoint']}/edit", "/console/stripe-events", "/console/api-keys",
            "/console/api-keys/new", f"/console/api-keys/{world['key']}/revoke"]


def _posts(world: dict[str, str]) -> list[tuple[str, dict]]:
    return [
        ("/console/webhooks/new", {"url": "https://other.example.test/", "enabled": "true"}),
        (f"/console/webhooks/{world['endpoint']}/edit", {"url": "https://other.example.test/", "enabled": "false"}),
        (f"/console/webhooks/{world['endpoint']}/deliveries/{world['delivery']}/replay", {}),
        (f"/console/stripe-events/{world['stripe_event']}/retry", {}),
        ("/console/api-keys/new", {"name": "sneaky", "scopes": ["admin"]}),
        (f"/console/api-keys/{world['key']}/revoke", {}),
    ]


def _state(in_app, world: dict[str, str]) -> tuple:
    endpoint, delivery, key = (_endpoint(in_app, world["endpoint"]), _delivery(in_app, world["delivery"]),
                               _key(in_app, world["key"]))
    return endpoint.url, endpoint.enabled, delivery.status, key.revoked_at, _stripe_status(in_app,
                                                                                          world["stripe_event"])


def test_every_page_renders_for_an_admin(admin, world):
    for path in _pages(world):
        assert admin.get(path).status_code == 200, path


@pytest.mark.parametrize("role", ["analyst", "support", "manager"])
def test_every_page_is_403_for_other_roles(role, console_client, world):
    client = console_client(role)

    answered = {path: client.get(path).status_code for path in _pages(world)}

    assert set(answered.values()) == {403}, answered


@pytest.mark.parametrize("role", ["analyst", "support", "manager"])
def test_every_form_action_is_403_for_other_roles_and_changes_nothing(role, console_client, world, in_app,
                                                                      row_counts):
    client = console_client(role)
    before, state = row_counts(), _state(in_app, world)

    answered = {path: submit(client, path, data).status_code for path, data in _posts(world)}

    assert set(answered.values()) == {403}, answered
    assert (row_counts(), _state(in_app, world)) == (before, state)


def test_the_nav_shows_integrations_to_admins_only(console_client):
    assert 'href="/console/api-keys"' in _text(console_client("admin").get("/console/"))
    assert 'href="/console/api-keys"' not in _text(console_client("manager").get("/console/"))


def test_an_anonymous_visitor_is_sent_to_sign_in(client):
    response = client.get("/console/api-keys")
    assert (response.status_code, response.location) == (302, "/console/login?next=/console/api-keys")


def test_every_form_action_without_the_csrf_token_is_400_and_changes_nothing(admin, world, in_app, row_counts):
    before, state = row_counts(), _state(in_app, world)

    answered = {path: admin.post(path, data=data).status_code for path, data in _posts(world)}

    assert set(answered.values()) == {400}, answered
    assert (row_counts(), _state(in_app, world)) == (before, state)
