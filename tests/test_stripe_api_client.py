"""The optional Stripe API client: a Checkout Session's line items fetched when a key is set, from a local
server standing in for api.stripe.com (no network beyond 127.0.0.1)."""

import copy
import json
from http.server import BaseHTTPRequestHandler

import pytest
from sqlalchemy import event, select

from loyalty.extensions import db
from loyalty.members import service as members
from loyalty.orders.models import Order
from loyalty.webhooks.models import StripeEvent
from tests import stripe_events as se
from tests.conftest import bearer, change_settings, publish_rules
from tests.local_server import serving

SECRET = "whsec_test_client_" + "k" * 20
LINE_ITEMS = {"object": "list", "has_more": False, "url": "/v1/checkout/sessions/cs_1/line_items", "data": [
    {"id": "li_1", "object": "item", "amount_discount": 500, "amount_subtotal": 5000, "amount_tax": 0,
     "amount_total": 4500, "currency": "usd", "description": "Tee", "quantity": 2,
     "price": {"id": "price_1", "object": "price", "product": "prod_TEE", "unit_amount": 2500, "currency": "usd",
               "active": True, "type": "one_time"}},
]}


class FakeStripe(BaseHTTPRequestHandler):
    answer_status = 200
    line_items = LINE_ITEMS
    seen: list[tuple[str, str]] = []
    # The app's database transactions open at each call (see `open_transactions`).
    transactions_open: set[int] = set()
    transactions_open_when_called: list[int] = []

    def do_GET(self):
        type(self).seen.append((self.path, self.headers.get("Authorization", "")))
        type(self).transactions_open_when_called.append(len(self.transactions_open))
        body = json.dumps(self.line_items if self.answer_status == 200 else
                          {"error": {"type": "api_error", "message": "boom"}}).encode()
        self.send_response(self.answer_status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stripe_api(app, monkeypatch):
    FakeStripe.seen, FakeStripe.answer_status, FakeStripe.line_items = [], 200, LINE_ITEMS
    FakeStripe.transactions_open, FakeStripe.transactions_open_when_called = set(), []
    with serving(FakeStripe) as server:
        change_settings(monkeypatch, app, STRIPE_API_KEY="sk_test_local")
        change_settings(monkeypatch, app, STRIPE_API_BASE=server.base_url)
        change_settings(monkeypatch, app, STRIPE_WEBHOOK_SECRET=SECRET)
        yield FakeStripe


@pytest.fixture
def earning(app):
    with app.app_context():
        publish_rules({"earn": {"rates": {"usd": "1"}}})


@pytest.fixture
def open_transactions(app, stripe_api):
    """Counts the database transactions open in the app's engine, for the fake Stripe to read when called."""
    with app.app_context():
        engine = db.engine
    began = lambda connection: stripe_api.transactions_open.add(id(connection))  # noqa: E731
    ended = lambda connection: stripe_api.transactions_open.discard(id(connection))  # noqa: E731
    listeners = [("begin", began), ("commit", ended), ("rollback", ended)]
    for name, listener in listeners:
        event.listen(engine, name, listener)
    yield stripe_api
    for name, listener in listeners:
        event.remove(engine, name, listener)


def _completed(client, member_id: str, event_id: str | None = None):
    session = se.checkout_session(amount_subtotal=5000, amount_total=4500, amount_discount=500,
                                  metadata={"loyalty_member_id": member_id, "order_id": "ord-cs"},
                                  payment_intent="pi_cs", session_id="cs_1")
    payload = se.body(se.event("checkout.session.completed", session, event_id=event_id))
    return client.post("/v1/webhooks/stripe", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": se.sign(payload, SECRET)})


def _order_lines(app) -> list[dict]:
    with app.app_context():
        return db.session.scalar(select(Order).where(Order.order_id == "ord-cs")).lines


def test_a_sessions_line_items_are_fetched_with_the_api_key(app, client, make_member, stripe_api, earning):
    response = _completed(client, make_member()["id"])
    assert response.get_json()["status"] == "applied"
    assert stripe_api.seen[0][0].startswith("/v1/checkout/sessions/cs_1/line_items")
    assert stripe_api.seen[0][1] == "Bearer sk_test_local"
    assert _order_lines(app) == [{"sku": "prod_TEE", "quantity": 2, "unit_amount": 2500, "discount_amount": 500}]


def test_without_the_line_items_the_session_is_applied_from_its_payload(app, client, make_member, stripe_api,
                                                                        earning):
    stripe_api.answer_status = 500
    response = _completed(client, make_member()["id"])
    assert response.get_json()["status"] == "applied"
    assert _order_lines(app) == [{"sku": "checkout_session", "quantity": 1, "unit_amount": 5000}]


def test_without_an_api_key_nothing_is_fetched(app, client, make_member, stripe_api, earning, monkeypatch):
    change_settings(monkeypatch, app, STRIPE_API_KEY="")
    assert _completed(client, make_member()["id"]).get_json()["status"] == "applied"
    assert stripe_api.seen == []


@pytest.mark.real_commits  # counts the engine's real transactions, which a test's SAVEPOINTs would hide
def test_stripe_is_called_before_any_database_transaction_begins(app, client, make_member, open_transactions,
                                                                 earning):
    member_id = make_member()["id"]
    assert _completed(client, member_id).get_json()["status"] == "applied"
    assert open_transactions.transactions_open_when_called == [0]


def test_a_retry_applies_the_line_items_fetched_when_the_event_arrived_without_calling_stripe_again(
        app, client, make_api_key, stripe_api, earning):
    assert _completed(client, "mem_imported_later", event_id="evt_cs_late").get_json()["status"] == "failed"
    with app.app_context():
        member = members.get_member(members.enrol(members.NewMember(email="late@example.com"), source="test")
                                    .public_id)
        member.public_id = "mem_imported_later"
        db.session.commit()
    stripe_api.answer_status = 500  # were it asked again, the order would be recorded from the payload alone

    response = client.post("/v1/admin/stripe-events/evt_cs_late/retry", headers=bearer(make_api_key("admin")))

    assert (response.status_code, response.get_json()["status"]) == (200, "applied")
    assert len(stripe_api.seen) == 1
    assert _order_lines(app) == [{"sku": "prod_TEE", "quantity": 2, "unit_amount": 2500, "discount_amount": 500}]


def test_line_items_that_would_not_fit_an_order_fail_the_event_with_the_reason(app, client, make_member,
                                                                              stripe_api, earning):
    stripe_api.line_items = copy.deepcopy(LINE_ITEMS)
    stripe_api.line_items["data"][0]["price"]["product"] = "prod_" + "x" * 200

    assert _completed(client, make_member()["id"], event_id="evt_long_sku").get_json()["status"] == "failed"

    with app.app_context():
        assert db.session.scalar(select(StripeEvent.detail).where(StripeEvent.event_id == "evt_long_sku")) == (
            "invalid_payload: lines.0.sku: Length must be between 1 and 128.")
        assert db.session.scalar(select(Order).where(Order.order_id == "ord-cs")) is None
