"""The Idempotency-Key: a retry of a write answers the first answer and does nothing again.

`@write` (loyalty/writes.py) makes every write endpoint one unit of work and, when the request carries an
`Idempotency-Key`, stores the answer with the effect. A retry with the same key and body replays it; the
same key with another body is `409 idempotency_key_reused`; keys are the caller's own; errors are not
stored; keys are kept for `IDEMPOTENCY_KEY_RETENTION_HOURS`, then forgotten.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from loyalty import writes
from loyalty.auth import service as auth
from loyalty.auth.access import require
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.idempotency import fingerprint
from loyalty.jobs import service as jobs
from loyalty.ledger import service as ledger
from loyalty.ledger.models import JournalTransaction
from loyalty.members import service as members
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.orders.models import Order
from loyalty.writes import REPLAYED_HEADER, StoredResponse, write
from tests.conftest import StoppedClock, assert_problem, bearer, publish_rules, unique_email

KEY = "checkout-attempt-1"
LINES = [{"sku": "SKU-1", "quantity": 1, "unit_amount": 1000}]
RULES = {"earn": {"rates": {"usd": "1"}}}
REVIEWS_PAY = {**RULES, "events": {"review": {"points": 20}}}
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)

# Routes that answer for themselves: sessions are not replayable, and Stripe's deliveries are deduplicated
# by event id.
ANSWER_FOR_THEMSELVES = frozenset({"/v1/signup", "/v1/auth/login", "/v1/auth/staff/login", "/v1/auth/logout",
                                   "/v1/webhooks/stripe"})
# A read whose question is too large for a query string: it is a POST, changes nothing, so has nothing to commit.
READS_SENT_AS_POST = frozenset({"/v1/checkout/quote"})


# --- The writes, and callers for them -------------------------------------------------------------------

@dataclass(frozen=True)
class Write:
    """A write endpoint, the credential it is called with, and its n-th valid body (each n a different one)."""

    path: str
    credential: str  # "staff:<role>" or an API key scope
    api_key_scope: str  # an API key scope it accepts, for callers that must be API keys
    body: Callable[[int, str], dict]  # (n, the member's id) -> body
    effect: str  # the table the write adds a row to


WRITES = {
    "enrol a member": Write("/v1/members", "members:write", "members:write",
                            lambda n, _: {"email": f"enrolled{n}@example.test", "name": "Ada"}, "members"),
    "adjust points": Write("/v1/admin/members/{member}/adjustments", "staff:support", "admin",
                           lambda n, _: {"points": 10 + n, "reason": "Goodwill"}, "ledger_transactions"),
    "record an order": Write("/v1/orders", "checkout", "checkout",
                             lambda n, member: {"order_id": f"order-{n}", "member_id": member, "currency": "usd",
                                                "lines": LINES, "total_amount": 1000}, "orders"),
}
EACH_WRITE = pytest.mark.parametrize("write_", list(WRITES.values()), ids=list(WRITES))


@dataclass
class Caller:
    """One caller of one write endpoint."""

    client: FlaskClient
    headers: dict[str, str]
    write: Write
    member_id: str

    def body(self, n: int) -> dict:
        return self.write.body(n, self.member_id)

    def send(self, body: dict | str, key: str | None = KEY):
        """POST `body` (a dict, or JSON text sent as it is) with the Idempotency-Key `key`."""
        headers = {**self.headers, **({"Idempotency-Key": key} if key is not None else {})}
        path = self.write.path.replace("{member}", self.member_id)
        if isinstance(body, str):
            return self.client.post(path, data=body, content_type="application/json", headers=headers)
        return self.client.post(path, json=body, headers=headers)


@pytest.fixture
def member(make_member) -> str:
    """The member the writes act on."""
    return make_member()["id"]


@pytest.fixture
def caller_of(app: Flask, make_api_key, staff_client, member) -> Callable[..., Caller]:
    """A new caller of `write`: with its own credential each time, so two callers are two API keys or two
    staff users. `as_api_key` makes it an API key whatever the write's usual credential."""

    def build(write_: Write, *, as_api_key: bool = False) -> Caller:
        if as_api_key or not write_.credential.startswith("staff:"):
            scope = write_.api_key_scope if as_api_key else write_.credential
            return Caller(app.test_client(), bearer(make_api_key(scope)), write_, member)
        return Caller(staff_client(write_.credential.removeprefix("staff:")), {}, write_, member)

    return build


