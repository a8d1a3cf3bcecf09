"""Who may call each guarded endpoint: the access matrix as a table.

`ALLOWED` names, per endpoint, every credential that succeeds. Every other credential is
refused: 401 when it identifies nobody (none, an unknown or revoked key, a header that is not
`Bearer <key>`), 403 when it identifies a caller of the wrong kind, scope or role. A refused
request changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from loyalty.auth.access import hash_api_key
from loyalty.auth.models import ApiKey
from loyalty.checkout import service as checkout
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.jobs import service as jobs
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.rules import service as rules
from loyalty.tiers import service as tiers
from loyalty.webhooks import inbound, outbound
from loyalty.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests import stripe_events
from tests.conftest import PASSWORD, assert_problem, bearer, unique_email

# --- The callers -------------------------------------------------------------------------------

# Credentials that identify nobody, and the code access.py answers them with.
UNAUTHENTICATED: dict[str, str] = {
    "anonymous": "unauthenticated",
    "unknown_key": "invalid_api_key",
    "malformed_header": "unauthenticated",
    "revoked_key": "invalid_api_key",
}
KEYS = ("key:members:read", "key:members:write", "key:checkout", "key:admin")
MEMBER = "member"
STAFF = ("staff:admin", "staff:manager", "staff:support", "staff:analyst")
CREDENTIALS: tuple[str, ...] = (*UNAUTHENTICATED, *KEYS, MEMBER, *STAFF)

# --- The specification -------------------------------------------------------------------------

ADMINS = frozenset({"key:admin", "staff:admin"})
MEMBER_READERS = frozenset({"key:members:read", "staff:support", "staff:admin"})
MEMBER_WRITERS = frozenset({"key:members:write", "staff:support", "staff:admin"})
SUPPORT = frozenset({"key:admin", "staff:support", "staff:admin"})
MANAGERS = frozenset({"key:admin", "staff:manager", "staff:admin"})
CHECKOUT = frozenset({"key:checkout", "staff:admin"})
ANALYSTS = frozenset({"key:admin", "staff:analyst", "staff:admin"})

ALLOWED: dict[str, frozenset[str]] = {
    "GET /v1/me": frozenset({MEMBER}),
    "GET /v1/me/transactions": frozenset({MEMBER}),
    "GET /v1/members/{id}/transactions": MEMBER_READERS,
    "GET /v1/admin/members": SUPPORT,
    "POST /v1/admin/members/{id}/adjustments": SUPPORT,
    "GET /v1/admin/members/{id}/tier-history": SUPPORT,
    "POST /v1/admin/members/{id}/suspend": SUPPORT,
    "POST /v1/admin/members/{id}/reinstate": SUPPORT,
    "GET /v1/me/consents": frozenset({MEMBER}),
    "POST /v1/me/consents": frozenset({MEMBER}),
    "GET /v1/members/{id}/consents": MEMBER_READERS,
    "POST /v1/members/{id}/consents": MEMBER_WRITERS,
    "GET /v1/me/export": frozenset({MEMBER}),
    "GET /v1/admin/members/{id}/export": SUPPORT,
    "DELETE /v1/me": frozenset({MEMBER}),
    "POST /v1/admin/members/{id}/erase": SUPPORT,
    "POST /v1/members/{id}/events": MEMBER_WRITERS,
    "GET /v1/admin/rules": MANAGERS,
    "POST /v1/admin/rules": MANAGERS,
    "GET /v1/admin/rules/{id}": MANAGERS,
    "PUT /v1/admin/rules/{id}": MANAGERS,
    "POST /v1/admin/rules/{id}/publish": MANAGERS,
    "GET /v1/admin/rules/{id}/impact": MANAGERS,
    "POST /v1/admin/rules/simulate": MANAGERS,
    "POST /v1/orders": CHECKOUT,
    "POST /v1/orders/{id}/refunds": CHECKOUT,
    "POST /v1/checkout/quote": CHECKOUT,
    "POST /v1/redemptions": CHECKOUT,
    "GET /v1/redemptions/{id}": CHECKOUT,
    "POST /v1/redemptions/{id}/capture": CHECKOUT,
    "POST /v1/redemptions/{id}/cancel": CHECKOUT,
    "GET /v1/admin/tiers": MANAGERS,
    "POST /v1/admin/tiers": MANAGERS,
    "GET /v1/admin/tiers/moves": MANAGERS,
    "GET /v1/admin/tiers/{id}": MANAGERS,
    "PATCH /v1/admin/tiers/{id}": MANAGERS,
    "GET /v1/admin/offers": MANAGERS,
    "POST /v1/admin/offers": MANAGERS,
    "GET /v1/admin/offers/{id}": MANAGERS,
    "PATCH /v1/admin/offers/{id}": MANAGERS,
    "GET /v1/admin/offers/{id}/codes": MANAGERS,
    "POST /v1/admin/offers/{id}/codes": MANAGERS,
    "GET /v1/admin/rewards": MANAGERS,
    "POST /v1/admin/rewards": MANAGERS,
    "PATCH /v1/admin/rewards/{id}": MANAGERS,
    "GET /v1/rewards": frozenset({MEMBER}),
    "POST /v1/me/rewards/{id}/claim": frozenset({MEMBER}),
    "GET /v1/me/coupons": frozenset({MEMBER}),
    "POST /v1/members": MEMBER_WRITERS,
    "GET /v1/members": MEMBER_READERS,
    "GET /v1/members/{id}": MEMBER_READERS,
    "GET /v1/admin/staff": ADMINS,
    "POST /v1/admin/staff": ADMINS,
    "GET /v1/admin/api-keys": ADMINS,
    "POST /v1/admin/api-keys": ADMINS,
    "DELETE /v1/admin/api-keys/{id}": ADMINS,
    "GET /v1/admin/webhook-endpoints": ADMINS,
    "POST /v1/admin/webhook-endpoints": ADMINS,
    "GET /v1/admin/webhook-endpoints/{id}": ADMINS,
    "PATCH /v1/admin/webhook-endpoints/{id}": ADMINS,
    "GET /v1/admin/webhook-endpoints/{id}/deliveries": ADMINS,
    "POST /v1/admin/webhook-endpoints/{id}/deliveries/{id}/replay": ADMINS,
    "GET /v1/admin/stripe-events": ADMINS,
    "POST /v1/admin/stripe-events/{id}/retry": ADMINS,
    "GET /v1/admin/reports/summary": ANALYSTS,
    "GET /v1/admin/reports/liability": ANALYSTS,
    "GET /v1/admin/audit-log": ADMINS,
}

# Endpoints anyone may call; every other /v1 endpoint must appear in ALLOWED.
PUBLIC = frozenset({"POST /v1/signup", "POST /v1/auth/login", "POST /v1/auth/staff/login",
                    "POST /v1/auth/logout", "POST /v1/webhooks/stripe"})

# --- Calling an endpoint -----------------------------------------------------------------------

@dataclass(frozen=True)
class Caller:
    client: FlaskClient
    headers: dict[str, str]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    json: dict | None = None
    headers: dict[str, str] | None = None


RULES = {"earn": {"rates": {"usd": "1"}}}
SAMPLE_LINES = [{"sku": "SKU-1", "quantity": 1, "unit_amount": 1000}]


BASE_TIER = {"code": "base", "name": "Member", "rank": 0, "threshold": 0, "basis": "points", "window_days": 365}


OFFER = {"name": "Ten percent", "kind": "percent_off", "percent": 10}


def _request_for(endpoint: str, make_member, make_api_key, api_key_id, make_draft, make_tier,
                 make_offer, make_reward, make_redemption, make_order, make_endpoint, make_delivery,
                 make_stripe_event) -> Request:
    """A request to `endpoint` with a valid body and an existing target."""
    method, path = endpoint.split(" ", 1)
    if "{id}" in path:
        if path.startswith(("/v1/members/", "/v1/admin/members/")):
            target = make_member()["id"]
        elif path.startswith("/v1/admin/rules/"):
            target = str(make_draft())
        elif path.startswith("/v1/admin/tiers/"):
            target = make_tier()
        elif path.startswith("/v1/admin/offers/"):
            target = make_offer()
        elif path.startswith(("/v1/admin/rewards/", "/v1/me/rewards/")):
            target = make_reward()
        elif path.startswith("/v1/redemptions/"):
            target = make_redemption()
        elif path.startswith("/v1/orders/"):
            target = make_order()
        elif path.startswith("/v1/admin/webhook-endpoints/"):
            target = make_endpoint()
            if "/deliveries/{id}" in path:
                path = path.replace("/deliveries/{id}", f"/deliveries/{make_delivery(target)}")
        elif path.startswith("/v1/admin/stripe-events/"):
            target = make_stripe_event()
        else:
            target = api_key_id(make_api_key("checkout"))
        path = path.replace("{id}", target)
    bodies = {
        "POST /v1/members": lambda: {"email": unique_email("enrolled")},
        "POST /v1/admin/staff": lambda: {"email": unique_email("staff"), "role": "analyst",
                                         "password": PASSWORD},
        "POST /v1/admin/api-keys": lambda: {"name": "shop server", "scopes": ["checkout"]},
        "POST /v1/admin/members/{id}/adjustments": lambda: {"points": 10, "reason": "goodwill"},
        "POST /v1/members/{id}/events": lambda: {"type": "review"},
        "POST /v1/me/consents": lambda: {"purpose": "sms", "granted": True},
        "DELETE /v1/me": lambda: {"password": PASSWORD},
        "POST /v1/members/{id}/consents": lambda: {"purpose": "sms", "granted": True},
        "POST /v1/admin/rules": lambda: {"document": RULES},
        "POST /v1/admin/tiers": lambda: BASE_TIER,
        "PATCH /v1/admin/tiers/{id}": lambda: {"name": "Renamed"},
        "POST /v1/admin/offers": lambda: OFFER,
        "PATCH /v1/admin/offers/{id}": lambda: {"name": "Renamed"},
        "POST /v1/admin/offers/{id}/codes": lambda: {"count": 3},
        "POST /v1/admin/rewards": lambda: {"offer_id": make_offer(), "name": "Reward", "points_cost": 10},
        "PATCH /v1/admin/rewards/{id}": lambda: {"name": "Renamed"},
        "PUT /v1/admin/rules/{id}": lambda: {"document": RULES},
        "POST /v1/admin/rules/{id}/publish": dict,
        "POST /v1/admin/rules/simulate": lambda: {"rules": RULES, "order": {"currency": "usd", "lines": SAMPLE_LINES}},
        "POST /v1/orders": lambda: {"order_id": unique_email("order"), "member_id": make_member()["id"],
                                    "currency": "usd", "lines": SAMPLE_LINES, "total_amount": 1000},
        "POST /v1/orders/{id}/refunds": lambda: {"refund_id": "re_1", "amount": 100},
        "POST /v1/admin/webhook-endpoints": lambda: {"url": "http://127.0.0.1:9/hooks"},
        "PATCH /v1/admin/webhook-endpoints/{id}": lambda: {"enabled": False},
        "POST /v1/checkout/quote": lambda: {"member_id": make_member()["id"], "currency": "usd",
                                            "lines": SAMPLE_LINES},
        "POST /v1/redemptions": lambda: {"member_id": make_member()["id"], "order_id": unique_email("order"),
                                         "currency": "usd", "amount": 1000, "coupon_code": _coupon(make_offer)},
    }
    body = bodies[endpoint]() if endpoint in bodies else None
    headers = {"Idempotency-Key": unique_email("key")} if endpoint == "POST /v1/redemptions" else None
    return Request(method, path, body, headers)


def _coupon(make_offer) -> str:
    """A fresh public code of a new offer."""
    code = unique_email("code").split("@")[0].replace("-", "").replace(".", "").upper()[:20]
    make_offer(code)
    return code


def _send(caller: Caller, request: Request):
    return caller.client.open(request.path, method=request.method, json=request.json,
                              headers={**caller.headers, **(request.headers or {})})


# Actions on an existing resource answer 200; everything else a POST does creates something.
ACTIONS = frozenset({"POST /v1/admin/members/{id}/suspend", "POST /v1/admin/members/{id}/reinstate",
                     "POST /v1/admin/rules/{id}/publish", "POST /v1/admin/rules/simulate",
                     "POST /v1/checkout/quote", "POST /v1/redemptions/{id}/capture",
                     "POST /v1/redemptions/{id}/cancel",
                     "POST /v1/admin/webhook-endpoints/{id}/deliveries/{id}/replay",
                     "POST /v1/admin/stripe-events/{id}/retry",
                     "POST /v1/me/consents", "POST /v1/members/{id}/consents", "POST /v1/admin/members/{id}/erase"})
# Answered with no body at all.
NO_CONTENT = frozenset({"DELETE /v1/me"})


def _success_status(endpoint: str) -> int:
    if endpoint in NO_CONTENT:
        return 204
    return 201 if endpoint.startswith("POST ") and endpoint not in ACTIONS else 200


def _cases(wanted: Callable[[str, str], bool]) -> list:
    return [
        pytest.param(endpoint, credential, id=f"{endpoint} as {credential}")
        for endpoint in ALLOWED for credential in CREDENTIALS if wanted(endpoint, credential)
    ]


# --- Fixtures ----------------------------------------------------------------------------------

@pytest.fixture
def api_key_id(app: Flask) -> Callable[[str], str]:
    """The public id of the key with this secret."""

    def find(secret: str) -> str:
        with app.app_context():
            return db.session.scalar(
                select(ApiKey.public_id).where(ApiKey.key_hash == hash_api_key(secret))
            )

    return find


@pytest.fixture
def state(app: Flask, row_counts) -> Callable[[], tuple[dict[str, int], set[str]]]:
    """What a refused request must leave alone: rows per table and which keys are revoked."""

    def snapshot() -> tuple[dict[str, int], set[str]]:
        with app.app_context():
            revoked = set(db.session.scalars(
                select(ApiKey.public_id).where(ApiKey.revoked_at.is_not(None))
            ))
        return row_counts(), revoked

    return snapshot


@pytest.fixture
def caller_as(app: Flask, make_api_key, staff_client, member_client) -> Callable[[str], Caller]:
    """A client and headers presenting the named credential."""

    def build(credential: str) -> Caller:
        if credential == "anonymous":
            return Caller(app.test_client(), {})
        if credential == "unknown_key":
            return Caller(app.test_client(), bearer("lk_this-key-was-never-issued"))
        if credential == "malformed_header":
            return Caller(app.test_client(), {"Authorization": "Basic abc"})
        if credential == "revoked_key":
            return Caller(app.test_client(), bearer(make_api_key("admin", revoked=True)))
        if credential in KEYS:
            return Caller(app.test_client(), bearer(make_api_key(credential.removeprefix("key:"))))
        if credential == MEMBER:  # with points, so a reward claim can succeed
            client, member = member_client()
            with app.app_context():
                ledger.adjust(members.get_member(member["id"]).id, 100, reason="Matrix",
                              reference=f"matrix:{member['id']}", now=now())
                db.session.commit()
            return Caller(client, {})
        if credential in STAFF:
            return Caller(staff_client(credential.removeprefix("staff:")), {})
        raise AssertionError(f"unknown credential {credential}")

    return build


@pytest.fixture
def make_draft(app: Flask) -> Callable[[], int]:
    """A new draft rule version; answers its number."""

    def make() -> int:
        with app.app_context():
            draft = rules.create_draft(RULES, note=None, staff_id=None)
            db.session.commit()
            return draft.version

    return make


@pytest.fixture
def make_tier(app: Flask) -> Callable[[], str]:
    """The base tier; answers its public id."""

    def make() -> str:
        with app.app_context():
            tier = tiers.create_tier(dict(BASE_TIER))
            db.session.commit()
            return tier.public_id

    return make


@pytest.fixture
def make_offer(app: Flask) -> Callable[..., str]:
    def make(code: str | None = None) -> str:
        with app.app_context():
            offer = offers.create_offer({**OFFER, "code": code} if code else dict(OFFER))
            db.session.commit()
            return offer.public_id

    return make


@pytest.fixture
def make_redemption(app: Flask, make_member, make_offer) -> Callable[[], str]:
    """A held redemption of a coupon; answers its id."""

    def make() -> str:
        with app.app_context():
            redemption = checkout.create_redemption(
                {"member_id": make_member()["id"], "order_id": unique_email("order"), "currency": "usd",
                 "amount": 1000, "coupon_code": _coupon(make_offer)}, now=now(), hold_for=timedelta(minutes=30))
            db.session.commit()
            return redemption.public_id

    return make


@pytest.fixture
def make_endpoint(app: Flask) -> Callable[[], str]:
    def make() -> str:
        with app.app_context():
            endpoint = outbound.create_endpoint({"url": "http://127.0.0.1:9/hooks"}, allow_private=True)
            db.session.commit()
            return endpoint.public_id

    return make


@pytest.fixture
def make_delivery(app: Flask, make_member) -> Callable[[str], str]:
    """A delivery to the endpoint: of the member.created event of a new member."""

    def make(endpoint_id: str) -> str:
        make_member()
        with app.app_context():
            jobs.dispatch_events(now())
            return db.session.scalars(select(WebhookDelivery.public_id).join(WebhookEndpoint).where(
                WebhookEndpoint.public_id == endpoint_id).order_by(WebhookDelivery.id.desc())).first()

    return make


@pytest.fixture
def make_stripe_event(app: Flask) -> Callable[[], str]:
    """A Stripe event that failed (a payment for a member who does not exist); answers its id."""

    def make() -> str:
        intent = stripe_events.payment_intent(amount=1000, metadata={"loyalty_member_id": "mem_nobody"})
        event = stripe_events.event("payment_intent.succeeded", intent)
        with app.app_context():
            inbound.receive(inbound.Verified(event["id"], event["type"], now(), False, event), None, now=now())
            db.session.commit()
        return event["id"]

    return make


@pytest.fixture
def make_order(app: Flask, make_member) -> Callable[[], str]:
    """A paid order; answers its order_id."""

    def make() -> str:
        order_id = unique_email("order")
        with app.app_context():
            checkout.record_paid_order({"order_id": order_id, "member_id": make_member()["id"], "currency": "usd",
                                        "lines": SAMPLE_LINES, "total_amount": 1000}, now=now())
            db.session.commit()
        return order_id

    return make


@pytest.fixture
def make_reward(app: Flask, make_offer) -> Callable[[], str]:
    def make() -> str:
        with app.app_context():
            reward = catalog.create_reward({"offer_id": make_offer(), "name": "Reward", "points_cost": 10})
            db.session.commit()
            return reward.public_id

    return make


@pytest.fixture
def request_to(make_member, make_api_key, api_key_id, make_draft, make_tier, make_offer, make_reward,
               make_redemption, make_order, make_endpoint, make_delivery,
               make_stripe_event) -> Callable[[str], Request]:
    return lambda endpoint: _request_for(endpoint, make_member, make_api_key, api_key_id, make_draft, make_tier,
                                         make_offer, make_reward, make_redemption, make_order, make_endpoint,
                                         make_delivery, make_stripe_event)


# --- The table itself --------------------------------------------------------------------------

def test_every_credential_kind_is_named_once():
    assert len(set(CREDENTIALS)) == len(CREDENTIALS) == 13
    assert all(allowed <= set(CREDENTIALS) for allowed in ALLOWED.values())


def test_the_table_covers_every_guarded_endpoint(app: Flask):
    routes = {
        f"{method} {re.sub(r'<[a-z]+:[a-z_]+>', '{id}', rule.rule)}"
        for rule in app.url_map.iter_rules() if rule.rule.startswith("/v1/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routes - PUBLIC == set(ALLOWED)


# --- The matrix --------------------------------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "credential"),
                         _cases(lambda endpoint, credential: credential in UNAUTHENTICATED))
def test_credentials_that_identify_nobody_are_answered_401(endpoint, credential, caller_as, request_to,
                                                           state):
    caller = caller_as(credential)
    request = request_to(endpoint)
    before = state()

    response = _send(caller, request)

    assert_problem(response, 401, UNAUTHENTICATED[credential])
    assert state() == before


@pytest.mark.parametrize(("endpoint", "credential"), _cases(
    lambda endpoint, credential: credential not in UNAUTHENTICATED and credential not in ALLOWED[endpoint]
))
def test_credentials_outside_the_allowed_set_are_answered_403(endpoint, credential, caller_as, request_to,
                                                              state):
    caller = caller_as(credential)
    request = request_to(endpoint)
    before = state()

    response = _send(caller, request)

    assert_problem(response, 403, "forbidden")
    assert state() == before


@pytest.mark.parametrize(("endpoint", "credential"),
                         _cases(lambda endpoint, credential: credential in ALLOWED[endpoint]))
def test_allowed_credentials_succeed(endpoint, credential, caller_as, request_to):
    caller = caller_as(credential)
    request = request_to(endpoint)

    response = _send(caller, request)

    assert response.status_code == _success_status(endpoint), response.get_data(as_text=True)
    assert response.mimetype == "application/json" or endpoint in NO_CONTENT


# --- Precedence --------------------------------------------------------------------------------

def test_an_authorization_header_wins_over_a_staff_admin_session(staff_client, state):
    admin_session = staff_client("admin")
    before = state()

    response = admin_session.post("/v1/admin/api-keys", json={"name": "x", "scopes": ["admin"]},
                                  headers=bearer("lk_this-key-was-never-issued"))

    assert_problem(response, 401, "invalid_api_key")
    assert state() == before
