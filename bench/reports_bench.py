"""Report figures on PostgreSQL: the summary over a month and over a year, and the liability, at --members.

    make bench-reports    (or: python -m bench.reports_bench [--members 1000000] [--earns 10]
                           [--timezone Asia/Shanghai] [--runs 3])

Makes a scratch database `loyalty_bench_reports` on LOYALTY_BENCH_POSTGRES_URL (default: the machine's
127.0.0.1:5432, user postgres), migrates it and seeds it set-based: members enrolled over two years, their
seven accounts, and per member `--earns` journal transactions over the last year, written in time order as a
live journal is (earns, one redeem, one expiry: two postings each), a paid order per earn, a campaign award
on every fourth earn. Then VACUUM
ANALYZE, and each report is run `--runs` times; prints the best and the median, and the plans' scans of the
liability. Asserts nothing about time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import flask_migrate
from psycopg.types.numeric import Int8
from sqlalchemy import event, text

from bench.ledger_bench import scratch_database
from loyalty import create_app
from loyalty.extensions import db
from loyalty.reports import liability, summary
from loyalty.reports.service import program_timezone

MINUTES_A_YEAR = 365 * 24 * 60
# The journal is written in time order, as a live one is: transaction t (1 .. members x earns) is member
# (t - 1) % members + 1's, at a moment evenly spread over the year before now(). Each member's own transactions
# run through every kind once per `earns`: a redeem and an expiry of 10 points, the rest earns of 10.
_MEMBER = "((t - 1) % :members + 1)"
_SLOT = f"(((t - 1) / :members + {_MEMBER}) % :earns)"  # 0 .. earns - 1, each once per member
SEED = [
    """INSERT INTO members (id, public_id, status, referral_code, session_key, created_at, updated_at)
       SELECT g, 'mem_rb' || lpad(g::text, 8, '0'), 'active', 'RB' || lpad(g::text, 8, '0'), md5(g::text),
              now() - ((g * 7919) % (2 * :minutes)) * interval '1 minute', now()
       FROM generate_series(1, :members) AS g""",
    """INSERT INTO ledger_accounts (id, member_id, kind, balance)
       SELECT (m - 1) * 7 + k, m, (ARRAY['available','pending','held','issued','redeemed','expired','adjusted'])[k],
              CASE k WHEN 1 THEN 10 * :earns - 40 WHEN 4 THEN -10 * (:earns - 2) WHEN 5 THEN 10 WHEN 6 THEN 10
                     ELSE 0 END
       FROM generate_series(1, :members) AS m, generate_series(1, 7) AS k""",
    f"""INSERT INTO ledger_transactions (id, public_id, member_id, kind, points, available_after, pending_after,
                                         held_after, description, reference, request_hash, shortfall, order_id,
                                         created_at)
        SELECT t, 'txn_rb' || t, {_MEMBER},
               CASE {_SLOT} WHEN :earns - 1 THEN 'expire' WHEN :earns - 2 THEN 'redeem' ELSE 'earn' END,
               CASE WHEN {_SLOT} >= :earns - 2 THEN -10 ELSE 10 END, 0, 0, 0, 'Bench', 'rb:' || t, 'b', 0,
               CASE WHEN {_SLOT} < :earns - 2 THEN 'o' || t END,
               now() - interval '365 days' + (t * 31536.0 / (:members * :earns)) * interval '1000 seconds'
        FROM generate_series(1, :members * :earns) AS t""",
    """INSERT INTO ledger_postings (transaction_id, account_id, amount)
       SELECT id, (member_id - 1) * 7 + CASE
                  WHEN side = 1 THEN 1 WHEN kind = 'expire' THEN 6 WHEN kind = 'redeem' THEN 5 ELSE 4 END,
              CASE WHEN (kind = 'earn') = (side = 1) THEN 10 ELSE -10 END
       FROM ledger_transactions, (VALUES (1), (2)) AS sides(side) ORDER BY id, side""",
    """INSERT INTO orders (order_id, member_id, channel, currency, total_amount, shipping_amount, discount_amount,
                           lines, status, paid_at, points_earned, breakdown, earn_transaction_id, request_hash,
                           refunded_amount, points_clawed_back, points_restored, created_at)
       SELECT order_id, member_id, 'web', CASE WHEN id % 5 = 0 THEN 'eur' ELSE 'usd' END, 1000 + id % 7 * 100, 0, 0,
              '[]', 'paid', created_at, 10, '[]', id, 'b', 0, 0, 0, created_at
       FROM ledger_transactions WHERE kind = 'earn' ORDER BY id""",
    """INSERT INTO rule_awards (member_id, transaction_id, rule, points, kept, detail, created_at)
       SELECT member_id, id, 'campaign.bench', 5, 5, 'Bench', created_at
       FROM ledger_transactions WHERE kind = 'earn' AND id % 4 = 0 ORDER BY id""",
]
SEQUENCES = ("members", "ledger_accounts", "ledger_transactions", "orders")


def seed(members: int, earns: int) -> float:
    started = time.perf_counter()
    with db.engine.begin() as connection:
        connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
        for statement in SEED:
            # As bigints: psycopg would send small numbers as smallint, and products overflow it.
            connection.execute(text(statement), {"members": Int8(members), "earns": Int8(earns),
                                                 "minutes": Int8(MINUTES_A_YEAR)})
        for table in SEQUENCES:
            connection.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                    f"(SELECT max(id) FROM {table}))"))
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE")
    return time.perf_counter() - started


def timed(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """Best and median milliseconds of `runs` runs, each in a transaction of its own."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
        db.session.rollback()
    return min(times), statistics.median(times)