@pytest.fixture
def clock(stop_clock) -> StoppedClock:
    return stop_clock(T0)


@pytest.fixture
def retention(app: Flask) -> timedelta:
    return timedelta(hours=app.config["IDEMPOTENCY_KEY_RETENTION_HOURS"])


@pytest.fixture
def stored_keys(in_app) -> Callable[[], set[str]]:
    """The Idempotency-Keys stored, whoever sent them."""

    def keys() -> set[str]:
        with in_app():
            return set(db.session.scalars(select(StoredResponse.key)))

    return keys


@pytest.fixture
def coupon(app: Flask) -> str:
    """The public code of a 10% offer."""
    with app.app_context():
        offers.create_offer({"name": "Ten", "kind": "percent_off", "percent": 10, "code": "TENOFF"})
        db.session.commit()
    return "TENOFF"


@pytest.fixture
def redeem(app: Flask, make_api_key, member, coupon) -> Callable[..., object]:
    """POST /v1/redemptions for a coupon-only redemption, with the given headers."""
    client, headers = app.test_client(), bearer(make_api_key("checkout"))

    def send(extra_headers: dict[str, str], **fields):
        body = {"member_id": member, "order_id": "order-1", "currency": "usd", "amount": 1000,
                "coupon_code": coupon, **fields}
        return client.post("/v1/redemptions", json=body, headers={**headers, **extra_headers})

    return send


def _give(app: Flask, member_id: str, points: int) -> None:
    with app.app_context():
        member = members.get_member(member_id)
        ledger.adjust(member.id, points, reason="Seed", reference=f"seed:{member_id}", now=now())
        db.session.commit()


def _publish(app: Flask, document: dict) -> None:
    with app.app_context():
        publish_rules(document)


def _available(app: Flask, member_id: str) -> int:
    with app.app_context():
        return ledger.balances(members.get_member(member_id).id).available


# --- A retry replays the first answer ------------------------------------------------------------------

@EACH_WRITE
def test_a_retry_with_the_same_key_and_body_answers_the_first_answer(write_, caller_of):
    caller = caller_of(write_)
    first = caller.send(caller.body(1))

    retry = caller.send(caller.body(1))

    assert first.status_code == 201, first.get_data(as_text=True)
    assert retry.status_code == 201
    assert retry.get_data() == first.get_data()
    assert retry.mimetype == first.mimetype == "application/json"


@EACH_WRITE
def test_a_replayed_answer_says_so_in_idempotent_replayed_and_the_first_does_not(write_, caller_of):
    caller = caller_of(write_)
    first = caller.send(caller.body(1))

    retry = caller.send(caller.body(1))

    assert REPLAYED_HEADER not in first.headers
    assert retry.headers[REPLAYED_HEADER] == "true"


@EACH_WRITE
def test_a_retry_writes_nothing_more(write_, caller_of, row_counts):
    caller = caller_of(write_)
    caller.send(caller.body(1))
    after_first = row_counts()

    caller.send(caller.body(1))
    caller.send(caller.body(1))

    assert row_counts() == after_first
    assert after_first["idempotency_keys"] == 1


def test_a_replay_is_the_stored_answer_not_the_resource_as_it_is_now(caller_of, app):
    caller = caller_of(WRITES["enrol a member"])
    first = caller.send(caller.body(1))
    _give(app, first.get_json()["id"], 50)

    retry = caller.send(caller.body(1))

    assert retry.get_json()["points"]["available"] == 0
    assert retry.get_json() == first.get_json()


@EACH_WRITE
def test_the_body_is_compared_parsed_so_key_order_and_whitespace_do_not_matter(write_, caller_of, row_counts):
    caller = caller_of(write_)
    body = caller.body(1)
    first = caller.send(json.dumps(body, separators=(",", ":")))
    after_first = row_counts()

    retry = caller.send(json.dumps(dict(reversed(body.items())), indent=4))

    assert first.status_code == 201, first.get_data(as_text=True)
    assert retry.status_code == 201
    assert retry.headers[REPLAYED_HEADER] == "true"
    assert retry.get_data() == first.get_data()
    assert row_counts() == after_first


