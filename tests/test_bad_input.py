"""Bad input is refused with problem+json and an exact code, and changes nothing.

Every JSON-write endpoint gets the same battery: malformed JSON, the wrong content type,
a body that is not an object, missing, wrong-typed, unknown and oversized fields, and a body
over the 1 MiB limit. Endpoints addressing a resource by id get unknown and odd ids; the Stripe
webhook gets unsigned, forged and malformed deliveries. List queries and unknown routes are
covered at the end.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import pytest
from flask import Flask

from loyalty.checkout import service as checkout
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.offers import service as offers
from loyalty.webhooks import outbound
from tests import stripe_events
from tests.conftest import PASSWORD, assert_problem, bearer, change_settings, csrf_token, unique_email

ONE_MIB = 1024 * 1024
LINES = [{"sku": "SKU-1", "quantity": 1, "unit_amount": 1000}]
RULES = {"earn": {"rates": {"usd": "1"}}}
COUPON = "TENOFF"  # the public code of the offer the `post` fixture makes
IDEMPOTENCY_KEY = {"Idempotency-Key": "bad-input-1"}  # errors are not stored, so one key serves every case


@dataclass(frozen=True)
class Endpoint:
    path: str
    scope: str | None  # the API key scope it is called with, if any
    required: tuple[str, ...]
    wrong_type: tuple[str, object]  # a field and a value of the wrong JSON type
    oversized: str  # a string field
    extra: dict = field(default_factory=dict)  # valid optional fields besides the required ones
    success: int = 201
    headers: dict = field(default_factory=dict)  # sent with every request, e.g. a required Idempotency-Key
    method: str = "POST"

    @property
    def id(self) -> str:
        return self.path if self.method == "POST" else f"{self.method} {self.path}"

    def valid_body(self) -> dict:
        values = {
            "email": unique_email("bad-input"),
            "password": PASSWORD,
            "role": "analyst",
            "name": "Shop server",
            "scopes": ["checkout"],
            "points": 10,
            "reason": "Goodwill",
            "order_id": unique_email("order"),
            "member_id": "{member}",  # the member the `post` fixture made
            "currency": "usd",
            "lines": LINES,
            "total_amount": 1000,
            "document": RULES,
            "type": "review",
            "order": {"currency": "usd", "lines": LINES},
            "kind": "percent_off",
            "code": "base",
            "rank": 0,
            "threshold": 0,
            "basis": "points",
            "window_days": 365,
            "offer_id": "{offer}",  # an offer the `post` fixture made
            "points_cost": 100,
            "amount": 1000,  # the paid order's total, so also a refund of all of it
            "refund_id": "re_bad_input",
            "url": "https://hooks.example.test/loyalty",
            "purpose": "sms",
            "granted": True,
        }
        return {**{name: values[name] for name in self.required}, **self.extra}


ENDPOINTS = [
    Endpoint("/v1/signup", None, ("email", "password"), ("email", 42), "name", {"name": "Ada"}),
    Endpoint("/v1/auth/login", None, ("email", "password"), ("email", 42), "email"),
    Endpoint("/v1/auth/staff/login", None, ("email", "password"), ("email", 42), "email"),
    Endpoint("/v1/members", "members:write", ("email",), ("email", 42), "name", {"name": "Ada"}),
    Endpoint("/v1/admin/staff", "admin", ("email", "role", "password"), ("email", 42), "name"),
    Endpoint("/v1/admin/api-keys", "admin", ("name", "scopes"), ("name", 42), "name"),
    Endpoint("/v1/admin/members/{member}/adjustments", "admin", ("points", "reason"), ("points", "ten"), "reason"),
    Endpoint("/v1/members/{member}/events", "members:write", ("type",), ("type", 42), "type"),
    Endpoint("/v1/members/{member}/consents", "members:write", ("purpose", "granted"), ("granted", "yes"), "purpose",
             success=200),
    Endpoint("/v1/orders", "checkout", ("order_id", "member_id", "currency", "lines", "total_amount"),
             ("total_amount", "ten"), "order_id"),
    Endpoint("/v1/admin/rules", "admin", ("document",), ("document", "x"), "note"),
    Endpoint("/v1/admin/offers", "admin", ("name", "kind"), ("percent", "ten"), "name", {"percent": 10}),
    Endpoint("/v1/admin/rewards", "admin", ("offer_id", "name", "points_cost"), ("points_cost", "lots"), "name"),
    Endpoint("/v1/admin/tiers", "admin", ("code", "name", "rank", "threshold", "basis", "window_days"),
             ("rank", "first"), "name"),
    Endpoint("/v1/admin/rules/simulate", "admin", ("order",), ("order", "x"), "member_id", {"rules": RULES},
             success=200),
    Endpoint("/v1/checkout/quote", "checkout", ("member_id", "currency", "lines"), ("lines", "x"), "coupon_code",
             {"coupon_code": COUPON}, success=200),
    Endpoint("/v1/redemptions", "checkout", ("member_id", "order_id", "currency", "amount"), ("amount", "ten"),
             "order_id", {"coupon_code": COUPON}, headers=IDEMPOTENCY_KEY),
    Endpoint("/v1/orders/{order}/refunds", "checkout", ("refund_id", "amount"), ("amount", "ten"), "refund_id",
             {"reason": "Damaged"}),
    Endpoint("/v1/admin/webhook-endpoints", "admin", ("url",), ("url", 42), "url",
             {"description": "CRM", "event_types": ["points.earned"], "enabled": True}),
    Endpoint("/v1/admin/webhook-endpoints/{endpoint}", "admin", (), ("event_types", "points.earned"), "description",
             {"url": "https://hooks.example.test/v2", "event_types": ["tier.changed"], "enabled": False},
             success=200, method="PATCH"),
]
BY_PATH = pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.id for e in ENDPOINTS])
MISSING = [
    pytest.param(endpoint, name, id=f"{endpoint.id} without {name}")
    for endpoint in ENDPOINTS for name in endpoint.required
]


@pytest.fixture
def targets(app: Flask, make_member) -> Callable[[str], dict[str, str]]:
    """What the placeholders in `text` stand for, made for the test: "{member}" a member, "{offer}" an offer
    with the public code COUPON, "{redemption}" a held coupon-only redemption, "{order}" a paid order and
    "{endpoint}" a webhook endpoint."""

    def made_for(text: str) -> dict[str, str]:
        made = {"{member}": make_member()["id"]}
        with app.app_context():
            offer = offers.create_offer({"name": "Ten", "kind": "percent_off", "percent": 10, "code": COUPON})
            made["{offer}"] = offer.public_id
            if "{redemption}" in text:
                made["{redemption}"] = checkout.create_redemption(
                    {"member_id": made["{member}"], "order_id": unique_email("held-order"), "currency": "usd",
                     "amount": 1000, "coupon_code": COUPON}, now=now(), hold_for=timedelta(minutes=30)).public_id
            if "{order}" in text:
                made["{order}"] = checkout.record_paid_order(
                    {"order_id": unique_email("paid-order"), "member_id": made["{member}"], "currency": "usd",
                     "lines": LINES, "total_amount": 1000}, now=now()).order.order_id
            if "{endpoint}" in text:
                made["{endpoint}"] = outbound.create_endpoint({"url": "https://hooks.example.test/a"},
                                                              allow_private=True).public_id
            db.session.commit()
        return made

    return made_for


def _fill(text: str, made: dict[str, str]) -> str:
    for placeholder, value in made.items():
        text = text.replace(placeholder, value)
    return text


@pytest.fixture
def post(app: Flask, make_api_key, targets, endpoint: Endpoint) -> Callable[..., object]:
    """Send to the test's endpoint (POST, unless it says otherwise, or `method=` says) as a caller it accepts; its
    API key (and what the path and body name) exist before the test begins."""
    headers = {**(bearer(make_api_key(endpoint.scope)) if endpoint.scope else {}), **endpoint.headers}
    made = targets(endpoint.path)
    path = _fill(endpoint.path, made)
    client = app.test_client()

    def send(**kwargs):
        body = kwargs.get("json")
        if isinstance(body, dict):
            kwargs["json"] = {name: _fill(value, made) if isinstance(value, str) else value
                              for name, value in body.items()}
        return client.open(path, method=kwargs.pop("method", endpoint.method), headers=headers, **kwargs)

    return send


# --- The control: each case below spoils this body in exactly one way --------------------------

@BY_PATH
def test_the_unspoilt_body_passes_validation(endpoint, post):
    response = post(json=endpoint.valid_body())

    if endpoint.path.startswith("/v1/auth/"):  # valid, but no such account
        assert_problem(response, 401, "invalid_credentials")
    else:
        assert response.status_code == endpoint.success, response.get_data(as_text=True)


# --- The shape of the body ---------------------------------------------------------------------

@BY_PATH
def test_malformed_json_is_400_invalid_json(endpoint, post, row_counts):
    before = row_counts()
    response = post(data='{"email": "a@example.test",', content_type="application/json")

    assert_problem(response, 400, "invalid_json")
    assert row_counts() == before


@BY_PATH
@pytest.mark.parametrize(("content_type", "encode"), [
    pytest.param("text/plain", json.dumps, id="json sent as text/plain"),
    pytest.param("application/x-www-form-urlencoded", lambda body: urlencode(body, doseq=True), id="form"),
])
def test_a_body_that_is_not_json_is_415_unsupported_media_type(endpoint, content_type, encode, post,
                                                                row_counts):
    before = row_counts()
    response = post(data=encode(endpoint.valid_body()), content_type=content_type)

    assert_problem(response, 415, "unsupported_media_type")
    assert row_counts() == before


@BY_PATH
@pytest.mark.parametrize("body", [[], ["email"], "a string", 42], ids=["empty array", "array", "string",
                                                                         "number"])
def test_a_json_body_that_is_not_an_object_is_422(endpoint, body, post, row_counts):
    before = row_counts()
    response = post(json=body)

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"]
    assert row_counts() == before


@BY_PATH
def test_a_body_nested_past_32_levels_is_400_invalid_json(endpoint, post, row_counts):
    before = row_counts()
    response = post(data='{"name": ' + "[" * 1000 + "]" * 1000 + "}", content_type="application/json")

    problem = assert_problem(response, 400, "invalid_json")
    assert "32" in problem["detail"]
    assert row_counts() == before


# --- The fields --------------------------------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "name"), MISSING)
def test_a_missing_required_field_is_422_naming_it(endpoint, name, post, row_counts):
    before = row_counts()
    body = endpoint.valid_body()
    del body[name]
    response = post(json=body)

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {name}
    assert row_counts() == before


@BY_PATH
def test_a_wrong_typed_field_is_422_naming_it(endpoint, post, row_counts):
    before = row_counts()
    name, value = endpoint.wrong_type
    response = post(json={**endpoint.valid_body(), name: value})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {name}
    assert row_counts() == before


@BY_PATH
def test_an_unknown_field_is_422_naming_it(endpoint, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), "nickname": "Ada"})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {"nickname"}
    assert problem["errors"]["nickname"] and all(problem["errors"]["nickname"])
    assert row_counts() == before


@BY_PATH
def test_an_oversized_string_field_is_422_naming_it(endpoint, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), endpoint.oversized: "x" * 10_000})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {endpoint.oversized}
    assert row_counts() == before


@BY_PATH
def test_a_body_over_one_mib_is_413_payload_too_large(endpoint, post, row_counts):
    before = row_counts()
    body = {**endpoint.valid_body(), endpoint.oversized: "x" * ONE_MIB}
    response = post(json=body)

    assert_problem(response, 413, "payload_too_large")
    assert row_counts() == before


def test_a_chunked_body_over_one_mib_is_413_not_read_as_its_first_mib(live_server, make_api_key, row_counts):
    """Without a Content-Length, werkzeug stops reading at the limit: a valid body padded past it was read as its
    first MiB and accepted."""
    headers = {**bearer(make_api_key("members:write")), "Content-Type": "application/json",
               "Transfer-Encoding": "chunked"}
    before = row_counts()
    payload = json.dumps({"email": unique_email("chunked")}).encode() + b" " * ONE_MIB
    connection = http.client.HTTPConnection(urlsplit(live_server).netloc, timeout=10)
    connection.request("POST", "/v1/members", body=iter([payload[:ONE_MIB // 2], payload[ONE_MIB // 2:]]),
                       encode_chunked=True, headers=headers)
    response = connection.getresponse()
    status, problem = response.status, json.loads(response.read())
    connection.close()

    assert (status, problem["code"]) == (413, "payload_too_large")
    assert row_counts() == before


# --- Who the body names --------------------------------------------------------------------------

NAMING_A_MEMBER = [endpoint for endpoint in ENDPOINTS if "member_id" in endpoint.required]


@pytest.mark.parametrize("endpoint", NAMING_A_MEMBER, ids=[e.path for e in NAMING_A_MEMBER])
@pytest.mark.parametrize("member_id", ["mem_doesnotexist", "mem_\u0000"], ids=["unknown", "with a NUL"])
def test_a_member_id_no_member_has_is_422_naming_it(endpoint, member_id, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), "member_id": member_id})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {"member_id"}
    assert row_counts() == before


# --- Values past their bounds: each is refused by the schema, never by the database ---------------------

BY_ID = {endpoint.id: endpoint for endpoint in ENDPOINTS}
PAST_INT4 = 2**31  # one past PostgreSQL's integer column


@pytest.mark.parametrize(("endpoint", "name"), [
    pytest.param(BY_ID[path], name, id=f"{path} {name}")
    for path, name in [("/v1/admin/offers", "usage_limit_total"), ("/v1/admin/offers", "usage_limit_per_member"),
                       ("/v1/admin/rewards", "stock"), ("/v1/admin/rewards", "per_member_limit")]
])
def test_a_count_past_an_integer_column_is_422_naming_it(endpoint, name, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), name: PAST_INT4})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {name}
    assert row_counts() == before


MOST_LINES = [{"sku": "SKU-1", "quantity": 100_000, "unit_amount": 10**12}] * 93  # each line within its bounds


@pytest.mark.parametrize(("endpoint", "body", "name"), [
    pytest.param(BY_ID["/v1/orders"], {"lines": MOST_LINES}, "lines", id="an order"),
    pytest.param(BY_ID["/v1/checkout/quote"], {"lines": MOST_LINES}, "lines", id="a quote"),
    pytest.param(BY_ID["/v1/redemptions"], {"lines": MOST_LINES}, "lines", id="a redemption"),
    pytest.param(BY_ID["/v1/admin/rules/simulate"], {"order": {"currency": "usd", "lines": MOST_LINES}},
                 "order.lines", id="a simulated order"),
])
def test_lines_that_add_up_past_a_bigint_are_422_naming_them(endpoint, body, name, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), **body})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {name}
    assert row_counts() == before


@pytest.mark.parametrize(("endpoint", "name"), [
    pytest.param(BY_ID[path], name, id=f"{path} {name}")
    for path, name in [("/v1/orders", "paid_at"), ("/v1/members/{member}/events", "occurred_at"),
                       ("/v1/admin/offers", "starts_at"), ("/v1/admin/offers", "ends_at"),
                       ("/v1/admin/members/{member}/adjustments", "expires_at")]
])
@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "1999-12-31T23:59:59Z",
                                    "2100-01-01T00:00:00Z"])
def test_a_time_outside_the_years_2000_to_2099_is_422_naming_it(endpoint, name, moment, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), name: moment})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {name}
    assert row_counts() == before


@BY_PATH
@pytest.mark.parametrize("text", ["\ud800", "Ada \udfff", "\x00"], ids=["a lone high surrogate",
                                                                        "a lone low surrogate", "NUL"])
def test_text_no_column_can_store_is_422_naming_the_field(endpoint, text, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), endpoint.oversized: text})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {endpoint.oversized}
    assert row_counts() == before


@pytest.mark.parametrize(("endpoint", "body", "name"), [
    pytest.param(BY_ID["/v1/orders"], {"lines": [{**LINES[0], "sku": "\ud800"}]}, "lines.0.sku", id="a line's sku"),
    pytest.param(BY_ID["/v1/members/{member}/events"], {"properties": {"stars": "\ud800"}}, "properties.stars",
                 id="a property's value"),
    pytest.param(BY_ID["/v1/members/{member}/events"], {"properties": {"\ud800": 5}}, "properties.\ud800",
                 id="a property's name"),
    pytest.param(BY_ID["/v1/admin/rules"], {"document": {"earn": {"rates": {"usd": "1\ud800"}}}},
                 "document.earn.rates.usd", id="inside a rules document"),
])
def test_nested_text_no_column_can_store_is_422_naming_where(endpoint, body, name, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), **body})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {name}
    assert row_counts() == before


# A pattern's `$` also matches before a final newline: "usd\n" must not pass as a currency (it overflows the column).
@pytest.mark.parametrize(("endpoint", "name", "value"), [
    pytest.param(BY_ID[path], name, value, id=f"{path} {name}")
    for path, name, value in [
        ("/v1/orders", "currency", "usd\n"), ("/v1/redemptions", "currency", "usd\n"),
        ("/v1/checkout/quote", "currency", "usd\n"), ("/v1/admin/offers", "code", "TENOFF\n"),
        ("/v1/admin/tiers", "code", "base\n"), ("/v1/members/{member}/events", "type", "review\n"),
        ("/v1/members/{member}/events", "reference", "sku-1\n")]
])
def test_a_patterned_field_with_a_trailing_newline_is_422_naming_it(endpoint, name, value, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), name: value})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {name}
    assert row_counts() == before


# --- Updates: row counts cannot see a changed row, so the resource is read back -----------------

UPDATES = [endpoint for endpoint in ENDPOINTS if endpoint.method == "PATCH"]
SPOILERS = [
    pytest.param(lambda e: {**e.valid_body(), e.wrong_type[0]: e.wrong_type[1]}, id="a wrong-typed field"),
    pytest.param(lambda e: {**e.valid_body(), "nickname": "Ada"}, id="an unknown field"),
    pytest.param(lambda e: {**e.valid_body(), e.oversized: "x" * 10_000}, id="an oversized field"),
    pytest.param(lambda e: [e.valid_body()], id="an array"),
]


@pytest.mark.parametrize("endpoint", UPDATES, ids=[e.id for e in UPDATES])
@pytest.mark.parametrize("spoil", SPOILERS)
def test_a_refused_update_leaves_the_resource_as_it_was(endpoint, spoil, post):
    before = post(method="GET")
    assert before.status_code == 200, before.get_data(as_text=True)

    response = post(json=spoil(endpoint))

    assert_problem(response, 422, "validation_error")
    assert post(method="GET").get_json() == before.get_json()


# --- Resources addressed by id -----------------------------------------------------------------

@dataclass(frozen=True)
class Addressed:
    method: str
    path: str  # with one placeholder for the id
    placeholder: str
    body: dict | None = None
    success: int = 200
    scope: str = "checkout"


ADDRESSED = [
    Addressed("GET", "/v1/redemptions/{redemption}", "{redemption}"),
    Addressed("POST", "/v1/redemptions/{redemption}/capture", "{redemption}"),
    Addressed("POST", "/v1/redemptions/{redemption}/cancel", "{redemption}"),
    Addressed("POST", "/v1/orders/{order}/refunds", "{order}", {"refund_id": "re_1", "amount": 100}, success=201),
    Addressed("GET", "/v1/admin/webhook-endpoints/{endpoint}", "{endpoint}", scope="admin"),
    Addressed("PATCH", "/v1/admin/webhook-endpoints/{endpoint}", "{endpoint}", {"enabled": False}, scope="admin"),
    Addressed("GET", "/v1/admin/webhook-endpoints/{endpoint}/deliveries", "{endpoint}", scope="admin"),
    Addressed("GET", "/v1/members/{member}/consents", "{member}", scope="members:read"),
    Addressed("POST", "/v1/members/{member}/consents", "{member}", {"purpose": "sms", "granted": True},
              scope="members:write"),
    Addressed("GET", "/v1/admin/members/{member}/export", "{member}", scope="admin"),
    Addressed("POST", "/v1/admin/members/{member}/erase", "{member}", scope="admin"),
]
BY_ADDRESS = pytest.mark.parametrize("addressed", ADDRESSED, ids=[f"{a.method} {a.path}" for a in ADDRESSED])


@pytest.fixture
def send_to(app: Flask, make_api_key, targets, addressed: Addressed) -> Callable[[str | None], object]:
    """Call the test's endpoint with its scope, for the id given (None: the one the fixture made)."""
    headers = bearer(make_api_key(addressed.scope))
    made = targets(addressed.path)
    client = app.test_client()

    def send(target: str | None):
        path = addressed.path.replace(addressed.placeholder, made[addressed.placeholder] if target is None else target)
        return client.open(path, method=addressed.method, json=addressed.body, headers=headers)

    return send


