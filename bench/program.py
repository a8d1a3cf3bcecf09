"""A loyalty program to benchmark, on a scratch PostgreSQL database: tiers, published rules, an offer with a
public code, an API key, and `members` members with history (bench.ledger_bench.seed: 10 earns each, so
10 lots and 10 journal transactions apiece). Plus the ceiling app's tables (bench/raw_app.py), which never
touch the ledger: `bench_raw_balances`, a copy of each member's balances, and `bench_raw_holds`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import flask_migrate
from sqlalchemy import create_engine, text

from bench.ledger_bench import scratch_database, seed
from loyalty import create_app
from loyalty.auth import service as auth
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.offers import service as offers
from loyalty.rules import service as rules
from loyalty.tiers import service as tiers

COUPON = "BENCH10"
HOLD_POINTS = 10
RULES = {"earn": {"rates": {"usd": "1"}, "pending_days": 14,
                  "multipliers": [{"id": "shoes", "categories": ["shoes"], "multiplier": "2",
                                   "description": "Double points on shoes"}]},
         "redeem": {"point_values": {"usd": "1"}, "max_share_percent": 100}}
TIERS = [{"code": "member", "name": "Member", "rank": 0, "threshold": 0},
         {"code": "silver", "name": "Silver", "rank": 1, "threshold": 150, "discount_percent": 5},
         {"code": "gold", "name": "Gold", "rank": 2, "threshold": 500, "discount_percent": 10}]
RAW_TABLES = [
    "DROP TABLE IF EXISTS bench_raw_holds, bench_raw_balances",
    """CREATE TABLE bench_raw_balances (member_id integer PRIMARY KEY, available bigint NOT NULL,
                                        held bigint NOT NULL)""",
    """CREATE TABLE bench_raw_holds (id bigserial PRIMARY KEY, member_id integer NOT NULL, points bigint NOT NULL,
                                     created_at timestamptz NOT NULL)""",
]
RAW_BALANCES = """
    INSERT INTO bench_raw_balances (member_id, available, held)
    SELECT member_id, SUM(balance) FILTER (WHERE kind = 'available'), SUM(balance) FILTER (WHERE kind = 'held')
    FROM ledger_accounts WHERE kind IN ('available', 'pending', 'held') GROUP BY member_id"""


@dataclass(frozen=True)
class Program:
    url: str
    database: str
    members: int
    api_key: str
    coupon: str
    seed_seconds: float
    database_bytes: int


def prepare(members: int, database: str = "loyalty_bench") -> Program:
    """Make, migrate and seed the scratch database `database`; answers what the load generator needs."""
    url = scratch_database(database)
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        flask_migrate.upgrade()
        started = time.perf_counter()
        seed(members)
        seed_seconds = time.perf_counter() - started
        api_key = _configure()
        db.session.commit()
        reset_raw_tables(url)
        size = db.session.execute(text("SELECT pg_database_size(current_database())")).scalar()
        db.session.rollback()
        db.engine.dispose()
    return Program(url, database, members, api_key, COUPON, round(seed_seconds, 1), int(size))


def _configure() -> str:
    """Tiers, the rules, the offer and the key, through the services staff would use; answers the key."""
    for tier in TIERS:
        tiers.create_tier({**tier, "basis": "points", "window_days": 365})
    draft = rules.create_draft(RULES, note="bench", staff_id=None)
    rules.publish(draft.version, effective_from=None, staff_id=None, now=now())
    offers.create_offer({"name": "Bench 10% off", "kind": "percent_off", "percent": 10, "code": COUPON,
                         "combines_with_points": True})
    _, api_key = auth.create_api_key(name="bench", scopes=["members:read", "checkout"])
    return api_key


def reset_raw_tables(url: str) -> None:
    """(Re)make the ceiling's tables from the ledger's balances, so every raw phase starts from the same rows."""
    engine = create_engine(url)
    with engine.begin() as connection:
        for statement in [*RAW_TABLES, RAW_BALANCES, "ANALYZE bench_raw_balances"]:
            connection.execute(text(statement))
    engine.dispose()