# --- The same key with another request ------------------------------------------------------------------

@EACH_WRITE
def test_the_same_key_with_another_body_is_409_idempotency_key_reused_and_changes_nothing(write_, caller_of,
                                                                                        row_counts):
    caller = caller_of(write_)
    caller.send(caller.body(1))
    before = row_counts()

    response = caller.send(caller.body(2))

    assert_problem(response, 409, "idempotency_key_reused")
    assert row_counts() == before


def test_the_same_key_with_another_body_still_leaves_the_first_answer_replayable(caller_of):
    caller = caller_of(WRITES["enrol a member"])
    first = caller.send(caller.body(1))
    caller.send(caller.body(2))

    retry = caller.send(caller.body(1))

    assert retry.status_code == 201
    assert retry.get_data() == first.get_data()


def test_the_same_key_on_another_endpoint_is_409_idempotency_key_reused(app, make_api_key, member, row_counts):
    client, headers = app.test_client(), {**bearer(make_api_key("members:write")), "Idempotency-Key": KEY}
    client.post("/v1/members", json={"email": unique_email()}, headers=headers)
    before = row_counts()

    response = client.post(f"/v1/members/{member}/events", json={"type": "review"}, headers=headers)

    assert_problem(response, 409, "idempotency_key_reused")
    assert row_counts() == before


# --- Keys are the caller's own ---------------------------------------------------------------------------

@EACH_WRITE
def test_another_api_key_may_use_the_same_key_with_another_body(write_, caller_of, row_counts):
    mine, theirs = caller_of(write_, as_api_key=True), caller_of(write_, as_api_key=True)
    mine.send(mine.body(1))
    before = row_counts()

    response = theirs.send(theirs.body(2))

    assert response.status_code == 201, response.get_data(as_text=True)
    assert REPLAYED_HEADER not in response.headers
    assert row_counts()[write_.effect] == before[write_.effect] + 1
    assert row_counts()["idempotency_keys"] == 2


@pytest.mark.parametrize("as_api_key", [True, False], ids=["two API keys", "two support staff"])
def test_another_caller_sending_the_same_key_and_adjustment_makes_a_second_adjustment(as_api_key, caller_of, app,
                                                                                    member):
    adjust = WRITES["adjust points"]
    mine, theirs = caller_of(adjust, as_api_key=as_api_key), caller_of(adjust, as_api_key=as_api_key)
    first = mine.send(mine.body(1))

    second = theirs.send(theirs.body(1))

    assert second.status_code == 201, second.get_data(as_text=True)
    assert REPLAYED_HEADER not in second.headers
    assert second.get_json()["id"] != first.get_json()["id"]
    assert _available(app, member) == 2 * mine.body(1)["points"]


def test_another_api_key_reporting_a_review_with_the_same_key_pays_a_second_time(app, make_api_key, member):
    _publish(app, REVIEWS_PAY)
    mine, theirs = ({**bearer(make_api_key("members:write")), "Idempotency-Key": KEY} for _ in range(2))
    client = app.test_client()
    first = client.post(f"/v1/members/{member}/events", json={"type": "review"}, headers=mine)

    second = client.post(f"/v1/members/{member}/events", json={"type": "review"}, headers=theirs)

    assert second.status_code == 201, second.get_data(as_text=True)
    assert second.get_json()["transaction_id"] != first.get_json()["transaction_id"]
    assert _available(app, member) == 40


# --- Errors are not stored --------------------------------------------------------------------------------

def test_a_422_is_not_stored_so_the_corrected_request_with_the_same_key_succeeds(caller_of, row_counts):
    caller = caller_of(WRITES["enrol a member"])
    before = row_counts()
    refused = caller.send({"email": "not an email"})
    assert_problem(refused, 422, "validation_error")
    assert row_counts() == before

    response = caller.send(caller.body(1))

    assert response.status_code == 201, response.get_data(as_text=True)
    assert REPLAYED_HEADER not in response.headers
    assert row_counts()["members"] == before["members"] + 1