@BY_ADDRESS
def test_the_resource_the_fixture_made_answers(addressed, send_to):
    response = send_to(None)

    assert response.status_code == addressed.success, response.get_data(as_text=True)


@BY_ADDRESS
@pytest.mark.parametrize("target", [
    pytest.param("red_doesnotexist", id="unknown"),
    pytest.param("x" * 10_000, id="10000 characters"),
    pytest.param("%27%20OR%201%3D1%20--", id="SQL"),
    pytest.param("%F0%9F%92%A9", id="emoji"),
    pytest.param("%FF", id="not UTF-8"),
    pytest.param("red_%00", id="with a NUL"),
])
def test_an_id_no_resource_has_is_404_not_found(addressed, target, send_to, row_counts):
    before = row_counts()
    response = send_to(target)

    assert_problem(response, 404, "not_found")
    assert row_counts() == before


# --- The Stripe webhook: only deliveries that verify are read ------------------------------------

WEBHOOK_SECRET = "whsec_bad_input"
WEBHOOK = "/v1/webhooks/stripe"


@pytest.fixture
def webhook(app: Flask, monkeypatch) -> Callable[..., object]:
    """POST a raw body to the Stripe webhook, configured with WEBHOOK_SECRET, with this Stripe-Signature."""
    change_settings(monkeypatch, app, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET)
    client = app.test_client()

    def deliver(payload: str | bytes, signature: str | None):
        headers = {"Stripe-Signature": signature} if signature is not None else {}
        return client.post(WEBHOOK, data=payload, content_type="application/json", headers=headers)

    return deliver


