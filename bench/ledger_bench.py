"""Ledger and tier figures on PostgreSQL: holds per second, `ledger verify` time, the tier evaluation
job's time, member-summary read time.

    make bench-ledger    (or: python -m bench.ledger_bench [--members 100000] [--seconds 10] [--clients 8])

Makes a scratch database `loyalty_bench` on LOYALTY_BENCH_POSTGRES_URL (default: the machine's
127.0.0.1:5432, user postgres), migrates it, seeds it set-based (10 earns a member, so 2 postings,
a lot and a lot movement each), then measures. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import flask_migrate
from psycopg.types.numeric import Int8
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from bench.processes import run_clients
from loyalty import create_app
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.ledger.verify import verify
from loyalty.members import service as members
from loyalty.members.models import Member
from loyalty.tiers import service as tiers

EARNS_PER_MEMBER = 10
KINDS = ("available", "pending", "held", "issued", "redeemed", "expired", "adjusted")

SEED = [
    """INSERT INTO members (id, public_id, email, status, referral_code, session_key, created_at, updated_at)
       SELECT g, 'mem_bench' || g, 'bench' || g || '@example.test', 'active', 'B' || g, md5(g::text), now(), now()
       FROM generate_series(1, :members) AS g""",
    """INSERT INTO ledger_accounts (id, member_id, kind, balance)
       SELECT (m - 1) * 7 + k, m, (ARRAY['available','pending','held','issued','redeemed','expired','adjusted'])[k],
              CASE k WHEN 1 THEN :earns * 10 WHEN 4 THEN -:earns * 10 ELSE 0 END
       FROM generate_series(1, :members) AS m, generate_series(1, 7) AS k""",
    """INSERT INTO ledger_transactions (id, public_id, member_id, kind, points, available_after, pending_after,
                                        held_after, description, reference, request_hash, shortfall, created_at)
       SELECT (m - 1) * :earns + e, 'txn_bench' || ((m - 1) * :earns + e), m, 'earn', 10, 10 * e, 0, 0,
              'Bench order ' || e, 'bench:' || m || ':' || e, 'bench', 0, now()
       FROM generate_series(1, :members) AS m, generate_series(1, :earns) AS e""",
    """INSERT INTO ledger_postings (transaction_id, account_id, amount)
       SELECT t, (t - 1) / :earns * 7 + side, CASE side WHEN 1 THEN 10 ELSE -10 END
       FROM generate_series(1, :members * :earns) AS t, (VALUES (1), (4)) AS sides(side)""",
    """INSERT INTO ledger_lots (id, public_id, member_id, transaction_id, amount, remaining, status, expires_at,
                                created_at)
       SELECT t, 'lot_bench' || t, (t - 1) / :earns + 1, t, 10, 10, 'active', now() + interval '365 days', now()
       FROM generate_series(1, :members * :earns) AS t""",
    """INSERT INTO ledger_lot_movements (transaction_id, lot_id, amount)
       SELECT t, t, 10 FROM generate_series(1, :members * :earns) AS t""",
]
SEQUENCES = ("members", "ledger_accounts", "ledger_transactions", "ledger_lots")


def scratch_database(name: str) -> str:
    server = make_url(os.environ.get("LOYALTY_BENCH_POSTGRES_URL",
                                     "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"))
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server.set(database=name).render_as_string(hide_password=False)


SEEDED_TABLES = ("members", "ledger_accounts", "ledger_transactions", "ledger_postings", "ledger_lots",
                 "ledger_lot_movements")
# The tables' foreign keys and unique constraints (primary keys stay) and their plain indexes, as the catalog
# has them, so they are built again exactly as the migrations made them.
_KEYS = """SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid) FROM pg_constraint
           WHERE conrelid = ANY(CAST(:tables AS regclass[])) AND contype IN ('f', 'u')"""
_INDEXES = """SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' AND tablename = ANY(:tables)
              AND indexname NOT IN (SELECT conname FROM pg_constraint)"""


@contextmanager
def keys_built_after(connection: Connection, tables: tuple[str, ...]) -> Iterator[None]:
    """Load rows as pg_restore does: drop the tables' foreign keys, unique constraints and plain indexes, then
    build them again once the rows are in. One sorted build per index and one set-based check per foreign key
    cost a fraction of per-row index inserts and per-row key checks (3/4 of a row-by-row seed's time). Every
    key is checked again when it is added back, so a bad seed still fails."""
    keys = connection.execute(text(_KEYS), {"tables": list(tables)}).all()
    indexes = connection.execute(text(_INDEXES), {"tables": list(tables)}).all()
    for table, name, _, _ in sorted(keys, key=lambda key: key[2]):  # foreign keys ("f") before unique ones
        connection.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
    for name, _ in indexes:
        connection.execute(text(f'DROP INDEX "{name}"'))
    yield
    connection.execute(text("SET LOCAL maintenance_work_mem = '512MB'"))
    for _, definition in indexes:
        connection.execute(text(definition))
    for table, name, _, definition in sorted(keys, key=lambda key: key[2], reverse=True):  # unique ones first
        connection.execute(text(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}'))


def seed(member_count: int) -> float:
    """`member_count` members with EARNS_PER_MEMBER earns each (a transaction, 2 postings, a lot and a lot
    movement apiece), in one transaction; answers the seconds it took, ANALYZE included."""
    started = time.perf_counter()
    with db.engine.begin() as connection:
        with keys_built_after(connection, SEEDED_TABLES):
            for statement in SEED:
                # As bigints: psycopg would send small numbers as smallint, and products overflow it.
                connection.execute(text(statement), {"members": Int8(member_count),
                                                     "earns": Int8(EARNS_PER_MEMBER)})
        for table in SEQUENCES:
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"(SELECT max(id) FROM {table}))"))
        connection.execute(text("ANALYZE"))
    return time.perf_counter() - started


def _hold_client(url: str, member_ids: list[int], seconds: float, n: int, results) -> None:
    """One client process: hold 1 point and commit, in a loop, on a member drawn from `member_ids`."""
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"})
    rng, latencies, errors = random.Random(n), [], 0
    deadline = time.perf_counter() + seconds
    with app.app_context():
        while time.perf_counter() < deadline:
            member = rng.choice(member_ids)
            started = time.perf_counter()
            try:
                ledger.hold(member, 1, reference=f"bench-hold:{n}:{len(latencies)}:{errors}:{member}",
                            expires_at=now() + timedelta(minutes=30), now=now(), description="Bench")
                db.session.commit()
            except Exception:
                db.session.rollback()
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)
        db.engine.dispose()
    results.put((latencies, errors))


def holds_per_second(url: str, member_ids: list[int], clients: int, seconds: float) -> tuple[float, float, int]:
    """`clients` processes (as gunicorn workers would be, so the GIL is not what is measured)."""
    outcomes = run_clients(_hold_client, (url, member_ids, seconds), clients)
    latencies = sorted(latency for done, _ in outcomes for latency in done)
    p99 = latencies[int(len(latencies) * 0.99)] if latencies else float("nan")
    return len(latencies) / seconds, p99 * 1000, sum(errors for _, errors in outcomes)


def summary_read_ms(app, member_count: int, reads: int = 2000) -> tuple[float, float]:
    rng = random.Random(7)
    timings = []
    with app.app_context():
        for _ in range(reads):
            member = db.session.get(Member, rng.randint(1, member_count))
            started = time.perf_counter()
            members.summary(member)
            timings.append((time.perf_counter() - started) * 1000)
            db.session.rollback()
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.99)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()

    url = scratch_database("loyalty_bench")
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING",
                                 "SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": args.clients + 4}})
    with app.app_context():
        flask_migrate.upgrade()
        seconds = seed(args.members)
        postings = db.session.execute(text("SELECT count(*) FROM ledger_postings")).scalar()
        print(f"seeded {args.members} members, {postings} postings in {seconds:.1f} s")

        started = time.perf_counter()
        breaches = [r.check.name for r in verify(db.session) if not r.ok]
        print(f"ledger verify: {time.perf_counter() - started:.2f} s, breaches: {breaches or 'none'}")
        db.session.rollback()

    with app.app_context():
        for rank, (code, threshold) in enumerate((("member", 0), ("silver", 50), ("gold", 100))):
            tiers.create_tier({"code": code, "name": code.title(), "rank": rank, "threshold": threshold,
                               "basis": "points", "window_days": 365})
        db.session.commit()
        for label in ("every member upgraded", "nobody moves"):
            started = time.perf_counter()
            counts = tiers.evaluate_all(now())
            print(f"evaluate-tiers, {label}: {time.perf_counter() - started:.1f} s {counts}")

    median, p99 = summary_read_ms(app, args.members)
    print(f"member summary read: median {median:.2f} ms, p99 {p99:.2f} ms")

    with app.app_context():  # enough points on member 1 for every hold of the single-member run
        ledger.earn(1, 10**9, reference="bench:rich", description="Bench", now=now())
        db.session.commit()
        db.engine.dispose()
    for label, ids in (("one member", [1]), ("random members", list(range(1, args.members + 1)))):
        rate, p99, errors = holds_per_second(url, ids, args.clients, args.seconds)
        print(f"holds/s, {args.clients} clients, {label}: {rate:.0f} (p99 {p99:.1f} ms, errors {errors})")

    with app.app_context():
        started = time.perf_counter()
        breaches = [r.check.name for r in verify(db.session) if not r.ok]
        print(f"ledger verify after the holds: {time.perf_counter() - started:.2f} s, breaches: {breaches or 'none'}")
        db.engine.dispose()


if __name__ == "__main__":
    main()