def test_a_409_insufficient_points_is_not_stored_so_the_same_request_runs_again(caller_of, app, member,
                                                                                row_counts):
    caller = caller_of(WRITES["adjust points"])
    before = row_counts()
    refused = caller.send({"points": -50, "reason": "Returned goods"})
    assert_problem(refused, 409, "insufficient_points")
    assert row_counts() == before
    _give(app, member, 80)

    response = caller.send({"points": -50, "reason": "Returned goods"})

    assert response.status_code == 201, response.get_data(as_text=True)
    assert REPLAYED_HEADER not in response.headers
    assert _available(app, member) == 30


def test_a_refused_coupon_is_not_stored_so_a_redemption_with_a_valid_one_and_the_same_key_succeeds(redeem,
                                                                                                 row_counts):
    before = row_counts()
    refused = redeem({"Idempotency-Key": KEY}, coupon_code="NO-SUCH-CODE")
    assert_problem(refused, 422, "coupon_invalid")
    assert row_counts() == before

    response = redeem({"Idempotency-Key": KEY})

    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["status"] == "held"


# --- The key itself ---------------------------------------------------------------------------------------

def test_a_redemption_without_an_idempotency_key_is_422_naming_the_header(redeem, row_counts):
    before = row_counts()

    response = redeem({})

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"] == {"Idempotency-Key": ["Required."]}
    assert row_counts() == before


def test_a_blank_idempotency_key_counts_as_none(redeem, row_counts):
    before = row_counts()

    response = redeem({"Idempotency-Key": "   "})

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"] == {"Idempotency-Key": ["Required."]}
    assert row_counts() == before


def test_an_idempotency_key_of_129_characters_is_422_naming_the_header(redeem, row_counts):
    before = row_counts()

    response = redeem({"Idempotency-Key": "k" * 129})

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"] == {"Idempotency-Key": ["At most 128 characters."]}
    assert row_counts() == before


def test_an_idempotency_key_of_128_characters_is_accepted(redeem, stored_keys):
    response = redeem({"Idempotency-Key": "k" * 128})

    assert response.status_code == 201, response.get_data(as_text=True)
    assert stored_keys() == {"k" * 128}


def test_an_over_long_key_is_refused_on_every_write_not_only_where_a_key_is_required(caller_of, row_counts):
    caller = caller_of(WRITES["enrol a member"])
    before = row_counts()

    response = caller.send(caller.body(1), key="k" * 129)

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {"Idempotency-Key"}
    assert row_counts() == before


# --- Retention --------------------------------------------------------------------------------------------

@EACH_WRITE
def test_within_retention_the_key_is_still_taken(write_, caller_of, clock, retention):
    caller = caller_of(write_)
    caller.send(caller.body(1))
    clock.travel(retention - SECOND)

    response = caller.send(caller.body(2))

    assert_problem(response, 409, "idempotency_key_reused")


@EACH_WRITE
def test_after_retention_the_same_key_with_another_body_is_a_new_request(write_, caller_of, clock, retention,
                                                                         row_counts):
    caller = caller_of(write_)
    caller.send(caller.body(1))
    clock.travel(retention)
    before = row_counts()

    response = caller.send(caller.body(2))

    assert response.status_code == 201, response.get_data(as_text=True)
    assert REPLAYED_HEADER not in response.headers
    assert row_counts()[write_.effect] == before[write_.effect] + 1
    assert row_counts()["idempotency_keys"] == 1


def test_after_retention_the_same_key_reporting_another_review_pays_again(app, make_api_key, member, clock,
                                                                         retention):
    _publish(app, REVIEWS_PAY)
    headers = {**bearer(make_api_key("members:write")), "Idempotency-Key": KEY}
    client = app.test_client()
    first = client.post(f"/v1/members/{member}/events", json={"type": "review"}, headers=headers)
    clock.travel(retention)

    second = client.post(f"/v1/members/{member}/events", json={"type": "review"}, headers=headers)

    assert second.status_code == 201, second.get_data(as_text=True)
    assert REPLAYED_HEADER not in second.headers
    assert second.get_json()["transaction_id"] != first.get_json()["transaction_id"]
    assert _available(app, member) == 40