def _event_payload() -> str:
    session = stripe_events.checkout_session(amount_subtotal=1000, amount_total=1000, metadata={},
                                             payment_intent=stripe_events.new_id("pi"))
    return stripe_events.body(stripe_events.event("checkout.session.completed", session))


def _signed(payload: str | bytes) -> str:
    return stripe_events.sign(payload, WEBHOOK_SECRET)


def test_a_delivery_signed_with_the_secret_is_received(webhook, row_counts):
    before = row_counts()
    payload = _event_payload()

    response = webhook(payload, _signed(payload))

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["received"] is True
    assert row_counts()["stripe_events"] == before["stripe_events"] + 1


def _unsigned(payload: str | bytes) -> Callable[[str], tuple[str | bytes, None]]:
    return lambda _: (payload, None)


NOW = int(time.time())
NOT_STRIPES = "v1=" + "0" * 64
# Each case turns a real event's payload into the delivery sent: (body, Stripe-Signature or None).
UNVERIFIED = [
    pytest.param(lambda p: (p, None), id="no Stripe-Signature"),
    pytest.param(lambda p: (p, ""), id="an empty Stripe-Signature"),
    pytest.param(lambda p: (p, stripe_events.sign(p, "whsec_someone_else")), id="signed with another secret"),
    pytest.param(lambda p: (p, stripe_events.sign(p, WEBHOOK_SECRET, timestamp=NOW - 600)),
                 id="signed ten minutes ago"),
    pytest.param(lambda p: (p.replace('"usd"', '"eur"'), _signed(p)), id="body changed after signing"),
    pytest.param(lambda p: (p, "not a signature"), id="a header not in Stripe's format"),
    pytest.param(lambda p: (p, NOT_STRIPES), id="a header without a timestamp"),
    pytest.param(lambda p: (p, f"t=yesterday,{NOT_STRIPES}"), id="a timestamp that is not a number"),
    pytest.param(lambda p: (p, f"t={NOW},v1=\u00e9"), id="a signature that is not ASCII"),
    pytest.param(_unsigned('{"id": "evt_1", "type":'), id="malformed JSON"),
    pytest.param(_unsigned(""), id="an empty body"),
    pytest.param(_unsigned(b"\xff\xfe{}"), id="a body that is not UTF-8"),
    pytest.param(_unsigned("[" * 100_000), id="JSON nested 100000 deep"),
]


