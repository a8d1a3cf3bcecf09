"""Checkout figures over HTTP on PostgreSQL under gunicorn: redemption hold + capture, and Stripe webhook
events applied per second.

    make bench-checkout    (or: python -m bench.checkout_bench [--members 20000] [--seconds 10]
                            [--clients 16] [--workers 4])

Makes a scratch database `loyalty_bench_checkout`, migrates and seeds it (as bench.ledger_bench does),
publishes rules, starts gunicorn (sync workers, production configuration) on 127.0.0.1, then drives it
from `--clients` client processes: each redemption is `POST /v1/redemptions` (with an Idempotency-Key)
then `POST /v1/redemptions/{id}/capture`; each webhook is a signed `payment_intent.succeeded` for a new
order. Afterwards `ledger verify` must pass and the database must hold exactly what the clients counted.
Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import flask_migrate
from sqlalchemy import text

from bench.ledger_bench import scratch_database, seed
from bench.processes import run_clients
from loyalty import create_app
from loyalty.auth import service as auth
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger.verify import verify
from loyalty.rules import service as rules
from tests import stripe_events

RULES = {"earn": {"rates": {"usd": "1"}, "pending_days": 14},
         "redeem": {"point_values": {"usd": "1"}, "max_share_percent": 100}}
WEBHOOK_SECRET = "whsec_bench_" + "x" * 24
SECRET_KEY = "bench-" + "s" * 40


def _percentile(values: list[float], share: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * share))] * 1000 if values else float("nan")


class Client:
    """One keep-alive-capable HTTP connection; sync gunicorn workers close it after each answer."""

    def __init__(self, port: int, api_key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def post(self, path: str, body: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
        self.connection.request("POST", path, body=body, headers={**self.headers, **(headers or {})})
        response = self.connection.getresponse()
        data = response.read()
        if response.getheader("Connection", "").lower() == "close":
            self.connection.close()
        return response.status, json.loads(data) if data else {}


def _redeem_loop(port: int, api_key: str, members: int, seconds: float, n: int, results) -> None:
    client, rng = Client(port, api_key), random.Random(n)
    pairs, holds, captures, errors = [], [], [], 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        member = rng.randint(1, members)
        body = json.dumps({"member_id": f"mem_bench{member}", "order_id": f"bench-{n}-{uuid.uuid4().hex}",
                           "currency": "usd", "amount": 1000, "points": 10})
        started = time.perf_counter()
        status, redemption = client.post("/v1/redemptions", body, {"Idempotency-Key": uuid.uuid4().hex})
        held = time.perf_counter()
        if status != 201:
            errors += 1
            continue
        status, _ = client.post(f"/v1/redemptions/{redemption['id']}/capture", "{}")
        done = time.perf_counter()
        if status != 200:
            errors += 1
            continue
        holds.append(held - started)
        captures.append(done - held)
        pairs.append(done - started)
    results.put({"pairs": pairs, "holds": holds, "captures": captures, "errors": errors})


def _webhook_loop(port: int, api_key: str, members: int, seconds: float, n: int, results) -> None:
    client, rng = Client(port, api_key), random.Random(1000 + n)
    latencies, errors = [], 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        member = rng.randint(1, members)
        intent = stripe_events.payment_intent(amount=2500, metadata={
            "loyalty_member_id": f"mem_bench{member}", "order_id": f"bench-wh-{n}-{uuid.uuid4().hex}"})
        payload = stripe_events.body(stripe_events.event("payment_intent.succeeded", intent))
        started = time.perf_counter()
        status, answer = client.post("/v1/webhooks/stripe", payload,
                                     {"Stripe-Signature": stripe_events.sign(payload, WEBHOOK_SECRET)})
        if status != 200 or answer.get("status") != "applied":
            errors += 1
            continue
        latencies.append(time.perf_counter() - started)
    results.put({"pairs": latencies, "errors": errors})


def _drive(target, port: int, api_key: str, members: int, seconds: float, clients: int) -> list[dict]:
    return run_clients(target, (port, api_key, members, seconds), clients)


def _gunicorn(url: str, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "LOYALTY_ENV": "production", "DATABASE_URL": url, "LOYALTY_SECRET_KEY": SECRET_KEY,
           "LOYALTY_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET, "LOYALTY_LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(  # noqa: S603 - our own gunicorn, fixed arguments
        [str(Path(sys.executable).with_name("gunicorn")), "--workers", str(workers), "--worker-class", "sync",
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"], env=env)
    for _ in range(100):
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.1)
    server.terminate()
    raise RuntimeError("gunicorn did not become ready")


def _report(label: str, outcomes: list[dict], seconds: float, key: str = "pairs") -> int:
    values = [v for outcome in outcomes for v in outcome[key]]
    errors = sum(outcome["errors"] for outcome in outcomes)
    print(f"{label}: {len(values) / seconds:.0f}/s, p50 {_percentile(values, 0.5):.1f} ms, "
          f"p99 {_percentile(values, 0.99):.1f} ms, errors {errors}")
    return len(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()

    url = scratch_database("loyalty_bench_checkout")
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        flask_migrate.upgrade()
        print(f"seeded {args.members} members in {seed(args.members):.1f} s")
        draft = rules.create_draft(RULES, note=None, staff_id=None)
        rules.publish(draft.version, effective_from=None, staff_id=None, now=now())
        _, api_key = auth.create_api_key(name="bench", scopes=["checkout"])
        db.session.commit()
        db.engine.dispose()

    server = _gunicorn(url, args.port, args.workers)
    try:
        print(f"gunicorn: {args.workers} sync workers; {args.clients} client processes, {args.seconds:.0f} s each")
        outcomes = _drive(_redeem_loop, args.port, api_key, args.members, args.seconds, args.clients)
        captured = _report("redemption hold + capture", outcomes, args.seconds)
        _report("  hold alone", outcomes, args.seconds, "holds")
        _report("  capture alone", outcomes, args.seconds, "captures")
        outcomes = _drive(_webhook_loop, args.port, api_key, args.members, args.seconds, args.clients)
        applied = _report("stripe webhook events applied", outcomes, args.seconds)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    with app.app_context():
        counted = db.session.execute(text(
            "SELECT (SELECT count(*) FROM redemptions WHERE status = 'captured'), "
            "(SELECT count(*) FROM stripe_events WHERE status = 'applied')")).one()
        breaches = [r.check.name for r in verify(db.session) if not r.ok]
        print(f"database: {counted[0]} captured redemptions (clients counted {captured}), {counted[1]} applied "
              f"events (clients counted {applied}); ledger verify breaches: {breaches or 'none'}")
        db.engine.dispose()
    if breaches or tuple(counted) != (captured, applied):
        sys.exit(1)


if __name__ == "__main__":
    main()