def test_after_retention_a_member_may_claim_another_reward_with_the_same_key(app, member_client, clock, retention):
    client, claimant = member_client()
    _give(app, claimant["id"], 100)
    with app.app_context():
        offer = offers.create_offer({"name": "Ten", "kind": "percent_off", "percent": 10})
        mug, tote = (catalog.create_reward({"offer_id": offer.public_id, "name": name, "points_cost": 10}).public_id
                     for name in ("Mug", "Tote"))
        db.session.commit()
    client.post(f"/v1/me/rewards/{mug}/claim", headers={"Idempotency-Key": KEY})
    clock.travel(retention)

    response = client.post(f"/v1/me/rewards/{tote}/claim", headers={"Idempotency-Key": KEY})

    assert response.status_code == 201, response.get_data(as_text=True)
    assert _available(app, claimant["id"]) == 80


def test_purge_expired_deletes_the_keys_past_retention_and_only_those(caller_of, clock, retention, in_app,
                                                                     stored_keys):
    caller = caller_of(WRITES["enrol a member"])
    caller.send(caller.body(1), key="expired")
    clock.travel(timedelta(hours=1))
    caller.send(caller.body(2), key="expires-now")
    clock.travel(timedelta(hours=1))
    caller.send(caller.body(3), key="kept")

    with in_app():
        result = jobs.purge_idempotency_keys(T0 + timedelta(hours=1) + retention)

    assert result == {"purged": 2}
    assert stored_keys() == {"kept"}


def test_purge_expired_works_through_every_batch(caller_of, clock, retention, in_app, stored_keys):
    caller = caller_of(WRITES["enrol a member"])
    for n in range(5):
        caller.send(caller.body(n), key=f"key-{n}")

    with in_app():
        result = jobs.purge_idempotency_keys(T0 + retention, batch_size=2)

    assert result == {"purged": 5}
    assert stored_keys() == set()


def test_a_key_kept_through_a_purge_still_replays(caller_of, clock, retention, in_app):
    caller = caller_of(WRITES["enrol a member"])
    first = caller.send(caller.body(1))
    with in_app():
        jobs.purge_idempotency_keys(T0 + retention - SECOND)

    retry = caller.send(caller.body(1))

    assert retry.headers[REPLAYED_HEADER] == "true"
    assert retry.get_data() == first.get_data()


def test_the_purge_job_runs_from_the_command_line(caller_of, clock, retention, runner, stored_keys):
    caller = caller_of(WRITES["enrol a member"])
    caller.send(caller.body(1), key="old")
    clock.travel(retention)
    caller.send(caller.body(2), key="new")

    result = runner.invoke(args=["loyalty", "jobs", "run", "purge"])

    assert result.exit_code == 0, result.output
    assert result.output.startswith("purge: idempotency_keys=1, events=0 in ")
    assert stored_keys() == {"new"}


# --- Every write route is a unit of work -----------------------------------------------------------------

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _write_routes(app: Flask) -> list[tuple[str, str]]:
    return sorted((f"{'/'.join(sorted(rule.methods & WRITE_METHODS))} {rule.rule}", rule.endpoint)
                  for rule in app.url_map.iter_rules()
                  if rule.rule.startswith("/v1/") and rule.methods & WRITE_METHODS)


def _wrappers(view: Callable) -> list[Callable]:
    """The view and every function it wraps, outermost first (functools.wraps sets __wrapped__)."""
    chain = [view]
    while (inner := getattr(chain[-1], "__wrapped__", None)) is not None:
        chain.append(inner)
    return chain


WRITE_WRAPPER = write(lambda: None).__code__
REQUIRE_WRAPPER = require(scope="admin")(lambda: None).__code__


def _position(chain: list[Callable], code) -> int | None:
    return next((n for n, function in enumerate(chain) if getattr(function, "__code__", None) is code), None)


def test_the_routes_that_answer_for_themselves_exist(app):
    exempt = ANSWER_FOR_THEMSELVES | READS_SENT_AS_POST
    assert exempt - {rule.rule for rule in app.url_map.iter_rules()} == set()


def test_every_write_route_is_a_unit_of_work(app):
    missing = [route for route, endpoint in _write_routes(app)
               if route.split(" ", 1)[1] not in ANSWER_FOR_THEMSELVES | READS_SENT_AS_POST
               and not getattr(app.view_functions[endpoint], "is_unit_of_work", False)]

    assert missing == []