@pytest.mark.parametrize("delivery_of", UNVERIFIED)
def test_a_delivery_that_does_not_verify_is_400_signature_invalid(delivery_of, webhook, row_counts):
    before = row_counts()
    payload, signature = delivery_of(_event_payload())

    response = webhook(payload, signature)

    assert_problem(response, 400, "signature_invalid")
    assert row_counts() == before


NOT_AN_EVENT = [
    pytest.param('{"id": "evt_1", "type":', id="malformed JSON"),
    pytest.param("[]", id="an array"),
    pytest.param('{"id": "evt_1", "type": "charge.refunded", "created": 1767225600}', id="no data"),
    pytest.param('{"id": "evt_1", "type": "charge.refunded", "created": "yesterday", "data": {"object": {}}}',
                 id="created not a number"),
    pytest.param('{"id": "evt_1", "type": "charge.refunded", "created": 100000000000000000000, '
                 '"data": {"object": {}}}', id="created out of range"),
    pytest.param('{"id": "evt_1", "type": "charge.refunded", "created": Infinity, "data": {"object": {}}}',
                 id="created infinite"),
    pytest.param('{"id": "evt_1", "type": "charge.refunded", "created": 1767225600, "data": {"object": []}}',
                 id="an object that is a list"),
    pytest.param("[" * 100_000 + "]" * 100_000, id="JSON nested 100000 deep"),
    pytest.param('{"id": "evt_1\\u0000", "type": "charge.refunded", "created": 1767225600, "data": {"object": {}}}',
                 id="an id with a NUL"),
    pytest.param('{"id": "evt_1", "type": "charge.refunded\\n", "created": 1767225600, "data": {"object": {}}}',
                 id="a type with a newline"),
    pytest.param('{"id": "evt_1", "type": "charge.refunded", "created": 1767225600, '
                 '"data": {"object": {"amount": NaN}}}', id="NaN, which is not JSON"),
    pytest.param('{"id": "evt_1", "type": "charge.refunded", "created": 1767225600, '
                 '"data": {"object": {"amount": 1e999}}}', id="a number past any float"),
]


