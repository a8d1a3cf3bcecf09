"""Where a checkout request's time goes, in-process on PostgreSQL: per operation, the median wall time, the
SQL statements it sends and their share, and a pyinstrument profile of the slowest parts.

    make bench-profile    (or: python -m bench.profile_checkout [--members 5000] [--requests 300]
                           [--op summary|quote|hold|capture|earn|refund|all] [--profile])

Runs the production configuration through the WSGI app (no server, no network), so what it shows is the
application's own cost per request: Flask, marshmallow, the ORM and the database round trips.
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import os
import pstats
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import event

from bench.program import prepare
from loyalty import create_app
from loyalty.extensions import db
from tests import stripe_events

WEBHOOK_SECRET = "whsec_profile_" + "x" * 24
LINES = [{"sku": "tee", "category": "apparel", "quantity": 2, "unit_amount": 1500},
         {"sku": "mug", "category": "home", "quantity": 1, "unit_amount": 1200}]


def _unix_now() -> int:
    """Paid now, not at the fixtures' fixed date: rules published today must be in force for the order."""
    return int(time.time())


class Statements:
    """Counts the SQL statements the engine sends while `counting`."""

    def __init__(self, engine) -> None:
        self.count, self.seconds, self._started = 0, 0.0, 0.0
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, *_args) -> None:
        self._started = time.perf_counter()

    def _after(self, *_args) -> None:
        self.count += 1
        self.seconds += time.perf_counter() - self._started


class Checkout:
    """One caller of the WSGI app with an API key, and the requests of each operation."""

    def __init__(self, app, api_key: str, members: int) -> None:
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.members = itertools.cycle(range(1, members + 1))
        self.paid: list[tuple[str, str]] = []  # (order id, payment intent id) of orders paid through webhooks
        self.held: list[str] = []

    def _post(self, path: str, body: dict | str, headers: dict | None = None, expect: int = 200) -> dict:
        data = body if isinstance(body, str) else json.dumps(body)
        response = self.client.post(path, data=data, content_type="application/json",
                                    headers={**self.headers, **(headers or {})})
        assert response.status_code == expect, (path, response.status_code, response.get_data(as_text=True))
        return response.get_json()

    def summary(self) -> None:
        response = self.client.get(f"/v1/members/mem_bench{next(self.members)}", headers=self.headers)
        assert response.status_code == 200, response.get_data(as_text=True)

    def quote(self) -> None:
        self._post("/v1/checkout/quote", {"member_id": f"mem_bench{next(self.members)}", "currency": "usd",
                                          "lines": LINES, "points": 20})

    def hold(self) -> None:
        answer = self._post("/v1/redemptions", {
            "member_id": f"mem_bench{next(self.members)}", "order_id": f"profile-{uuid.uuid4().hex}",
            "currency": "usd", "amount": 4200, "points": 10}, {"Idempotency-Key": uuid.uuid4().hex}, expect=201)
        self.held.append(answer["id"])

    def capture(self) -> None:
        self._post(f"/v1/redemptions/{self.held.pop()}/capture", {})

    def earn(self) -> None:
        order_id, intent_id = f"profile-paid-{uuid.uuid4().hex}", stripe_events.new_id("pi")
        intent = stripe_events.payment_intent(amount=4200, intent_id=intent_id, created=_unix_now(), metadata={
            "loyalty_member_id": f"mem_bench{next(self.members)}", "order_id": order_id})
        self._webhook(stripe_events.event("payment_intent.succeeded", intent, created=_unix_now()))
        self.paid.append((order_id, intent_id))

    def refund(self) -> None:
        order_id, intent_id = self.paid.pop()
        charge = stripe_events.charge(amount=4200, amount_refunded=1680, payment_intent=intent_id,
                                      metadata={"order_id": order_id}, created=_unix_now())
        self._webhook(stripe_events.event("charge.refunded", charge, created=_unix_now()))

    def _webhook(self, event_payload: dict) -> None:
        payload = stripe_events.body(event_payload)
        answer = self._post("/v1/webhooks/stripe", payload,
                            {"Stripe-Signature": stripe_events.sign(payload, WEBHOOK_SECRET)})
        assert answer.get("status") == "applied", answer


@contextmanager
def _profiled(enabled: bool, label: str) -> Iterator[None]:
    if not enabled:
        yield
        return
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    yield
    profiler.stop()
    print(f"\n===== {label} =====")
    print(profiler.output_text(unicode=False, color=False, show_all=False))


def _python_calls(operation: Callable[[], None], requests: int) -> float:
    """Python function calls per request: unlike time, the same on a busy machine as on an idle one."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        operation()
    profiler.disable()
    return pstats.Stats(profiler).total_calls / requests


def _measure(label: str, operation: Callable[[], None], requests: int, statements: Statements,
             profile: bool) -> None:
    for _ in range(20):  # warm caches and the pool
        operation()
    calls = _python_calls(operation, 20)
    times, statements.count, statements.seconds = [], 0, 0.0
    cpu_started = time.process_time()
    with _profiled(profile, label):
        for _ in range(requests):
            started = time.perf_counter()
            operation()
            times.append(time.perf_counter() - started)
    cpu = (time.process_time() - cpu_started) / requests
    total = sum(times)
    # CPU is this process's own, the app's; it still grows somewhat when other processes load the machine.
    print(f"{label:8} median {statistics.median(times) * 1000:6.2f} ms  app CPU {cpu * 1000:5.2f} ms  "
          f"{calls:7,.0f} Python calls  {statements.count / requests:5.1f} statements  "
          f"SQL {statements.seconds / total:4.0%} of the wall time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--op", default="all")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    program = prepare(args.members, "loyalty_bench_profile")  # the same program `make bench` drives
    os.environ.update(LOYALTY_SECRET_KEY="profile-" + "s" * 40, LOYALTY_STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
                      LOYALTY_LOG_LEVEL="WARNING")
    app = create_app("production", {"SQLALCHEMY_DATABASE_URI": program.url})
    with app.app_context():
        statements = Statements(db.engine)
    api_key = program.api_key

    checkout = Checkout(app, api_key, args.members)
    # Each capture needs a hold and each refund a paid order, so those run after their partners.
    order = ["summary", "quote", "hold", "capture", "earn", "refund"]
    for name in order if args.op == "all" else [args.op]:
        if name == "capture" and args.op == "capture":
            for _ in range(args.requests + 40):
                checkout.hold()
        if name == "refund" and args.op == "refund":
            for _ in range(args.requests + 40):
                checkout.earn()
        _measure(name, getattr(checkout, name), args.requests, statements, args.profile)
    with app.app_context():
        db.engine.dispose()


if __name__ == "__main__":
    main()
