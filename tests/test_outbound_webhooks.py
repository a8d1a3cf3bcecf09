"""Outbound webhooks end to end: staff register endpoints; what happens in the program reaches them through the
outbox, signed, once each; failed attempts are retried with backoff, logged, replayed, leased and purged.

The receiver is an HTTP server on 127.0.0.1 that verifies every request's Loyalty-Signature with the secret its
endpoint was given, as a shop's tool would, and can be told to answer 500 or to keep quiet past the timeout.
The worker is driven by hand: `jobs.dispatch_events(now)` then `jobs.deliver_due(now)`, at the stopped clock.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from loyalty import events
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.jobs import service as jobs
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.tiers import service as tiers
from loyalty.unit_of_work import unit_of_work
from loyalty.webhooks import outbound
from loyalty.webhooks.delivery import SIGNATURE_HEADER, verify
from loyalty.webhooks.models import OutboxEvent, WebhookDelivery
from tests.conftest import assert_problem, bearer, change_settings, publish_rules, unique_email
from tests.local_server import LocalServer, serving

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
ENDPOINTS = "/v1/admin/webhook-endpoints"
# A point per dollar, available at once, expiring a month after it is earned; a point pays a cent.
RULES = {"earn": {"rates": {"usd": "1"}}, "expiry": {"policy": "rolling", "months": 1},
         "redeem": {"point_values": {"usd": "1"}, "max_share_percent": 50}}
LADDER = [
    {"code": "member", "name": "Member", "rank": 0, "threshold": 0, "basis": "points", "window_days": 365},
    {"code": "silver", "name": "Silver", "rank": 1, "threshold": 100, "basis": "points", "window_days": 365},
]


# --- The receiver -------------------------------------------------------------------------------------------------

@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool  # the Loyalty-Signature verified with the secret of the endpoint at this path

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A shop's tool: each path is one endpoint, with its own secret. It answers 200 unless told otherwise:
    `answer("500", "500")` queues answers to the next requests, `answer("sleep")` keeps quiet past the sender's
    timeout, and `answer_about(member, "500")` queues answers to events about that member only (a worker sends
    a batch at once, so which request arrives first is not fixed)."""

    base_url: str
    secrets: dict[str, str] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    answers: list[str] = field(default_factory=list)
    answers_about: dict[str, list[str]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base_url + path

    def answer(self, *answers: str) -> None:
        self.answers.extend(answers)

    def answer_about(self, member: str, *answers: str) -> None:
        self.answers_about.setdefault(member, []).extend(answers)

    def next_answer(self, event: dict[str, Any]) -> str:
        about = self.answers_about.get(event.get("data", {}).get("member_id"))
        queue = about if about else self.answers
        return queue.pop(0) if queue else "200"

    def events(self, path: str | None = None) -> list[dict[str, Any]]:
        """The events received (at `path`), in order; every request must have verified."""
        chosen = [r for r in self.requests if path is None or r.path == path]
        assert all(r.verified for r in chosen), [r.headers.get(SIGNATURE_HEADER) for r in chosen]
        return [r.event for r in chosen]

    def types(self, path: str | None = None) -> list[str]:
        return [event["type"] for event in self.events(path)]


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer

    def do_POST(self) -> None:
        receiver = self.server.receiver
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        secret = receiver.secrets.get(self.path, "")
        verified = verify(secret, body, self.headers.get(SIGNATURE_HEADER, ""))
        with receiver.lock:
            request = Request(self.path, dict(self.headers.items()), body, verified)
            receiver.requests.append(request)
            answer = receiver.next_answer(request.event)
        if answer == "sleep":
            receiver.release.wait(5)
            return
        self.send_response(int(answer))
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(_Handler) as server:
        server.receiver = Receiver(base_url=server.base_url)
        yield server.receiver


# --- Staff, the shop and the worker -------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def clock(stop_clock):
    return stop_clock(T0)


class Caller:
    """A test client that sends the same headers with every request."""

    def __init__(self, client, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    def get(self, path: str):
        return self.client.get(path, headers=self.headers)

    def post(self, path: str, body: dict | None = None, **headers: str):
        return self.client.post(path, json=body if body is not None else {}, headers={**self.headers, **headers})

    def patch(self, path: str, body: dict):
        return self.client.patch(path, json=body, headers=self.headers)


@pytest.fixture
def admin(client, make_api_key) -> Caller:
    return Caller(client, bearer(make_api_key("admin")))


@pytest.fixture
def shop(client, make_api_key) -> Caller:
    return Caller(client, bearer(make_api_key("checkout", "members:read", "members:write")))


@pytest.fixture
def register(admin, receiver) -> Callable[..., dict]:
    """Register the receiver's `path` as an endpoint (more fields as given); answers the endpoint as created."""

    def make(path: str = "/hook", **fields: Any) -> dict:
        response = admin.post(ENDPOINTS, {"url": receiver.url(path), **fields})
        assert response.status_code == 201, response.get_data(as_text=True)
        endpoint = response.get_json()
        receiver.secrets[path] = endpoint["secret"]
        return endpoint

    return make


@pytest.fixture
def worker(in_app, clock) -> Callable[..., dict]:
    """One run of the worker at `at` (default: the clock): dispatch new events, then send what is due."""

    def run(at: datetime | None = None) -> dict[str, int]:
        with in_app():
            at = at or clock()
            jobs.dispatch_events(at)
            return jobs.deliver_due(at)

    return run


@dataclass
class Hook:
    endpoint: dict
    receiver: Receiver
    worker: Callable[..., dict]
    seen: int = 0

    def sent(self, at: datetime | None = None) -> list[dict[str, Any]]:
        """Run the worker; answer the events delivered since the last call."""
        self.worker(at)
        events = self.receiver.events()
        new, self.seen = events[self.seen:], len(events)
        return new


@pytest.fixture
def hook(register, receiver, worker) -> Hook:
    """An endpoint for every event type at the receiver's /hook."""
    return Hook(register(), receiver, worker)


@pytest.fixture
def program(in_app):
    with in_app():
        publish_rules(RULES, at=T0 - SECOND)


def _member_id(public_id: str) -> int:
    return members.get_member(public_id).id


@pytest.fixture
def give(in_app) -> Callable[[str, int], None]:
    """Give a member points by a staff adjustment, which sends no event."""

    def adjust(member: str, points: int) -> None:
        with in_app():
            ledger.adjust(_member_id(member), points, reason="Seed", reference=f"seed:{member}",
                          now=now())
            db.session.commit()

    return adjust


def _pay(shop: Caller, member: str, amount: int = 5000) -> str:
    """A paid order of `amount` cents, earning a point per dollar; answers the order id."""
    order_id = unique_email("order")
    response = shop.post("/v1/orders", {"order_id": order_id, "member_id": member, "currency": "usd",
                                        "lines": [{"sku": "TEE-1", "quantity": 1, "unit_amount": amount}],
                                        "total_amount": amount})
    assert response.status_code == 201, response.get_data(as_text=True)
    return order_id


def _deliveries(admin: Caller, endpoint: dict, query: str = "") -> list[dict]:
    response = admin.get(f"{ENDPOINTS}/{endpoint['id']}/deliveries{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["data"]


def _endpoint(admin: Caller, endpoint: dict) -> dict:
    response = admin.get(f"{ENDPOINTS}/{endpoint['id']}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _enrol(shop: Caller) -> str:
    response = shop.post("/v1/members", {"email": unique_email()})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


# --- Registering endpoints ----------------------------------------------------------------------------------------

def test_an_admin_api_key_registers_an_endpoint_and_is_shown_its_secret(admin):
    response = admin.post(ENDPOINTS, {"url": "https://crm.example.test/loyalty", "description": "CRM",
                                      "event_types": ["member.created", "points.earned"]})

    assert response.status_code == 201, response.get_data(as_text=True)
    endpoint = response.get_json()
    assert endpoint["id"].startswith("whe_")
    assert endpoint["secret"].startswith("whsec_") and len(endpoint["secret"]) > 40
    assert {name: endpoint[name] for name in ("url", "description", "event_types", "enabled", "failing",
                                              "consecutive_failures", "created_at")} == {
        "url": "https://crm.example.test/loyalty", "description": "CRM",
        "event_types": ["member.created", "points.earned"], "enabled": True, "failing": False,
        "consecutive_failures": 0, "created_at": T0.isoformat()}


def test_an_event_type_named_twice_is_kept_once(admin):
    response = admin.post(ENDPOINTS, {"url": "https://crm.example.test/loyalty",
                                      "event_types": ["points.earned", "member.created", "points.earned"]})
    assert response.get_json()["event_types"] == ["points.earned", "member.created"]


def test_an_admin_staff_member_registers_an_endpoint(staff_client):
    response = staff_client("admin").post(ENDPOINTS, json={"url": "https://crm.example.test/loyalty"})

    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["secret"].startswith("whsec_")
    assert response.get_json()["event_types"] == []  # every type


def test_the_secret_is_never_shown_again(admin):
    created = admin.post(ENDPOINTS, {"url": "https://crm.example.test/loyalty"}).get_json()

    one = admin.get(f"{ENDPOINTS}/{created['id']}").get_json()
    listed = admin.get(ENDPOINTS).get_json()["data"]
    patched = admin.patch(f"{ENDPOINTS}/{created['id']}", {"description": "CRM"}).get_json()

    assert one == {name: value for name, value in created.items() if name != "secret"}
    assert [endpoint["id"] for endpoint in listed] == [created["id"]]
    assert "secret" not in one and "secret" not in listed[0] and "secret" not in patched
    assert created["secret"] not in json.dumps([one, listed, patched])


def test_an_update_changes_the_url_the_event_types_and_enabled(admin):
    created = admin.post(ENDPOINTS, {"url": "https://crm.example.test/loyalty"}).get_json()

    response = admin.patch(f"{ENDPOINTS}/{created['id']}", {"url": "https://crm.example.test/v2",
                                                            "event_types": ["tier.changed"], "enabled": False})

    assert response.status_code == 200, response.get_data(as_text=True)
    stored = _endpoint(admin, created)
    assert (stored["url"], stored["event_types"], stored["enabled"]) == ("https://crm.example.test/v2",
                                                                        ["tier.changed"], False)
    assert response.get_json() == stored


def test_an_unknown_event_type_is_422_and_writes_nothing(admin, row_counts):
    before = row_counts()

    response = admin.post(ENDPOINTS, {"url": "https://crm.example.test/loyalty",
                                      "event_types": ["points.earned", "points.stolen"]})

    problem = assert_problem(response, 422, "validation_error")
    assert list(problem["errors"]) == ["event_types.1"]  # the second item
    assert row_counts() == before


@pytest.mark.parametrize(("url", "reason"), [
    pytest.param("ftp://crm.example.test/loyalty", "Only http:// and https:// URLs can receive events.", id="ftp"),
    pytest.param("file:///etc/passwd", "Only http:// and https:// URLs can receive events.", id="file"),
    pytest.param("gopher://127.0.0.1:6379/_FLUSHALL", "Only http:// and https:// URLs can receive events.",
                 id="gopher"),
    pytest.param("javascript:alert(1)", "Only http:// and https:// URLs can receive events.", id="javascript"),
    pytest.param("crm.example.test/loyalty", "Only http:// and https:// URLs can receive events.", id="no scheme"),
    pytest.param("https://", "The URL has no host.", id="no host"),
    pytest.param("https://crm.example.test/a b", "The URL must not contain spaces or control characters.",
                 id="a space"),
    pytest.param("https://user:pw@crm.example.test/", "The URL must not contain a user name or password.",
                 id="credentials"),
])
def test_a_url_that_cannot_receive_events_is_422_naming_why(url, reason, admin, row_counts):
    before = row_counts()

    response = admin.post(ENDPOINTS, {"url": url})

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"] == {"url": [reason]}
    assert row_counts() == before


PRIVATE = [
    pytest.param("http://127.0.0.1/hook", "127.0.0.1 is a loopback address", id="loopback"),
    pytest.param("http://10.0.0.1/hook", "10.0.0.1 is a private address", id="private network"),
    pytest.param("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local address",
                 id="cloud metadata"),
    pytest.param("http://[::1]:8080/hook", "::1 is a loopback address", id="IPv6 loopback"),
    pytest.param("http://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254 is a link-local address",
                 id="IPv4-mapped metadata"),
    pytest.param("http://0.0.0.0/hook", "0.0.0.0 is an unspecified address", id="unspecified"),
]


@pytest.fixture
def production(app, monkeypatch) -> None:
    change_settings(monkeypatch, app, WEBHOOK_ALLOW_PRIVATE_URLS=False)


@pytest.mark.parametrize(("url", "why"), PRIVATE)
def test_in_production_a_private_address_is_422_with_the_reason_under_url(url, why, production, admin, row_counts):
    before = row_counts()

    response = admin.post(ENDPOINTS, {"url": url})

    problem = assert_problem(response, 422, "validation_error")
    reason = f"{why}; events are only sent to public addresses."
    assert problem["errors"] == {"url": [reason]}
    assert problem["detail"] == reason
    assert row_counts() == before


@pytest.mark.parametrize(("url", "why"), PRIVATE)
def test_in_production_an_update_to_a_private_address_is_422_and_changes_nothing(url, why, production, admin):
    created = admin.post(ENDPOINTS, {"url": "https://93.184.215.14/loyalty"}).get_json()
    before = _endpoint(admin, created)

    response = admin.patch(f"{ENDPOINTS}/{created['id']}", {"url": url, "event_types": ["tier.changed"],
                                                            "enabled": False})

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"] == {"url": [f"{why}; events are only sent to public addresses."]}
    assert _endpoint(admin, created) == before


def test_in_production_a_public_address_is_accepted(production, admin):
    response = admin.post(ENDPOINTS, {"url": "https://93.184.215.14/loyalty"})

    assert response.status_code == 201, response.get_data(as_text=True)


def test_outside_production_a_private_address_is_accepted(admin):
    response = admin.post(ENDPOINTS, {"url": "http://127.0.0.1:8080/hook"})

    assert response.status_code == 201, response.get_data(as_text=True)


def test_an_unknown_endpoint_is_404(admin):
    assert_problem(admin.get(f"{ENDPOINTS}/whe_doesnotexist"), 404, "not_found")
    assert_problem(admin.patch(f"{ENDPOINTS}/whe_doesnotexist", {"enabled": False}), 404, "not_found")
    assert_problem(admin.get(f"{ENDPOINTS}/whe_doesnotexist/deliveries"), 404, "not_found")


# --- What happens reaches the receiver, signed, once --------------------------------------------------------------

def test_enrolling_a_member_sends_member_created(hook, shop):
    member = _enrol(shop)

    [event] = hook.sent()

    assert event["type"] == "member.created"
    assert event["data"] == {"member_id": member, "source": "api", "referred": False}


def test_the_body_is_the_events_id_type_time_and_data_naming_the_member_by_public_id(hook, shop):
    member = _enrol(shop)

    [event] = hook.sent()

    assert set(event) == {"id", "type", "created_at", "data", "consent"}
    assert event["id"].startswith("evt_")
    assert event["created_at"] == T0.isoformat()
    assert event["data"]["member_id"] == member


def test_every_request_is_signed_with_its_endpoints_secret_and_names_the_event(hook, shop, receiver):
    _enrol(shop)

    hook.sent()

    [request] = receiver.requests
    assert request.verified
    assert not verify("whsec_someone_else", request.body, request.headers[SIGNATURE_HEADER])
    assert request.headers["Loyalty-Event-Id"] == request.event["id"]
    assert request.headers["Loyalty-Event-Type"] == "member.created"
    assert request.headers["Content-Type"] == "application/json"


def test_a_paid_order_sends_points_earned(program, hook, shop, make_member):
    member = make_member()["id"]
    hook.sent()

    order_id = _pay(shop, member)

    [event] = hook.sent()
    assert event["type"] == "points.earned"
    data = event["data"]
    assert data["transaction_id"].startswith("txn_")
    assert {name: data[name] for name in ("member_id", "kind", "points", "balance_after", "order_id")} == {
        "member_id": member, "kind": "earn", "points": 50, "balance_after": 50, "order_id": order_id}


def test_a_captured_redemption_sends_redemption_captured_and_points_redeemed(program, hook, shop, make_member,
                                                                             give):
    member = make_member()["id"]
    give(member, 1000)
    hook.sent()
    held = shop.post("/v1/redemptions", {"member_id": member, "order_id": "ord-1", "currency": "usd",
                                         "amount": 5000, "points": 300}, **{"Idempotency-Key": "r-1"}).get_json()
    assert hook.sent() == []  # a hold is not an event

    response = shop.post(f"/v1/redemptions/{held['id']}/capture")

    assert response.status_code == 200, response.get_data(as_text=True)
    events = {event["type"]: event["data"] for event in hook.sent()}
    assert sorted(events) == ["points.redeemed", "redemption.captured"]
    assert events["redemption.captured"] == {"member_id": member, "redemption_id": held["id"], "order_id": "ord-1",
                                             "points": 300, "coupon_code": None, "discount_amount": 300}
    assert (events["points.redeemed"]["member_id"], events["points.redeemed"]["points"],
            events["points.redeemed"]["balance_after"]) == (member, 300, 700)


def test_a_refund_sends_order_refunded(program, hook, shop, make_member):
    member = make_member()["id"]
    order_id = _pay(shop, member)
    hook.sent()

    response = shop.post(f"/v1/orders/{order_id}/refunds", {"refund_id": "re_1", "amount": 5000})

    assert response.status_code == 201, response.get_data(as_text=True)
    [event] = hook.sent()
    assert event["type"] == "order.refunded"
    assert {name: event["data"][name] for name in ("member_id", "order_id", "refund_id", "amount", "currency",
                                                   "points_clawed_back", "order_status")} == {
        "member_id": member, "order_id": order_id, "refund_id": "re_1", "amount": 5000, "currency": "usd",
        "points_clawed_back": 50, "order_status": "refunded"}


def test_claiming_a_reward_sends_coupon_issued_and_points_redeemed(hook, member_client, give, in_app):
    client, member = member_client()
    give(member["id"], 800)
    with in_app():
        offer = offers.create_offer({"name": "Ten percent", "kind": "percent_off", "percent": 10})
        reward_id = catalog.create_reward({"offer_id": offer.public_id, "name": "10% off",
                                           "points_cost": 500}).public_id
        db.session.commit()
    hook.sent()

    claimed = client.post(f"/v1/me/rewards/{reward_id}/claim").get_json()

    events = {event["type"]: event["data"] for event in hook.sent()}
    assert sorted(events) == ["coupon.issued", "points.redeemed"]
    assert {name: events["coupon.issued"][name] for name in ("member_id", "code", "reward_id")} == {
        "member_id": member["id"], "code": claimed["code"], "reward_id": reward_id}
    assert (events["points.redeemed"]["kind"], events["points.redeemed"]["points"]) == ("reward", 500)


def test_an_earn_crossing_a_tier_threshold_sends_tier_changed(program, hook, shop, make_member, in_app):
    with in_app():
        for fields in LADDER:
            tiers.create_tier({**fields, "earn_multiplier": Decimal("1")})
        db.session.commit()
    member = make_member()["id"]
    _pay(shop, member, 6000)
    hook.sent()

    _pay(shop, member, 5000)  # 60 + 50 points: past silver's 100

    events = {event["type"]: event["data"] for event in hook.sent()}
    assert sorted(events) == ["points.earned", "tier.changed"]
    assert events["tier.changed"] == {"member_id": member, "from_tier": "member", "to_tier": "silver",
                                      "reason": "Upgraded: 110 points earned in 365 days; Silver needs 100",
                                      "at": T0.isoformat()}


def test_the_expire_points_job_sends_points_expired(program, hook, shop, make_member, in_app, clock):
    member = make_member()["id"]
    _pay(shop, member)
    hook.sent()
    clock.set(T0 + timedelta(days=32))

    with in_app():
        jobs.expire_points(clock())

    [event] = hook.sent()
    assert event["type"] == "points.expired"
    assert {name: event["data"][name] for name in ("member_id", "kind", "points", "balance_after")} == {
        "member_id": member, "kind": "expire", "points": 50, "balance_after": 0}


def test_the_remind_expiring_job_sends_points_expiring_once_per_lot(program, hook, shop, make_member, in_app,
                                                                    clock):
    member = make_member()["id"]
    _pay(shop, member)
    hook.sent()
    clock.set(T0 + timedelta(days=28))  # the points expire on April 2nd, within the 7 days

    with in_app():
        jobs.remind_expiring(clock())
        jobs.remind_expiring(clock())

    [event] = hook.sent()
    assert event["type"] == "points.expiring"
    data = event["data"]
    assert data["lot_id"].startswith("lot_")
    assert (data["member_id"], data["points"], data["expires_at"]) == (member, 50, "2026-04-02T09:00:00+00:00")


def test_a_rolled_back_request_sends_nothing(program, hook, shop, make_member, give, row_counts):
    member = make_member()["id"]
    give(member, 100)
    hook.sent()
    before = row_counts()

    response = shop.post("/v1/redemptions", {"member_id": member, "order_id": "ord-1", "currency": "usd",
                                             "amount": 5000, "points": 200}, **{"Idempotency-Key": "r-1"})

    assert_problem(response, 409, "insufficient_points")
    assert row_counts() == before
    assert hook.sent() == []


def test_a_request_that_fails_after_points_moved_sends_nothing(program, hook, shop, make_member, clock, row_counts):
    """On its way to insufficient_points the hold expires the member's old points, and their points.expired event
    is written; the request rolls back, event and all."""
    member = make_member()["id"]
    _pay(shop, member)  # 50 points, expiring on April 2nd
    hook.sent()
    clock.set(T0 + timedelta(days=32))
    before = row_counts()

    response = shop.post("/v1/redemptions", {"member_id": member, "order_id": "ord-1", "currency": "usd",
                                             "amount": 5000, "points": 40}, **{"Idempotency-Key": "r-1"})

    assert_problem(response, 409, "insufficient_points")
    assert row_counts() == before
    assert hook.sent() == []


def test_no_event_in_the_body_carries_an_internal_id(program, hook, shop, make_member, give):
    member = make_member()["id"]
    give(member, 1000)
    order_id = _pay(shop, member)
    held = shop.post("/v1/redemptions", {"member_id": member, "order_id": "ord-2", "currency": "usd",
                                         "amount": 5000, "points": 300}, **{"Idempotency-Key": "r-1"}).get_json()
    shop.post(f"/v1/redemptions/{held['id']}/capture")
    shop.post(f"/v1/orders/{order_id}/refunds", {"refund_id": "re_1", "amount": 1000})

    events = hook.sent()

    assert sorted(event["type"] for event in events) == ["member.created", "order.refunded", "points.earned",
                                                         "points.redeemed", "redemption.captured"]
    for event in events:
        ids = {name: value for name, value in event["data"].items() if name == "id" or name.endswith("_id")}
        assert all(isinstance(value, str) and not value.isdigit() for value in ids.values() if value is not None), \
            event
        assert ids["member_id"] == member


def test_each_event_is_delivered_once_however_often_the_worker_runs(hook, shop, receiver, clock):
    _enrol(shop)
    _enrol(shop)

    for minutes in range(4):
        hook.sent(T0 + timedelta(minutes=minutes * 10))

    ids = [event["id"] for event in receiver.events()]
    assert len(ids) == 2 and len(set(ids)) == 2


# --- Which endpoints get what -------------------------------------------------------------------------------------

def test_an_endpoint_gets_only_the_event_types_it_asked_for(program, register, receiver, worker, shop):
    register("/points", event_types=["points.earned"])
    register("/all")

    member = _enrol(shop)
    _pay(shop, member)
    worker()

    assert receiver.types("/points") == ["points.earned"]
    assert sorted(receiver.types("/all")) == ["member.created", "points.earned"]


def test_a_disabled_endpoint_gets_nothing(register, receiver, worker, shop, admin, in_app):
    off = register("/off", enabled=False)
    on = register("/on")

    _enrol(shop)
    worker()

    assert receiver.types("/off") == []
    assert receiver.types("/on") == ["member.created"]
    assert _deliveries(admin, off) == [] and len(_deliveries(admin, on)) == 1


def test_an_endpoint_disabled_with_deliveries_outstanding_gets_nothing_more(register, receiver, worker, shop,
                                                                           admin, clock):
    endpoint = register()
    receiver.answer("500")
    _enrol(shop)
    worker()
    assert len(receiver.requests) == 1

    admin.patch(f"{ENDPOINTS}/{endpoint['id']}", {"enabled": False})
    worker(T0 + timedelta(hours=1))

    assert len(receiver.requests) == 1


# --- Retries with backoff -----------------------------------------------------------------------------------------

def test_a_failed_attempt_is_recorded_and_retried_30_seconds_later(hook, receiver, shop, admin):
    receiver.answer("500")
    _enrol(shop)

    counts = hook.worker()

    assert counts == {"delivered": 0, "retrying": 1, "failed": 0}
    [delivery] = _deliveries(admin, hook.endpoint)
    assert {name: delivery[name] for name in ("status", "attempts", "last_status_code", "last_error",
                                              "last_attempt_at", "next_attempt_at", "delivered_at")} == {
        "status": "pending", "attempts": 1, "last_status_code": 500, "last_error": "answered HTTP 500",
        "last_attempt_at": T0.isoformat(), "next_attempt_at": (T0 + timedelta(seconds=30)).isoformat(),
        "delivered_at": None}


def test_a_delivery_is_not_retried_before_its_next_attempt(hook, receiver, shop, clock):
    receiver.answer("500")
    _enrol(shop)
    hook.worker()

    clock.travel(timedelta(seconds=29))
    hook.worker()

    assert len(receiver.requests) == 1


def test_500_twice_then_200_is_delivered_at_the_third_attempt_within_the_backoff(hook, receiver, shop, admin,
                                                                                 clock):
    receiver.answer("500", "500")
    _enrol(shop)
    hook.worker()
    [first] = _deliveries(admin, hook.endpoint)

    clock.set(_at(first["next_attempt_at"]))
    hook.worker()
    [second] = _deliveries(admin, hook.endpoint)
    retry_at = clock()

    assert (second["status"], second["attempts"], second["last_status_code"]) == ("pending", 2, 500)
    assert retry_at + timedelta(seconds=30) <= _at(second["next_attempt_at"]) <= retry_at + timedelta(seconds=60)

    clock.set(_at(second["next_attempt_at"]) - SECOND)
    hook.worker()
    assert len(receiver.requests) == 2

    clock.travel(SECOND)
    hook.worker()
    [third] = _deliveries(admin, hook.endpoint)

    assert {name: third[name] for name in ("status", "attempts", "last_status_code", "last_error",
                                           "delivered_at")} == {
        "status": "delivered", "attempts": 3, "last_status_code": 200, "last_error": None,
        "delivered_at": clock().isoformat()}
    assert len(receiver.requests) == 3
    assert len({request.event["id"] for request in receiver.requests}) == 1  # the same event each time


def test_a_timeout_is_a_failed_attempt(hook, receiver, shop, admin, app, monkeypatch):
    change_settings(monkeypatch, app, WEBHOOK_TIMEOUT_SECONDS=0.2)
    receiver.answer("sleep")
    _enrol(shop)

    counts = hook.worker()

    assert counts == {"delivered": 0, "retrying": 1, "failed": 0}
    [delivery] = _deliveries(admin, hook.endpoint)
    assert {name: delivery[name] for name in ("status", "attempts", "last_status_code", "last_error",
                                              "next_attempt_at")} == {
        "status": "pending", "attempts": 1, "last_status_code": None, "last_error": "timed out after 0.2s",
        "next_attempt_at": (T0 + timedelta(seconds=30)).isoformat()}


def test_in_production_an_endpoint_at_a_private_address_is_not_sent_to(hook, receiver, shop, admin, production):
    """Registered before the setting changed: the address is checked again at every send."""
    _enrol(shop)

    counts = hook.worker()

    assert counts == {"delivered": 0, "retrying": 1, "failed": 0}
    assert receiver.requests == []
    [delivery] = _deliveries(admin, hook.endpoint)
    assert (delivery["attempts"], delivery["last_status_code"], delivery["last_error"]) == (
        1, None, "not sent: 127.0.0.1 is a loopback address; events are only sent to public addresses.")


# --- Failed deliveries and failing endpoints ----------------------------------------------------------------------

def _fail_every_attempt(hook: Hook, clock, times: int) -> None:
    """Run the worker `times` times, each when the retry is due, the receiver answering 500."""
    hook.receiver.answer(*["500"] * times)
    for _ in range(times):
        hook.worker()
        clock.travel(timedelta(hours=7))  # past any backoff


def test_after_the_last_attempt_a_delivery_is_failed_and_never_sent_again(hook, receiver, shop, admin, app, clock,
                                                                         monkeypatch):
    change_settings(monkeypatch, app, WEBHOOK_MAX_ATTEMPTS=3)
    _enrol(shop)

    _fail_every_attempt(hook, clock, 3)
    hook.worker(clock() + timedelta(days=2))

    [delivery] = _deliveries(admin, hook.endpoint)
    assert (delivery["status"], delivery["attempts"], delivery["last_status_code"]) == ("failed", 3, 500)
    assert len(receiver.requests) == 3


def test_after_consecutive_failures_the_endpoint_is_failing(hook, shop, admin, app, clock, monkeypatch):
    change_settings(monkeypatch, app, WEBHOOK_FAILING_AFTER=3)
    _enrol(shop)

    _fail_every_attempt(hook, clock, 2)
    assert (_endpoint(admin, hook.endpoint)["failing"], _endpoint(admin, hook.endpoint)["consecutive_failures"]) \
        == (False, 2)

    _fail_every_attempt(hook, clock, 1)
    assert (_endpoint(admin, hook.endpoint)["failing"], _endpoint(admin, hook.endpoint)["consecutive_failures"]) \
        == (True, 3)


def test_a_success_clears_failing(hook, shop, admin, app, clock, monkeypatch):
    change_settings(monkeypatch, app, WEBHOOK_FAILING_AFTER=2)
    _enrol(shop)
    _fail_every_attempt(hook, clock, 2)
    assert _endpoint(admin, hook.endpoint)["failing"] is True

    hook.worker()  # the receiver answers 200 again

    endpoint = _endpoint(admin, hook.endpoint)
    assert (endpoint["failing"], endpoint["consecutive_failures"]) == (False, 0)


def test_enabling_an_endpoint_again_clears_failing(hook, shop, admin, app, clock, monkeypatch):
    change_settings(monkeypatch, app, WEBHOOK_FAILING_AFTER=1)
    _enrol(shop)
    _fail_every_attempt(hook, clock, 1)
    admin.patch(f"{ENDPOINTS}/{hook.endpoint['id']}", {"enabled": False})

    response = admin.patch(f"{ENDPOINTS}/{hook.endpoint['id']}", {"enabled": True})

    assert (response.get_json()["failing"], response.get_json()["consecutive_failures"]) == (False, 0)


# --- The delivery log and replays ---------------------------------------------------------------------------------

@pytest.fixture
def logged(hook, receiver, shop) -> list[str]:
    """Three members enrolled, their events sent: the second member's answered 500. Answers the event ids, in the
    order the members were enrolled."""
    enrolled = [_enrol(shop) for _ in range(3)]
    receiver.answer_about(enrolled[1], "500")
    hook.worker()
    by_member = {event["data"]["member_id"]: event["id"] for event in receiver.events()}
    return [by_member[member] for member in enrolled]


def test_the_delivery_log_lists_newest_first_with_attempts_and_errors(logged, hook, admin):
    log = _deliveries(admin, hook.endpoint)

    assert [(d["event_id"], d["event_type"], d["status"], d["attempts"], d["last_status_code"], d["last_error"])
            for d in log] == [
        (logged[2], "member.created", "delivered", 1, 200, None),
        (logged[1], "member.created", "pending", 1, 500, "answered HTTP 500"),
        (logged[0], "member.created", "delivered", 1, 200, None),
    ]
    assert all(d["id"].startswith("whd_") for d in log)


@pytest.mark.parametrize(("status", "expected"), [("delivered", [2, 0]), ("pending", [1]), ("failed", [])])
def test_the_delivery_log_filters_by_status(status, expected, logged, hook, admin):
    log = _deliveries(admin, hook.endpoint, f"?status={status}")

    assert [d["event_id"] for d in log] == [logged[i] for i in expected]


def test_the_delivery_log_pages_newest_first(logged, hook, admin):
    first = admin.get(f"{ENDPOINTS}/{hook.endpoint['id']}/deliveries?limit=2").get_json()
    rest = admin.get(f"{ENDPOINTS}/{hook.endpoint['id']}/deliveries?limit=2"
                     f"&starting_after={first['data'][-1]['id']}").get_json()

    assert [d["event_id"] for d in first["data"]] == [logged[2], logged[1]] and first["has_more"] is True
    assert [d["event_id"] for d in rest["data"]] == [logged[0]] and rest["has_more"] is False


def test_replaying_a_delivered_delivery_sends_the_same_event_again(hook, receiver, shop, admin, clock):
    _enrol(shop)
    hook.worker()
    [delivered] = _deliveries(admin, hook.endpoint)
    clock.travel(timedelta(hours=1))

    response = admin.post(f"{ENDPOINTS}/{hook.endpoint['id']}/deliveries/{delivered['id']}/replay")

    assert response.status_code == 200, response.get_data(as_text=True)
    replayed = response.get_json()
    assert (replayed["id"], replayed["status"], replayed["delivered_at"], replayed["next_attempt_at"]) == (
        delivered["id"], "pending", None, clock().isoformat())
    hook.worker()
    [again] = _deliveries(admin, hook.endpoint)
    assert (again["status"], again["attempts"], again["delivered_at"]) == ("delivered", 2, clock().isoformat())
    assert [request.event["id"] for request in receiver.requests] == [delivered["event_id"]] * 2


def test_replaying_a_failed_delivery_sends_it_again(hook, receiver, shop, admin, app, clock, monkeypatch):
    change_settings(monkeypatch, app, WEBHOOK_MAX_ATTEMPTS=1)
    receiver.answer("500")
    _enrol(shop)
    hook.worker()
    [failed] = _deliveries(admin, hook.endpoint)
    assert failed["status"] == "failed"

    admin.post(f"{ENDPOINTS}/{hook.endpoint['id']}/deliveries/{failed['id']}/replay")
    hook.worker()

    [delivered] = _deliveries(admin, hook.endpoint)
    assert (delivered["status"], delivered["last_status_code"], delivered["last_error"]) == ("delivered", 200, None)
    assert [request.event["id"] for request in receiver.requests] == [failed["event_id"]] * 2


def test_replaying_a_delivery_that_is_not_the_endpoints_is_404(register, shop, admin, worker, row_counts):
    one = register("/one")
    other = register("/other")
    _enrol(shop)
    worker()
    [delivery] = _deliveries(admin, one)
    before = row_counts()

    assert_problem(admin.post(f"{ENDPOINTS}/{other['id']}/deliveries/{delivery['id']}/replay"), 404, "not_found")
    assert_problem(admin.post(f"{ENDPOINTS}/{one['id']}/deliveries/whd_doesnotexist/replay"), 404, "not_found")
    assert row_counts() == before
    assert _deliveries(admin, one)[0]["status"] == "delivered"


# --- Leases -------------------------------------------------------------------------------------------------------

def test_a_leased_delivery_is_not_sent_by_another_worker_until_the_lease_passes(hook, receiver, shop, in_app):
    _enrol(shop)
    with in_app():
        jobs.dispatch_events(T0)
        with unit_of_work():
            assert len(outbound._lease(T0, 10)) == 1  # one worker takes it, and is still sending

    with in_app():
        assert jobs.deliver_due(T0) == {"delivered": 0, "retrying": 0, "failed": 0}
        assert jobs.deliver_due(T0 + outbound.LEASE - SECOND) == {"delivered": 0, "retrying": 0, "failed": 0}
    assert receiver.requests == []


def test_a_worker_killed_after_leasing_leaves_its_delivery_to_the_next_run_after_the_lease(hook, receiver, shop,
                                                                                          admin, in_app):
    _enrol(shop)
    with in_app():
        jobs.dispatch_events(T0)
        with unit_of_work():
            outbound._lease(T0, 10)  # and then the worker dies: nothing sent, nothing recorded
    [leased] = _deliveries(admin, hook.endpoint)
    assert (leased["status"], leased["attempts"], leased["next_attempt_at"]) == (
        "pending", 0, (T0 + outbound.LEASE).isoformat())

    with in_app():
        counts = jobs.deliver_due(T0 + outbound.LEASE)

    assert counts == {"delivered": 1, "retrying": 0, "failed": 0}
    assert receiver.types() == ["member.created"]
    [delivered] = _deliveries(admin, hook.endpoint)
    assert (delivered["status"], delivered["attempts"]) == ("delivered", 1)


def test_two_workers_at_once_send_each_delivery_once(pg: Flask, receiver):
    """On PostgreSQL: two workers lease from the same due deliveries at the same moment."""
    with pg.app_context():
        endpoint = outbound.create_endpoint({"url": receiver.url("/hook")}, allow_private=True)
        receiver.secrets["/hook"] = endpoint.secret
        for number in range(12):
            events.emit("order.refunded", {"order_id": f"ord-{number}"})
        db.session.commit()
        jobs.dispatch_events(T0)
    barrier = threading.Barrier(2)

    def work() -> dict[str, int]:
        with pg.app_context():
            barrier.wait()
            return jobs.deliver_due(T0, batch_size=2)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = [future.result() for future in [pool.submit(work) for _ in range(2)]]

    assert sum(result["delivered"] for result in results) == 12
    ids = [event["id"] for event in receiver.events()]
    assert len(ids) == 12 and len(set(ids)) == 12
    with pg.app_context():
        assert db.session.scalar(select(func.count()).select_from(WebhookDelivery)
                                 .where(WebhookDelivery.status == "delivered", WebhookDelivery.attempts == 1)) == 12


# --- Purging ------------------------------------------------------------------------------------------------------

def _outbox_events(in_app) -> list[str]:
    with in_app():
        return list(db.session.scalars(select(OutboxEvent.public_id).order_by(OutboxEvent.id)))


def _delivery_count(in_app) -> int:
    with in_app():
        return db.session.scalar(select(func.count()).select_from(WebhookDelivery))


def test_purge_removes_events_past_retention_whose_deliveries_are_all_done(hook, receiver, shop, in_app, app,
                                                                          clock, monkeypatch):
    change_settings(monkeypatch, app, WEBHOOK_MAX_ATTEMPTS=1)
    _enrol(shop)
    receiver.answer_about(_enrol(shop), "500")  # one delivered, one failed: both done
    hook.worker()

    with in_app():
        assert jobs.purge_events(T0 + timedelta(days=30) - SECOND) == {"purged": 0}
        assert jobs.purge_events(T0 + timedelta(days=30, seconds=1)) == {"purged": 2}

    assert _outbox_events(in_app) == [] and _delivery_count(in_app) == 0


def test_purge_keeps_events_with_a_pending_delivery(hook, receiver, shop, in_app):
    _enrol(shop)
    retried = _enrol(shop)
    receiver.answer_about(retried, "500")  # still to be retried
    hook.worker()

    with in_app():
        assert jobs.purge_events(T0 + timedelta(days=31)) == {"purged": 1}

    [kept] = [event["id"] for event in receiver.events() if event["data"]["member_id"] == retried]
    assert _outbox_events(in_app) == [kept]
    assert _delivery_count(in_app) == 1


def test_purge_keeps_events_not_yet_dispatched(shop, in_app):
    _enrol(shop)

    with in_app():
        assert jobs.purge_events(T0 + timedelta(days=31)) == {"purged": 0}

    assert len(_outbox_events(in_app)) == 1