@pytest.mark.parametrize("payload", NOT_AN_EVENT)
def test_a_signed_delivery_that_is_not_an_event_is_400_invalid_payload(payload, webhook, row_counts):
    before = row_counts()

    response = webhook(payload, _signed(payload))

    assert_problem(response, 400, "invalid_payload")
    assert row_counts() == before


def test_a_delivery_over_one_mib_is_413_payload_too_large(webhook, row_counts):
    before = row_counts()
    payload = json.dumps({"id": "evt_1", "padding": "x" * ONE_MIB})

    response = webhook(payload, _signed(payload))

    assert_problem(response, 413, "payload_too_large")
    assert row_counts() == before


def test_without_a_configured_secret_every_delivery_is_503_webhook_not_configured(webhook, app, monkeypatch,
                                                                                 row_counts):
    change_settings(monkeypatch, app, STRIPE_WEBHOOK_SECRET="")
    before = row_counts()
    payload = _event_payload()

    response = webhook(payload, _signed(payload))

    assert_problem(response, 503, "webhook_not_configured")
    assert row_counts() == before


# --- The list query ----------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "field_name"), [
    pytest.param("limit=0", "limit", id="limit below 1"),
    pytest.param("limit=101", "limit", id="limit above 100"),
    pytest.param("limit=abc", "limit", id="limit not a number"),
    pytest.param("colour=blue", "colour", id="unknown parameter"),
    pytest.param("starting_after=mem_doesnotexist", "starting_after", id="starting_after unknown id"),
])
def test_a_bad_list_query_is_422_naming_the_parameter(query, field_name, client, make_api_key, make_member):
    make_member()
    response = client.get(f"/v1/members?{query}", headers=bearer(make_api_key("members:read")))

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {field_name}