def test_the_unit_of_work_marker_is_write_itself_in_the_call_chain(app):
    """`is_unit_of_work` reaches the registered view only because functools.wraps copies it outward; check
    that the function `@write` returns really is on the path a request takes."""
    marked = [endpoint for _, endpoint in _write_routes(app)
              if getattr(app.view_functions[endpoint], "is_unit_of_work", False)]
    not_called = [endpoint for endpoint in marked
                  if _position(_wrappers(app.view_functions[endpoint]), WRITE_WRAPPER) is None]

    assert marked
    assert not_called == []


def test_every_unit_of_work_checks_the_caller_before_it_claims_a_key(app):
    """Keys are per caller, so `@require` must have named the caller before `@write` claims the key."""
    misordered = []
    for route, endpoint in _write_routes(app):
        chain = _wrappers(app.view_functions[endpoint])
        claims_at, checks_at = _position(chain, WRITE_WRAPPER), _position(chain, REQUIRE_WRAPPER)
        if claims_at is not None and (checks_at is None or checks_at > claims_at):
            misordered.append(route)

    assert misordered == []


@pytest.mark.real_commits  # threads, each with a connection of its own
def test_the_quote_a_post_that_is_no_unit_of_work_changes_nothing(app, make_api_key, member, coupon, row_counts,
                                                                  stored_keys):
    _give(app, member, 500)
    headers = {**bearer(make_api_key("checkout")), "Idempotency-Key": KEY}
    body = {"member_id": member, "currency": "usd", "lines": LINES, "coupon_code": coupon, "points": 100}
    before = row_counts()

    response = app.test_client().post("/v1/checkout/quote", json=body, headers=headers)

    assert response.status_code == 200, response.get_data(as_text=True)
    assert row_counts() == before
    assert stored_keys() == set()


# --- Retries racing each other -----------------------------------------------------------------------------

def _race(app: Flask, racers: int, send: Callable[[FlaskClient], object]) -> list:
    """Send from `racers` threads at once, each with its own test client (and so its own app context)."""
    barrier = threading.Barrier(racers)
    responses: list = [None] * racers

    def run(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        responses[n] = send(client)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def _checkout_setup(app: Flask) -> tuple[str, str]:
    """A member, an API key with scope checkout, and earning rules in force; answers the member's id and the key."""
    with app.app_context():
        member = members.enrol(members.NewMember(email=unique_email("racer")), source="test")
        _, secret = auth.create_api_key(name="shop", scopes=["checkout"])
        publish_rules(RULES)
        return member.public_id, secret


def _counts(app: Flask) -> tuple[int, int, int]:
    """Orders, earn transactions and stored keys."""
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(Order)),
                db.session.scalar(select(func.count()).select_from(JournalTransaction)
                                  .where(JournalTransaction.kind == "earn")),
                db.session.scalar(select(func.count()).select_from(StoredResponse)))


def _order_race(app: Flask) -> list:
    member_id, secret = _checkout_setup(app)
    body = {"order_id": "order-1", "member_id": member_id, "currency": "usd", "lines": LINES, "total_amount": 1000}
    headers = {**bearer(secret), "Idempotency-Key": KEY}
    return _race(app, 8, lambda client: client.post("/v1/orders", json=body, headers=headers))


def test_8_concurrent_retries_of_an_order_on_postgresql_answer_one_answer_and_earn_once(pg):
    responses = _order_race(pg)

    assert [r.status_code for r in responses] == [201] * 8, [r.get_data(as_text=True) for r in responses]
    assert len({r.get_data() for r in responses}) == 1
    assert responses[0].get_json()["points_earned"] == 10
    assert sorted(r.headers.get(REPLAYED_HEADER) or "" for r in responses) == [""] + ["true"] * 7
    assert _counts(pg) == (1, 1, 1)


@pytest.mark.real_commits  # threads, each with a connection of its own
def test_8_concurrent_retries_of_an_order_on_the_suites_database_answer_one_answer_and_earn_once(app):
    responses = _order_race(app)

    assert [r.status_code for r in responses] == [201] * 8, [r.get_data(as_text=True) for r in responses]
    assert len({r.get_data() for r in responses}) == 1
    assert sorted(r.headers.get(REPLAYED_HEADER) or "" for r in responses) == [""] + ["true"] * 7
    assert _counts(app) == (1, 1, 1)


