"""Worker figures on PostgreSQL: points expired per second on a database of 1,000,000 lots, and outbound
events delivered per second to a receiver on 127.0.0.1.

    make bench-worker    (or: python -m bench.worker_bench [--members 100000] [--seconds 30] [--events 2000]
                                                   [--expiry dated|inactivity])

Seeds `--members` members with 10 lots each (bench.ledger_bench's seed), makes every lot due, runs the
expire-points job for `--seconds` and reports the rate; then writes `--events` outbox events, registers an
endpoint on a local receiver that checks every signature, and times dispatch plus delivery. Afterwards
`ledger verify` must pass. Prints figures; asserts nothing about time.

`--expiry inactivity` (make bench-inactivity) makes the lots due the other way: the rules in force expire
points after 30 days without activity, and every member's last activity is 60 days ago; the lots carry no
date. It also times the reminder job's pass over the same members, first, while their points are due soon.
"""

from __future__ import annotations

import argparse
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import flask_migrate
from sqlalchemy import text

from bench.ledger_bench import scratch_database, seed
from loyalty import create_app
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.jobs.service import expire_points, remind_expiring
from loyalty.ledger.verify import verify
from loyalty.rules import service as rules
from loyalty.webhooks import delivery, outbound


class Receiver(BaseHTTPRequestHandler):
    secret = ""
    verified = 0
    refused = 0

    def do_POST(self):  # the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = delivery.verify(self.secret, body, self.headers.get(delivery.SIGNATURE_HEADER, ""))
        if ok:
            type(self).verified += 1
        else:
            type(self).refused += 1
        self.send_response(200 if ok else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


INACTIVITY = {"earn": {"rates": {"usd": "1"}}, "expiry": {"policy": "inactivity", "days": 30}}


def make_members_inactive(idle_days: int) -> None:
    """The inactivity policy in force, every lot undated, every member last active `idle_days` ago."""
    publish_rules(INACTIVITY, now() - timedelta(days=365))
    db.session.execute(text("UPDATE ledger_lots SET expires_at = NULL"))
    db.session.execute(text("UPDATE ledger_accounts SET last_activity_at = now() - make_interval(days => :days) "
                            "WHERE kind = 'available'"), {"days": idle_days})
    db.session.commit()


def publish_rules(document: dict, at) -> None:
    draft = rules.create_draft(document, note="bench", staff_id=None)
    rules.publish(draft.version, effective_from=at, staff_id=None, now=at)
    db.session.commit()


def reminder_rate(app) -> None:
    """The reminder job's pass over every member, their points 25 days idle (due in 5 days), one worker."""
    with app.app_context():
        make_members_inactive(25)
        db.session.execute(text("ANALYZE ledger_accounts"))
        db.session.commit()
        started = time.perf_counter()
        sent = remind_expiring(now())["reminders"]
        elapsed = time.perf_counter() - started
    print(f"remind-expiring (inactivity): {sent} members reminded in {elapsed:.1f} s ({sent / elapsed:.0f}/s)")


def expiry_rate(app, seconds: float, policy: str = "dated") -> tuple[int, float]:
    with app.app_context():
        if policy == "inactivity":
            make_members_inactive(60)
        else:
            db.session.execute(text("UPDATE ledger_lots SET expires_at = now() - interval '1 day'"))
        db.session.commit()
        # As time passing would have it: the statistics know the lots are due. Straight after rewriting every
        # row they do not, and the planner reads a member's lots through the wrong index.
        db.session.execute(text("ANALYZE ledger_lots"))
        db.session.execute(text("ANALYZE ledger_accounts"))
        db.session.commit()
        lots = db.session.execute(text("SELECT count(*) FROM ledger_lots WHERE status = 'active'")).scalar()
        print(f"{lots} active lots, all due to expire ({policy})")
        deadline = time.perf_counter() + seconds
        started = time.perf_counter()
        expire_points(now(), batch_size=200, keep_going=lambda: time.perf_counter() < deadline)
        elapsed = time.perf_counter() - started
        expired = db.session.execute(text("SELECT count(*) FROM ledger_lots WHERE status = 'expired'")).scalar()
    return expired, elapsed


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connections a worker opens at once: 1 s SYN retries


def delivery_rate(app, events: int, members: int) -> None:
    server = Server(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with app.app_context():
        endpoint = outbound.create_endpoint({"url": f"http://127.0.0.1:{server.server_address[1]}/hooks"})
        Receiver.secret = endpoint.secret
        for n in range(events):
            events.emit("points.expiring", {"lot_id": f"lot_bench{n}", "points": 10}, member_id=n % members + 1)
        db.session.commit()
        started = time.perf_counter()
        dispatched = outbound.dispatch(now())
        dispatch_seconds = time.perf_counter() - started
        started = time.perf_counter()
        sent = outbound.deliver_due(now())
        deliver_seconds = time.perf_counter() - started
    server.shutdown()
    print(f"dispatch: {dispatched['deliveries']} deliveries in {dispatch_seconds:.2f} s "
          f"({dispatched['deliveries'] / dispatch_seconds:.0f}/s)")
    print(f"delivery, one worker: {sent['delivered']} delivered in {deliver_seconds:.2f} s "
          f"({sent['delivered'] / deliver_seconds:.0f}/s); receiver verified {Receiver.verified}, "
          f"refused {Receiver.refused}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--expiry", choices=("dated", "inactivity"), default="dated")
    args = parser.parse_args()

    url = scratch_database(f"loyalty_bench_worker_{args.expiry}")
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        flask_migrate.upgrade()
        print(f"seeded {args.members} members, {args.members * 10} lots in {seed(args.members):.1f} s")
    if args.expiry == "inactivity":
        reminder_rate(app)
    expired, elapsed = expiry_rate(app, args.seconds, args.expiry)
    print(f"expire-points ({args.expiry}): {expired} lots expired in {elapsed:.1f} s ({expired / elapsed:.0f} "
          f"lots/s, one worker)")
    if args.expiry == "dated":
        delivery_rate(app, args.events, args.members)
    with app.app_context():
        breaches = [r.check.name for r in verify(db.session) if not r.ok]
        print(f"ledger verify: breaches {breaches or 'none'}")
        db.engine.dispose()


if __name__ == "__main__":
    main()