@pytest.mark.parametrize(("query", "field_name"), [
    pytest.param("limit=0", "limit", id="limit below 1"),
    pytest.param("limit=101", "limit", id="limit above 100"),
    pytest.param("limit=abc", "limit", id="limit not a number"),
    pytest.param("status=sent", "status", id="status not one of pending, delivered, failed"),
    pytest.param("status=", "status", id="status empty"),
    pytest.param("status=pending%00", "status", id="status with a NUL"),
    pytest.param("status=" + "x" * 10_000, "status", id="status of 10000 characters"),
    pytest.param("colour=blue", "colour", id="unknown parameter"),
    pytest.param("starting_after=whd_doesnotexist", "starting_after", id="starting_after unknown id"),
    pytest.param("starting_after=" + "x" * 10_000, "starting_after", id="starting_after of 10000 characters"),
])
def test_a_bad_delivery_log_query_is_422_naming_the_parameter(query, field_name, client, make_api_key, in_app,
                                                              row_counts):
    headers = bearer(make_api_key("admin"))
    with in_app():
        endpoint = outbound.create_endpoint({"url": "https://hooks.example.test/a"}, allow_private=True).public_id
        db.session.commit()
    before = row_counts()

    response = client.get(f"/v1/admin/webhook-endpoints/{endpoint}/deliveries?{query}", headers=headers)

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {field_name}
    assert row_counts() == before