def liability_scans() -> list[str]:
    """The scan nodes of the liability's queries on ledger_accounts, explained as sent."""
    sent: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        sent.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        liability.liability(datetime.now(UTC))
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    scans = []
    for statement, parameters in sent:
        if "ledger_accounts" in statement:
            plan = db.session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar()
            scans += [f"{node['Node Type']} using {node.get('Index Name', '-')}" for node in _nodes(plan[0]["Plan"])
                      if node.get("Relation Name") == "ledger_accounts"]
    db.session.rollback()
    return scans


def _nodes(plan: dict) -> list[dict]:
    return [plan, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    parser.add_argument("--earns", type=int, default=10, help="journal transactions per member (at least 3)")
    parser.add_argument("--timezone", default="Asia/Shanghai")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    url = scratch_database("loyalty_bench_reports")
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING",
                                 "PROGRAM_TIMEZONE": args.timezone})
    with app.app_context():
        flask_migrate.upgrade()
        seconds = seed(args.members, max(args.earns, 3))
        journal = db.session.execute(text("SELECT count(*) FROM ledger_transactions")).scalar()
        print(f"seeded {args.members:,} members, {journal:,} journal transactions in {seconds:.1f} s")
        db.session.rollback()

        zone, today = program_timezone(), datetime.now(UTC).astimezone(program_timezone()).date()
        for label, days, period in (("summary, 30 days by day", 30, "day"),
                                    ("summary, 365 days by month", 365, "month"),
                                    ("summary, 366 days by day", 366, "day")):
            buckets = summary.window(today + timedelta(days=1 - days), today + timedelta(days=1), period, zone,
                                     datetime.now(UTC))
            best, median = timed(lambda b=buckets, p=period: summary.summary(b, p, zone), args.runs)
            print(f"{label}: best {best:.0f} ms, median {median:.0f} ms")
        best, median = timed(lambda: liability.liability(datetime.now(UTC)), args.runs)
        print(f"liability: best {best:.0f} ms, median {median:.0f} ms")
        print("liability scans on ledger_accounts: " + "; ".join(liability_scans()))
        db.engine.dispose()


if __name__ == "__main__":
    main()
