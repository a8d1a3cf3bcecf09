"""The ledger under concurrency, on PostgreSQL with real row locks (and once on SQLite).

Each racing thread has its own app context, so its own session and connection, and starts at a
barrier so the movements really overlap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from loyalty.errors import Problem
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Account, Hold, JournalTransaction
from loyalty.ledger.service import Balances
from loyalty.ledger.verify import verify
from loyalty.members import service as members
from tests.conftest import unique_email

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
TTL = timedelta(minutes=30)


def race(app: Flask, actions: list[Callable[[], object]]) -> list[tuple[str, object]]:
    """Run every action at once, each in its own session; answer ("ok", result) or ("refused", code)."""
    barrier = threading.Barrier(len(actions))

    def run(action):
        with app.app_context():
            barrier.wait()
            try:
                result = action()
                db.session.commit()
                return "ok", result
            except Problem as problem:
                db.session.rollback()
                return "refused", problem.code

    with ThreadPoolExecutor(max_workers=len(actions)) as pool:
        return list(pool.map(run, actions))


def setup_member(app: Flask, *earns: dict) -> int:
    with app.app_context():
        member = members.enrol(members.NewMember(email=unique_email()), source="test")
        for n, fields in enumerate(earns):
            ledger.earn(member.id, reference=f"seed:{member.id}:{n}", description="Seed", now=T0, **fields)
        db.session.commit()
        return member.id


def balances_and_verify(app: Flask, member: int) -> tuple[Balances, dict[str, int]]:
    with app.app_context():
        breaches = [(r.check.name, r.examples) for r in verify(db.session) if not r.ok]
        assert breaches == []
        accounts = dict(db.session.execute(
            select(Account.kind, Account.balance).where(Account.member_id == member)).all())
        return ledger.balances(member), accounts


def hold_of(points: int, member: int, n: int) -> Callable[[], object]:
    return lambda: ledger.hold(member, points, reference=f"race-hold:{member}:{n}", expires_at=T0 + TTL,
                               now=T0, description="Checkout").public_id


def test_32_checkouts_spending_the_same_points_never_overdraw(pg):
    member = setup_member(pg, {"points": 500})
    results = race(pg, [hold_of(50, member, n) for n in range(32)])
    assert sorted(status for status, _ in results).count("ok") == 10
    assert {code for status, code in results if status == "refused"} == {"insufficient_points"}
    balances, _ = balances_and_verify(pg, member)
    assert balances == Balances(available=0, pending=0, held=500, lifetime_earned=500)


def test_racing_holds_of_different_sizes_hold_exactly_what_succeeded(pg):
    member = setup_member(pg, {"points": 1000})
    sizes = [17 + 13 * n % 90 for n in range(32)]
    results = race(pg, [hold_of(size, member, n) for n, size in enumerate(sizes)])
    held = sum(size for size, (status, _) in zip(sizes, results, strict=True) if status == "ok")
    assert held <= 1000
    balances, _ = balances_and_verify(pg, member)
    assert (balances.available, balances.held) == (1000 - held, held)


def test_32_concurrent_earns_for_one_member_lose_no_update(pg):
    member = setup_member(pg)

    def earn_of(n: int) -> Callable[[], object]:
        return lambda: ledger.earn(member, 7, reference=f"race-earn:{n}", description="Order",
                                   now=T0).public_id

    results = race(pg, [earn_of(n) for n in range(32)])
    assert all(status == "ok" for status, _ in results)
    balances, _ = balances_and_verify(pg, member)
    assert balances == Balances(available=224, lifetime_earned=224)


def test_holds_racing_expiry_never_spend_expired_points_and_expire_them_once(pg):
    member = setup_member(pg, {"points": 100, "expires_at": T0}, {"points": 100})
    expiries = [lambda: len(ledger.settle(member, T0)) for _ in range(16)]
    holds = [hold_of(10, member, n) for n in range(16)]
    results = race(pg, [action for pair in zip(expiries, holds, strict=True) for action in pair])
    assert all(status == "ok" for status, _ in results[0::2])
    assert [status for status, _ in results[1::2]].count("ok") == 10
    balances, accounts = balances_and_verify(pg, member)
    assert accounts["expired"] == 100
    assert balances == Balances(available=0, held=100, lifetime_earned=200)
    with pg.app_context():
        expirations = db.session.scalar(select(func.count()).select_from(JournalTransaction)
                                        .where(JournalTransaction.kind == "expire"))
    assert expirations == 1


def test_capture_racing_release_resolves_each_hold_exactly_once(pg):
    member = setup_member(pg, {"points": 160})
    with pg.app_context():
        hold_ids = [ledger.hold(member, 10, reference=f"h:{n}", expires_at=T0 + TTL, now=T0,
                                description="Checkout").public_id for n in range(16)]
        db.session.commit()

    def capture(hold_id):
        return lambda: ledger.capture(ledger.get_hold(hold_id), now=T0).kind

    def release(hold_id):
        return lambda: ledger.release(ledger.get_hold(hold_id), now=T0).kind

    results = race(pg, [action for hold_id in hold_ids for action in (capture(hold_id), release(hold_id))])
    for captured, released in zip(results[0::2], results[1::2], strict=True):
        outcomes = {captured[0], released[0]}
        assert outcomes == {"ok", "refused"}
        assert "redemption_not_held" in (captured[1], released[1])
    with pg.app_context():
        statuses = db.session.scalars(select(Hold.status).where(Hold.member_id == member)).all()
    captured_count = statuses.count("captured")
    assert captured_count + statuses.count("released") == 16
    balances, accounts = balances_and_verify(pg, member)
    assert accounts["redeemed"] == 10 * captured_count
    assert balances == Balances(available=160 - 10 * captured_count, held=0, lifetime_earned=160)


def test_the_same_reference_sent_16_times_at_once_moves_points_once(pg):
    member = setup_member(pg)
    results = race(pg, [lambda: ledger.earn(member, 250, reference="order:ord_1:earn", description="Order",
                                            now=T0).public_id for _ in range(16)])
    assert all(status == "ok" for status, _ in results)
    assert len({txn_id for _, txn_id in results}) == 1
    balances, _ = balances_and_verify(pg, member)
    assert balances.available == 250


def test_the_same_hold_retried_concurrently_holds_once(pg):
    member = setup_member(pg, {"points": 100})
    results = race(pg, [lambda: ledger.hold(member, 60, reference="hold:key-1", expires_at=T0 + TTL,
                                            now=T0, description="Checkout").public_id for _ in range(16)])
    assert all(status == "ok" for status, _ in results)
    assert len({hold_id for _, hold_id in results}) == 1
    balances, _ = balances_and_verify(pg, member)
    assert (balances.available, balances.held) == (40, 60)


@pytest.mark.real_commits  # threads, each with a connection of its own
def test_racing_holds_on_the_suites_database_never_overdraw(app):
    """On the embedded SQLite default, IMMEDIATE transactions queue the writers instead."""
    member = setup_member(app, {"points": 100})
    results = race(app, [hold_of(30, member, n) for n in range(8)])
    assert [status for status, _ in results].count("ok") == 3
    assert {code for status, code in results if status == "refused"} == {"insufficient_points"}
    balances, _ = balances_and_verify(app, member)
    assert (balances.available, balances.held) == (10, 90)