def test_8_concurrent_requests_reusing_an_expired_key_on_postgresql_make_one_new_order(pg, clock, retention,
                                                                                       monkeypatch):
    member_id, secret = _checkout_setup(pg)
    headers = {**bearer(secret), "Idempotency-Key": KEY}
    pg.test_client().post("/v1/orders", json={"order_id": "order-0", "member_id": member_id, "currency": "usd",
                                              "lines": LINES, "total_amount": 1000}, headers=headers)
    clock.travel(retention)
    _all_read_the_expired_key_before_any_goes_on(monkeypatch, racers=8)
    body = {"order_id": "order-1", "member_id": member_id, "currency": "usd", "lines": LINES, "total_amount": 1000}

    responses = _race(pg, 8, lambda client: client.post("/v1/orders", json=body, headers=headers))

    assert [r.status_code for r in responses] == [201] * 8, [r.get_data(as_text=True) for r in responses]
    assert len({r.get_data() for r in responses}) == 1
    assert _counts(pg) == (2, 2, 1)


def _all_read_the_expired_key_before_any_goes_on(monkeypatch, *, racers: int) -> None:
    """Make the race certain: each request, having looked its key up once, waits for all the others to have."""
    barrier, seen = threading.Barrier(racers), threading.local()
    look_up = writes._stored

    def look_up_then_wait(caller: str, key: str):
        stored = look_up(caller, key)
        if not getattr(seen, "once", False):
            seen.once = True
            barrier.wait(timeout=30)
        return stored

    monkeypatch.setattr(writes, "_stored", look_up_then_wait)


# --- However the body arrives -----------------------------------------------------------------------------

def _post_chunked(base_url: str, path: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    """POST `body` with Transfer-Encoding: chunked and no Content-Length, through a real HTTP server."""
    connection = http.client.HTTPConnection(urlsplit(base_url).netloc, timeout=10)
    payload = json.dumps(body).encode()
    connection.request("POST", path, body=iter([payload[:7], payload[7:]]), encode_chunked=True,
                       headers={**headers, "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    response = connection.getresponse()
    answer = (response.status, json.loads(response.read()))
    connection.close()
    return answer


def test_the_same_key_with_another_chunked_body_is_409_idempotency_key_reused(live_server, make_api_key,
                                                                              row_counts):
    headers = {**bearer(make_api_key("members:write")), "Idempotency-Key": KEY}
    first_email, second_email = unique_email(), unique_email()
    status, first = _post_chunked(live_server, "/v1/members", {"email": first_email}, headers)
    before = row_counts()

    status_again, answer = _post_chunked(live_server, "/v1/members", {"email": second_email}, headers)

    assert (status, first["email"]) == (201, first_email)
    assert (status_again, answer["code"]) == (409, "idempotency_key_reused")
    assert row_counts() == before


def test_a_chunked_retry_of_the_same_body_replays_the_first_answer(live_server, make_api_key, row_counts):
    headers = {**bearer(make_api_key("members:write")), "Idempotency-Key": KEY}
    body = {"email": unique_email()}
    _, first = _post_chunked(live_server, "/v1/members", body, headers)
    before = row_counts()

    status, retry = _post_chunked(live_server, "/v1/members", body, headers)

    assert (status, retry) == (201, first)
    assert row_counts() == before


# --- What is kept of the request --------------------------------------------------------------------------

def test_the_kept_fingerprint_of_a_body_with_a_password_cannot_be_recomputed_without_the_apps_secret(
        client, make_api_key, app):
    """A stored hash over known fields and a password is a password hash anyone with the table could test guesses
    against at sha256's speed: keyed with the secret, it is not."""
    body = {"email": unique_email("staff"), "role": "analyst", "password": "correct horse battery staple"}
    headers = {**bearer(make_api_key("admin")), "Idempotency-Key": KEY}
    assert client.post("/v1/admin/staff", json=body, headers=headers).status_code == 201

    with app.app_context():
        kept = db.session.scalar(select(StoredResponse.request_hash).where(StoredResponse.key == KEY))
    assert kept != fingerprint("POST", "/v1/admin/staff", [], body)
    assert client.post("/v1/admin/staff", json=body, headers=headers).headers[REPLAYED_HEADER] == "true"
