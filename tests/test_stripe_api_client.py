"""The optional Stripe API client: a Checkout Session's line items fetched when a key is set, from a local
server standing in for api.stripe.com (no network beyond 127.0.0.1)."""

import json
from http.server import BaseHTTPRequestHandler

import pytest
from sqlalchemy import select

from loyalty.checkout.models import Order
from loyalty.extensions import db
from tests import stripe_events as se
from tests.conftest import publish_rules
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
    seen: list[tuple[str, str]] = []

    def do_GET(self):
        type(self).seen.append((self.path, self.headers.get("Authorization", "")))
        body = json.dumps(LINE_ITEMS if self.answer_status == 200 else
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
    FakeStripe.seen, FakeStripe.answer_status = [], 200
    with serving(FakeStripe) as server:
        monkeypatch.setitem(app.config, "STRIPE_API_KEY", "sk_test_local")
        monkeypatch.setitem(app.config, "STRIPE_API_BASE", server.base_url)
        monkeypatch.setitem(app.config, "STRIPE_WEBHOOK_SECRET", SECRET)
        yield FakeStripe


@pytest.fixture
def earning(app):
    with app.app_context():
        publish_rules({"earn": {"rates": {"usd": "1"}}})


def _completed(client, member_id: str):
    session = se.checkout_session(amount_subtotal=5000, amount_total=4500, amount_discount=500,
                                  metadata={"loyalty_member_id": member_id, "order_id": "ord-cs"},
                                  payment_intent="pi_cs", session_id="cs_1")
    payload = se.body(se.event("checkout.session.completed", session))
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
    monkeypatch.setitem(app.config, "STRIPE_API_KEY", "")
    assert _completed(client, make_member()["id"]).get_json()["status"] == "applied"
    assert stripe_api.seen == []