@pytest.mark.parametrize(("query", "field_name"), [
    pytest.param("limit=0", "limit", id="limit below 1"),
    pytest.param("limit=101", "limit", id="limit above 100"),
    pytest.param("colour=blue", "colour", id="unknown parameter"),
    pytest.param("starting_after=aud_doesnotexist", "starting_after", id="starting_after unknown id"),
    pytest.param("actor_id=", "actor_id", id="actor_id empty"),
    pytest.param("actor_id=" + "x" * 10_000, "actor_id", id="actor_id of 10000 characters"),
    pytest.param("actor_id=stf_1%00", "actor_id", id="actor_id with a NUL"),
    pytest.param("table=Tiers;drop", "table", id="table not a table name"),
    pytest.param("resource_id=" + "x" * 65, "resource_id", id="resource_id of 65 characters"),
    pytest.param("from=yesterday", "from", id="from not a time"),
    pytest.param("from=2026-11-23T12:00:00", "from", id="from without an offset"),
    pytest.param("to=2026-13-01T00:00:00Z", "to", id="to not a date"),
    pytest.param("from=2026-11-23T12:00:00Z&to=2026-11-23T12:00:00Z", "to", id="to not after from"),
])
def test_a_bad_audit_log_query_is_422_naming_the_parameter(query, field_name, client, make_api_key, row_counts):
    headers = bearer(make_api_key("admin"))
    before = row_counts()

    response = client.get(f"/v1/admin/audit-log?{query}", headers=headers)

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {field_name}
    assert row_counts() == before


REPORTS = ["/v1/admin/reports/summary", "/v1/admin/reports/liability"]


