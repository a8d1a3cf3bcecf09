"""Worker figures on PostgreSQL: points expired per second on a database of 1,000,000 lots, and outbound
events delivered per second to a receiver on 127.0.0.1.

    make bench-worker    (or: python -m bench.worker_bench [--members 100000] [--seconds 30] [--events 2000])

Seeds `--members` members with 10 lots each (bench.ledger_bench's seed), makes every lot due, runs the
expire-points job for `--seconds` and reports the rate; then writes `--events` outbox events, registers an
endpoint on a local receiver that checks every signature, and times dispatch plus delivery. Afterwards
`ledger verify` must pass. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import flask_migrate
from sqlalchemy import text

from bench.ledger_bench import scratch_database, seed
from loyalty import create_app
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.jobs.service import expire_points
from loyalty.ledger.verify import verify
from loyalty.webhooks import delivery, outbound, outbox


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


def expiry_rate(app, seconds: float) -> tuple[int, float]:
    with app.app_context():
        db.session.execute(text("UPDATE ledger_lots SET expires_at = now() - interval '1 day'"))
        db.session.commit()
        # As time passing would have it: the statistics know the lots are due. Straight after rewriting every
        # row they do not, and the planner reads a member's lots through the wrong index.
        db.session.execute(text("ANALYZE ledger_lots"))
        db.session.commit()
        lots = db.session.execute(text("SELECT count(*) FROM ledger_lots WHERE status = 'active'")).scalar()
        print(f"{lots} active lots, all due to expire")
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
            outbox.emit("points.expiring", {"lot_id": f"lot_bench{n}", "points": 10}, member_id=n % members + 1)
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
    args = parser.parse_args()

    url = scratch_database("loyalty_bench_worker")
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        flask_migrate.upgrade()
        print(f"seeded {args.members} members, {args.members * 10} lots in {seed(args.members):.1f} s")
    expired, elapsed = expiry_rate(app, args.seconds)
    print(f"expire-points: {expired} lots expired in {elapsed:.1f} s ({expired / elapsed:.0f} lots/s, "
          f"one worker)")
    delivery_rate(app, args.events, args.members)
    with app.app_context():
        breaches = [r.check.name for r in verify(db.session) if not r.ok]
        print(f"ledger verify: breaches {breaches or 'none'}")
        db.engine.dispose()


if __name__ == "__main__":
    main()