@pytest.mark.parametrize(("path", "query", "field_name"), [
    *[pytest.param(path, "format=xml", "format", id=f"{path} format not json or csv") for path in REPORTS],
    *[pytest.param(path, "colour=blue", "colour", id=f"{path} unknown parameter") for path in REPORTS],
    pytest.param(REPORTS[0], "from=2026-3-1", "from", id="from not YYYY-MM-DD"),
    pytest.param(REPORTS[0], "to=2026-02-30", "to", id="to not a real day"),
    pytest.param(REPORTS[0], "from=2026-03-01%00", "from", id="from with a NUL"),
    pytest.param(REPORTS[0], "from=" + "9" * 10_000, "from", id="from of 10000 characters"),
    pytest.param(REPORTS[0], "from=2026-03-10&to=2026-03-01", "to", id="to before from"),
    pytest.param(REPORTS[0], "from=2025-01-01&to=2026-01-03", "to", id="a window over 366 days"),
    pytest.param(REPORTS[0], "period=year", "period", id="period not day, week or month"),
])
def test_a_bad_report_query_is_422_naming_the_parameter(path, query, field_name, client, make_api_key, row_counts):
    headers = bearer(make_api_key("admin"))
    before = row_counts()

    response = client.get(f"{path}?{query}", headers=headers)

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {field_name}
    assert row_counts() == before


@pytest.mark.parametrize(("path", "query"), [
    pytest.param("/v1/admin/rules", "starting_after=9223372036854775808", id="rule versions after 2^63"),
    pytest.param("/v1/admin/rules", "starting_after=2147483648", id="rule versions after 2^31"),
    pytest.param("/v1/members", "starting_after=9223372036854775808", id="members after 2^63"),
    pytest.param("/v1/admin/offers", "starting_after=9223372036854775808", id="offers after 2^63"),
])
def test_a_cursor_past_any_column_is_422_naming_it(path, query, client, make_api_key, row_counts):
    headers = bearer(make_api_key("admin", "members:read"))
    before = row_counts()

    response = client.get(f"{path}?{query}", headers=headers)

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {"starting_after"}
    assert row_counts() == before


@pytest.mark.parametrize("path", ["/v1/admin/rules/2147483648", "/v1/admin/rules/9223372036854775808",
                                  "/v1/admin/rules/99999999999999999999999/impact"])
def test_a_rule_version_past_the_column_is_404_not_found(path, client, make_api_key):
    response = client.get(path, headers=bearer(make_api_key("admin")))

    assert_problem(response, 404, "not_found")


@pytest.mark.parametrize(("path", "name"), [
    pytest.param("/console/members?q=%00", "q", id="a member search"),
    pytest.param("/console/members?q=ada%00&starting_after=mem_1", "q", id="a member search, a later page"),
    pytest.param("/console/members?starting_after=mem_%00", "starting_after", id="a page of members"),
    pytest.param("/console/offers?starting_after=%00", "starting_after", id="a page of offers"),
    pytest.param("/console/audit?actor_id=stf_%00", "actor_id", id="the audit log"),
])
def test_a_console_query_with_a_nul_is_422(path, name, console_client, row_counts):
    client = console_client("admin")
    before = row_counts()

    response = client.get(path)

    assert response.status_code == 422, response.get_data(as_text=True)
    assert row_counts() == before


@pytest.mark.parametrize("path", [
    pytest.param("/console/rules?starting_after=9223372036854775808", id="a rule version past the column"),
    pytest.param("/console/rules?starting_after=%C2%B2", id="a rule version that is a superscript two"),
    pytest.param("/console/?days=%C2%B2", id="the dashboard's days, a superscript two"),
])
def test_a_console_number_that_is_not_one_it_can_use_is_422(path, console_client, row_counts):
    client = console_client("admin")
    before = row_counts()

    response = client.get(path)

    assert response.status_code == 422, response.get_data(as_text=True)
    assert row_counts() == before


@pytest.mark.parametrize("area", ["console", "account"])
def test_a_sign_in_form_with_a_nul_in_the_email_is_422(area, app, row_counts):
    client = app.test_client()
    token = csrf_token(client, f"/{area}/login")
    before = row_counts()

    response = client.post(f"/{area}/login", data={"email": "ada\x00@example.com", "password": PASSWORD,
                                                  "csrf_token": token})

    assert response.status_code == 422, response.get_data(as_text=True)
    assert row_counts() == before


def test_a_console_rule_version_past_the_column_is_404(console_client):
    client = console_client("admin")

    assert client.get("/console/rules/new?from=9223372036854775808").status_code == 404
    assert client.get("/console/rules/2147483648").status_code == 404


# --- Routing -----------------------------------------------------------------------------------

def test_an_unknown_path_is_404_not_found(client):
    response = client.get("/v1/no-such-thing")

    assert_problem(response, 404, "not_found")


def test_a_method_the_path_does_not_take_is_405_with_allow(client, row_counts):
    before = row_counts()
    response = client.delete("/v1/signup")

    assert_problem(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"POST", "OPTIONS"}
    assert row_counts() == before
