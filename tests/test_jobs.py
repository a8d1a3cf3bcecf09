"""The scheduled jobs and the worker that runs them.

Every job is a function of the clock: tests call it at a moment of their choosing (or stop the app's clock for
the worker and the CLI), check exactly what it did, and run it again to show a second run does nothing more.
A worker that dies part way, one told to stop, several at once on PostgreSQL, and one sent SIGTERM as a real
process lose and duplicate nothing.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count
from pathlib import Path

import flask_migrate
import pytest
from sqlalchemy import func, select

from loyalty import create_app
from loyalty.checkout import service as checkout
from loyalty.extensions import db
from loyalty.jobs.models import ExpiryReminder, JobSchedule
from loyalty.jobs.service import JOBS, JOBS_BY_NAME
from loyalty.jobs.worker import Worker
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Account, JournalTransaction, Lot
from loyalty.ledger.service import Balances
from loyalty.ledger.verify import verify
from loyalty.members import service as members
from loyalty.members.models import Member
from loyalty.tiers import service as tiers
from loyalty.tiers.models import TierChange
from loyalty.webhooks.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from loyalty.writes import StoredResponse
from tests.conftest import publish_rules, unique_email

T0 = datetime(2026, 6, 10, 8, 0, tzinfo=UTC)  # a June morning
SECOND, MINUTE, HOUR, DAY = timedelta(seconds=1), timedelta(minutes=1), timedelta(hours=1), timedelta(days=1)
YEAR = timedelta(days=365)
# One point per dollar; a point pays a cent, points pay at most half an order; 50 points in the birthday month.
PROGRAM = {"earn": {"rates": {"usd": "1"}},
           "redeem": {"point_values": {"usd": "1"}, "max_share_percent": 50},
           "events": {"birthday": {"points": 50}}}
ROOT = Path(__file__).resolve().parent.parent
_refs = count(1)


# --- helpers: each needs an app context --------------------------------------------------------------------

def enrol(**fields) -> int:
    member = members.enrol(members.NewMember(email=unique_email(), **fields), source="test")
    db.session.commit()
    return member.id


def earn(member_id: int, points: int, *, at: datetime = T0 - YEAR, **fields) -> Lot:
    """Earn at `at` (a year ago unless told) and answer the lot the earn made."""
    txn = ledger.earn(member_id, points, reference=f"order:{next(_refs)}", description="Order",
                      now=at, **fields)
    db.session.commit()
    return db.session.scalars(select(Lot).where(Lot.transaction_id == txn.id)).one()


def run(job: str, at: datetime, **options) -> dict[str, int]:
    return JOBS_BY_NAME[job].run(at, **options)


def balances(member_id: int) -> Balances:
    return ledger.balances(member_id)


def journal(kind: str) -> list[JournalTransaction]:
    return list(db.session.scalars(select(JournalTransaction).where(JournalTransaction.kind == kind)
                                   .order_by(JournalTransaction.id)))


def events(type_: str) -> list[OutboxEvent]:
    return list(db.session.scalars(select(OutboxEvent).where(OutboxEvent.type == type_).order_by(OutboxEvent.id)))


def rows() -> dict[str, int]:
    """Rows per table, read in this context's own session."""
    return {t.name: db.session.scalar(select(func.count()).select_from(t)) for t in db.metadata.sorted_tables}


def assert_ledger_verifies() -> None:
    assert [(r.check.name, r.examples) for r in verify(db.session) if not r.ok] == []


def assert_no_reference_twice() -> None:
    assert db.session.execute(select(JournalTransaction.reference).group_by(JournalTransaction.reference)
                              .having(func.count() > 1)).all() == []


def publish_program() -> None:
    publish_rules(PROGRAM, at=T0 - 30 * DAY)


def create_ladder() -> None:
    for fields in ({"code": "member", "name": "Member", "rank": 0, "threshold": 0},
                   {"code": "silver", "name": "Silver", "rank": 1, "threshold": 1000}):
        tiers.create_tier({**fields, "basis": "points", "window_days": 365, "earn_multiplier": Decimal(1)})
    db.session.commit()


def hold_points(member_id: int, points: int, *, at: datetime, hold_for: timedelta) -> str:
    """A checkout's redemption of `points`, held at `at` for `hold_for`; answers its id."""
    member = db.session.get(Member, member_id)
    redemption = checkout.create_redemption(
        {"member_id": member.public_id, "order_id": f"ord-{next(_refs)}", "currency": "usd", "amount": 5000,
         "points": points}, now=at, hold_for=hold_for)
    db.session.commit()
    return redemption.public_id


def schedule() -> dict[str, JobSchedule]:
    return {row.name: row for row in db.session.scalars(select(JobSchedule).execution_options(
        populate_existing=True))}


# --- each job, travelling in time ------------------------------------------------------------------------

def test_pending_points_become_available_when_their_return_window_ends(in_app):
    with in_app():
        member = enrol()
        earn(member, 100, at=T0 - 14 * DAY, pending_until=T0)
        assert run("activate-pending", T0 - SECOND) == {"members": 0, "transactions": 0}
        assert balances(member) == Balances(available=0, pending=100, held=0, lifetime_earned=100)

        assert run("activate-pending", T0) == {"members": 1, "transactions": 1}
        assert balances(member) == Balances(available=100, pending=0, held=0, lifetime_earned=100)
        [activation] = journal("activate")
        assert (activation.member_id, activation.created_at) == (member, T0)

        before = rows()
        assert run("activate-pending", T0 + DAY) == {"members": 0, "transactions": 0}
        assert rows() == before
        assert_ledger_verifies()


def test_points_expire_at_their_expiry_and_are_announced(in_app):
    with in_app():
        member = enrol()
        expiring = earn(member, 100, expires_at=T0)
        earn(member, 30)  # no expiry
        assert run("expire-points", T0 - SECOND) == {"members": 0, "transactions": 0}
        assert balances(member).available == 130

        assert run("expire-points", T0) == {"members": 1, "transactions": 1}
        assert balances(member) == Balances(available=30, pending=0, held=0, lifetime_earned=130)
        db.session.refresh(expiring)
        assert (expiring.status, expiring.remaining) == ("expired", 0)
        [expired] = events("points.expired")
        assert (expired.member_id, expired.data["points"], expired.data["kind"]) == (member, 100, "expire")

        before = rows()
        assert run("expire-points", T0 + YEAR) == {"members": 0, "transactions": 0}
        assert rows() == before
        assert_ledger_verifies()


def test_points_expiring_soon_are_announced_once_per_lot(in_app, app):
    window = timedelta(days=app.config["EXPIRY_REMINDER_DAYS"])
    with in_app():
        member = enrol()
        soon = earn(member, 100, expires_at=T0 + 3 * DAY)
        last_day = earn(member, 50, expires_at=T0 + window)  # the window's last moment is inside it
        next_day = earn(member, 20, expires_at=T0 + window + DAY)
        earn(member, 10)  # never expires
        spent = earn(member, 5, expires_at=T0 + DAY)  # spent first, being the soonest to expire
        ledger.spend(member, 35, reference="reward", description="Reward", now=T0 - HOUR)
        db.session.commit()

        assert run("remind-expiring", T0) == {"reminders": 2}
        assert [(e.member_id, e.data["lot_id"], e.data["points"]) for e in events("points.expiring")] == [
            (member, soon.public_id, 70), (member, last_day.public_id, 50)]
        assert run("remind-expiring", T0) == {"reminders": 0}

        assert run("remind-expiring", T0 + DAY) == {"reminders": 1}
        assert events("points.expiring")[-1].data == {
            "lot_id": next_day.public_id, "points": 20, "expires_at": next_day.expires_at.isoformat()}
        before = rows()
        assert run("remind-expiring", T0 + 2 * DAY) == {"reminders": 0}
        assert rows() == before
        reminded = db.session.scalars(select(ExpiryReminder.lot_id).order_by(ExpiryReminder.lot_id)).all()
        assert reminded == [soon.id, last_day.id, next_day.id]
        assert spent.id not in reminded


# --- the inactivity policy ------------------------------------------------------------------------------------

IDLE = 30 * DAY
# Not a round moment: the rules' parse cache is keyed by version id and publication, and SQLite reuses ids.
SINCE = T0 - 100 * DAY + 17 * MINUTE
INACTIVITY = {**PROGRAM, "expiry": {"policy": "inactivity", "days": 30}}


def last_activity(member_id: int) -> datetime:
    return db.session.scalar(select(Account.last_activity_at).where(Account.member_id == member_id,
                                                                    Account.kind == "available"))


def enrol_at(clock, at: datetime, **fields) -> int:
    clock.set(at)
    return enrol(**fields)


def test_under_the_inactivity_policy_every_available_point_expires_days_after_the_last_activity(in_app, stop_clock):
    clock = stop_clock(SINCE)
    with in_app():
        publish_rules(INACTIVITY, at=SINCE)
        member = enrol_at(clock, SINCE)
        first = earn(member, 100, at=T0 - 60 * DAY)
        second = earn(member, 40, at=T0 - IDLE)  # the last activity: the clock starts again here
        pending = earn(member, 25, at=T0 - IDLE, pending_until=T0 + DAY)
        assert (first.expires_at, second.expires_at) == (None, None)  # the date is the member's, not the lot's
        assert run("expire-points", T0 - SECOND) == {"members": 0, "transactions": 0}
        assert balances(member).available == 140

        assert run("expire-points", T0) == {"members": 1, "transactions": 1}
        assert balances(member) == Balances(available=0, pending=25, held=0, lifetime_earned=165)
        for lot in (first, second):
            db.session.refresh(lot)
            assert (lot.status, lot.remaining) == ("expired", 0)
        db.session.refresh(pending)
        assert pending.status == "pending"  # inside its return window: not available, so not expired yet
        [expired] = events("points.expired")
        assert (expired.member_id, expired.data["points"]) == (member, 140)
        assert "no activity since" in expired.data["description"]

        before = rows()
        assert run("expire-points", T0 + HOUR) == {"members": 0, "transactions": 0}
        assert rows() == before
        assert_ledger_verifies()


def test_an_active_member_keeps_their_points_under_the_inactivity_policy(in_app, stop_clock):
    clock = stop_clock(SINCE)
    with in_app():
        publish_rules(INACTIVITY, at=SINCE)
        member = enrol_at(clock, SINCE)
        earn(member, 100, at=T0 - 60 * DAY)
        ledger.spend(member, 10, reference="claim", description="Reward", now=T0 - IDLE + SECOND)
        db.session.commit()
        assert run("expire-points", T0) == {"members": 0, "transactions": 0}
        assert balances(member).available == 90
        assert run("expire-points", T0 + SECOND) == {"members": 1, "transactions": 1}
        assert balances(member).available == 0
        assert_ledger_verifies()


def _capture(member: int, at: datetime) -> None:
    ledger.capture(ledger.hold(member, 5, reference="held", expires_at=at + HOUR, now=at, description="Order"), now=at)


@pytest.mark.parametrize(("act", "counts"), [
    pytest.param(lambda m, at: ledger.earn(m, 5, reference="o", description="Order", now=at), True,
                 id="an earn"),
    pytest.param(lambda m, at: ledger.earn(m, 5, reference="b", description="Review bonus", now=at,
                                           kind="bonus"), True, id="a bonus"),
    pytest.param(_capture, True, id="a captured hold"),
    pytest.param(lambda m, at: ledger.spend(m, 5, reference="r", description="Reward", now=at), True,
                 id="a reward claimed"),
    pytest.param(lambda m, at: ledger.hold(m, 5, reference="h", expires_at=at + HOUR, now=at,
                                           description="Order"), False, id="a hold not captured"),
    pytest.param(lambda m, at: ledger.adjust(m, 5, reason="Goodwill", reference="a", now=at), False,
                 id="a staff adjustment"),
    pytest.param(lambda m, at: ledger.earn(m, 5, reference="bd", description="Birthday bonus", now=at,
                                           kind="bonus", activity=False), False, id="a birthday bonus"),
])
def test_what_counts_as_activity(in_app, stop_clock, act, counts):
    clock = stop_clock(SINCE)
    with in_app():
        member = enrol_at(clock, SINCE)
        earn(member, 100, at=T0 - 90 * DAY)
        act(member, T0)
        db.session.commit()
        assert last_activity(member) == (T0 if counts else T0 - 90 * DAY)


def test_the_birthday_bonus_is_not_activity(in_app, stop_clock):
    clock = stop_clock(SINCE)
    with in_app():
        publish_rules(INACTIVITY, at=SINCE)
        member = enrol_at(clock, SINCE, birthday=date(1990, T0.month, 1))
        run("birthday-bonuses", T0)
        assert balances(member).available == 50
        assert last_activity(member) == SINCE


def test_enrolment_starts_the_inactivity_clock(in_app, stop_clock):
    clock = stop_clock(T0 - IDLE)
    with in_app():
        publish_rules(INACTIVITY, at=SINCE)
        member = enrol_at(clock, T0 - IDLE)
        ledger.adjust(member, 70, reason="Welcome gift", reference="gift", now=T0 - DAY)
        db.session.commit()
        assert run("expire-points", T0) == {"members": 1, "transactions": 1}
        assert balances(member).available == 0


def test_the_inactivity_expiry_runs_a_batch_of_members_at_a_time(in_app, stop_clock):
    clock = stop_clock(SINCE)
    with in_app():
        publish_rules(INACTIVITY, at=SINCE)
        idle = [enrol_at(clock, SINCE) for _ in range(5)]
        for member in idle:
            earn(member, 10, at=T0 - 50 * DAY)
        assert run("expire-points", T0, batch_size=2) == {"members": 5, "transactions": 5}
        assert [balances(m).available for m in idle] == [0] * 5
        assert_ledger_verifies()


def test_one_batch_settles_due_lots_then_expires_each_idle_member_once(in_app, stop_clock):
    """Members of one set-based batch: one plain, one whose pending lot is due to activate (settled inside the
    batch), one with a lot past its own date (expired by date first), one active since: each idle one gets one
    inactivity expiry, of what was available once the due lots were settled."""
    clock = stop_clock(SINCE)
    with in_app():
        publish_rules(INACTIVITY, at=SINCE)
        plain, activating, dated, active = (enrol_at(clock, SINCE) for _ in range(4))
        for member in (plain, activating, dated, active):
            earn(member, 10, at=T0 - 50 * DAY)
        earn(activating, 7, at=T0 - 50 * DAY, pending_until=T0 - DAY)
        earn(dated, 3, at=T0 - 50 * DAY, expires_at=T0 - DAY)
        ledger.spend(active, 1, reference="claim", description="Reward", now=T0 - DAY)
        db.session.commit()

        assert run("expire-points", T0, batch_size=10) == {"members": 4, "transactions": 4}

        assert [balances(m).available for m in (plain, activating, dated, active)] == [0, 0, 0, 9]
        expired = sorted((event.member_id, event.data["points"]) for event in events("points.expired"))
        assert expired == sorted([(dated, 3), (plain, 10), (activating, 17), (dated, 10)])
        assert_ledger_verifies()


def test_the_summary_shows_when_points_expire_if_the_member_stays_inactive(in_app, stop_clock, app):
    clock = stop_clock(SINCE)
    with in_app():
        publish_rules(INACTIVITY, at=SINCE)
        member = enrol_at(clock, SINCE)
        earn(member, 100, at=T0 - 20 * DAY)
        earn(member, 30, at=T0 - 20 * DAY, expires_at=T0 + DAY)  # dated sooner: shown at its own date
        clock.set(T0)
        assert members.summary(db.session.get(Member, member))["expiring"] == [
            {"points": 30, "expires_at": T0 + DAY}, {"points": 100, "expires_at": T0 + 10 * DAY}]


def test_points_expiring_for_inactivity_are_announced_once_per_stretch_of_inactivity(in_app, stop_clock, app):
    window = timedelta(days=app.config["EXPIRY_REMINDER_DAYS"])
    clock = stop_clock(SINCE)
    with in_app():
        publish_rules(INACTIVITY, at=SINCE)
        member = enrol_at(clock, SINCE)
        earn(member, 100, at=T0 - IDLE)  # expires at T0 if the member stays inactive
        assert run("remind-expiring", T0 - window - SECOND) == {"reminders": 0}
        assert run("remind-expiring", T0 - window) == {"reminders": 1}
        assert run("remind-expiring", T0 - DAY) == {"reminders": 0}
        [reminder] = events("points.expiring")
        assert (reminder.member_id, reminder.data) == (member, {
            "points": 100, "expires_at": T0.isoformat(), "reason": "inactivity",
            "last_activity_at": (T0 - IDLE).isoformat()})

        earn(member, 5, at=T0 - DAY)  # active again: a new stretch, a new reminder when it nears its end
        assert run("remind-expiring", T0 + IDLE - DAY - window - SECOND) == {"reminders": 0}
        assert run("remind-expiring", T0 + IDLE - DAY - window) == {"reminders": 1}
        assert events("points.expiring")[-1].data["expires_at"] == (T0 + IDLE - DAY).isoformat()


def test_a_redemption_past_its_expiry_is_released(in_app):
    with in_app():
        publish_program()
        member = enrol()
        earn(member, 1000)
        redemption = hold_points(member, 300, at=T0, hold_for=30 * MINUTE)
        assert balances(member) == Balances(available=700, pending=0, held=300, lifetime_earned=1000)
        assert run("release-expired-holds", T0 + 30 * MINUTE - SECOND) == {"released": 0}

        assert run("release-expired-holds", T0 + 30 * MINUTE) == {"released": 1}
        assert balances(member) == Balances(available=1000, pending=0, held=0, lifetime_earned=1000)
        row = checkout.get_redemption(redemption)
        assert (row.status, row.release_reason) == ("released", "expired")
        assert len(journal("release")) == 1

        before = rows()
        assert run("release-expired-holds", T0 + DAY) == {"released": 0}
        assert rows() == before
        assert_ledger_verifies()


def test_evaluation_moves_a_member_up_and_later_down_after_the_grace(in_app):
    with in_app():
        create_ladder()
        member = enrol()
        earn(member, 1000, at=T0)  # the ledger alone: no instant upgrade
        assert run("evaluate-tiers", T0) == {"evaluated": 1, "upgraded": 1, "downgraded": 0}
        assert tiers.current_tier(db.session.get(Member, member))[0].code == "silver"
        [changed] = events("tier.changed")
        assert (changed.member_id, changed.data["from_tier"], changed.data["to_tier"]) == (member, "member", "silver")

        before = rows()
        assert run("evaluate-tiers", T0 + HOUR) == {"evaluated": 1, "upgraded": 0, "downgraded": 0}
        assert rows() == before

        # The earn leaves the 365-day window after T0 + 365 days, when the grace (one window) has run out too.
        assert run("evaluate-tiers", T0 + YEAR + DAY) == {"evaluated": 1, "upgraded": 0, "downgraded": 1}
        assert tiers.current_tier(db.session.get(Member, member))[0].code == "member"
        assert db.session.scalar(select(func.count()).select_from(TierChange)) == 2
        assert run("evaluate-tiers", T0 + YEAR + 2 * DAY) == {"evaluated": 1, "upgraded": 0, "downgraded": 0}
        assert db.session.scalar(select(func.count()).select_from(TierChange)) == 2


def test_the_birthday_bonus_is_paid_in_the_birthday_month_once_a_year(in_app):
    with in_app():
        publish_program()
        june = enrol(birthday=date(1990, 6, 28))
        july = enrol(birthday=date(1985, 7, 1))
        no_birthday = enrol()

        assert run("birthday-bonuses", T0) == {"members": 1, "paid": 1}
        assert balances(june) == Balances(available=50, pending=0, held=0, lifetime_earned=50)
        assert balances(july).lifetime_earned == 0
        assert balances(no_birthday).lifetime_earned == 0
        [bonus] = journal("bonus")
        assert (bonus.member_id, bonus.points, bonus.reference) == (
            june, 50, f"birthday:{db.session.get(Member, june).public_id}:2026")

        before = rows()
        assert run("birthday-bonuses", T0 + HOUR) == {"members": 0, "paid": 0}
        assert run("birthday-bonuses", datetime(2026, 6, 30, 23, tzinfo=UTC)) == {"members": 0, "paid": 0}
        assert rows() == before

        assert run("birthday-bonuses", datetime(2026, 7, 1, tzinfo=UTC)) == {"members": 1, "paid": 1}
        assert balances(july).available == 50
        assert balances(june).available == 50

        assert run("birthday-bonuses", datetime(2027, 6, 1, tzinfo=UTC)) == {"members": 1, "paid": 1}
        assert balances(june).available == 100
        assert_ledger_verifies()


def test_purge_forgets_idempotency_keys_and_finished_events_past_retention_only(in_app, app):
    cutoff = T0 - timedelta(days=app.config["WEBHOOK_RETENTION_DAYS"])
    with in_app():
        for key, expires_at in (("expired", T0 - SECOND), ("expiring-now", T0), ("live", T0 + SECOND)):
            db.session.add(StoredResponse(caller="key_1", key=key, request_hash="h", method="POST", path="/v1/x",
                                          status_code=200, body="{}", created_at=expires_at - DAY,
                                          expires_at=expires_at))
        endpoint = WebhookEndpoint(url="https://shop.example.test/hooks", secret="whsec_test")
        db.session.add(endpoint)
        db.session.flush()

        def event(name: str, created_at: datetime, *, dispatched: bool = True,
                  delivery: str | None = None) -> OutboxEvent:
            row = OutboxEvent(type="member.created", data={"name": name}, created_at=created_at,
                              dispatched_at=created_at if dispatched else None)
            db.session.add(row)
            db.session.flush()
            if delivery:
                db.session.add(WebhookDelivery(endpoint_id=endpoint.id, event_id=row.id, status=delivery,
                                               next_attempt_at=created_at, created_at=created_at))
            return row

        old = cutoff - SECOND
        event("delivered", old, delivery="delivered")
        event("failed for good", old, delivery="failed")
        event("wanted by no endpoint", old)
        event("still being delivered", old, delivery="pending")
        event("never dispatched", old, dispatched=False)
        event("at the cutoff", cutoff, delivery="delivered")
        db.session.commit()

        assert run("purge", T0) == {"idempotency_keys": 2, "events": 3}
        assert db.session.scalars(select(StoredResponse.key)).all() == ["live"]
        kept = db.session.scalars(select(OutboxEvent.data).order_by(OutboxEvent.id)).all()
        assert [data["name"] for data in kept] == ["still being delivered", "never dispatched", "at the cutoff"]
        assert sorted(db.session.scalars(select(WebhookDelivery.status))) == ["delivered", "pending"]

        before = rows()
        assert run("purge", T0) == {"idempotency_keys": 0, "events": 0}
        assert rows() == before


# --- order, failure and stopping ---------------------------------------------------------------------------

def test_activation_runs_before_expiry_so_a_lot_activating_as_another_expires_is_not_lost(in_app, stop_clock):
    stop_clock(T0)
    with in_app():
        member = enrol()
        earn(member, 100, expires_at=T0)
        earn(member, 40, at=T0 - 14 * DAY, pending_until=T0)

        done = Worker(batch_size=10).run_due()
        assert done["activate-pending"] == {"members": 1, "transactions": 2}
        assert done["expire-points"] == {"members": 0, "transactions": 0}
        assert balances(member) == Balances(available=40, pending=0, held=0, lifetime_earned=140)
        kinds = db.session.scalars(select(JournalTransaction.kind).order_by(JournalTransaction.id)).all()
        assert kinds == ["earn", "earn", "activate", "expire"]
        assert_ledger_verifies()


@pytest.mark.parametrize(("batch_size", "dies_at"), [(1, 2), (2, 4)])
def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(in_app, monkeypatch, batch_size, dies_at):
    """It dies settling the `dies_at`-th member: batches before it are kept, the one in hand rolls back whole,
    and the next run settles the rest."""
    with in_app():
        ids = [enrol() for _ in range(5)]
        for member in ids:
            earn(member, 100, expires_at=T0)

    settle = ledger.settle

    def dying(member_id, now):
        if member_id == ids[dies_at - 1]:
            raise RuntimeError("worker killed")
        return settle(member_id, now)

    monkeypatch.setattr(ledger, "settle", dying)
    with pytest.raises(RuntimeError, match="worker killed"), in_app():
        run("expire-points", T0, batch_size=batch_size)
    monkeypatch.undo()

    committed = (dies_at - 1) // batch_size * batch_size
    with in_app():
        assert len(journal("expire")) == committed
        assert run("expire-points", T0, batch_size=batch_size) == {"members": 5 - committed,
                                                                     "transactions": 5 - committed}
        expired = Counter(txn.member_id for txn in journal("expire"))
        assert expired == dict.fromkeys(ids, 1)
        assert Counter(e.member_id for e in events("points.expired")) == dict.fromkeys(ids, 1)
        assert all(balances(member).available == 0 for member in ids)
        assert_no_reference_twice()
        assert_ledger_verifies()


def test_a_worker_told_to_stop_finishes_the_batch_in_hand_and_leaves_the_job_due(in_app, stop_clock, monkeypatch):
    stop_clock(T0)
    with in_app():
        ids = [enrol() for _ in range(3)]
        for member in ids:
            earn(member, 100, expires_at=T0)
        worker = Worker(batch_size=1)
        settle = ledger.settle

        def stopping(member_id, now):
            worker.stop()  # SIGTERM arrives while the first member is being settled
            return settle(member_id, now)

        monkeypatch.setattr(ledger, "settle", stopping)
        done = worker.run_due()
        monkeypatch.undo()

        assert list(done) == ["activate-pending", "release-expired-holds", "expire-points"]
        assert done["expire-points"] == {"members": 1, "transactions": 1}
        assert len(journal("expire")) == 1
        rows_now = schedule()
        assert set(rows_now) == {"activate-pending", "release-expired-holds", "expire-points"}
        assert rows_now["activate-pending"].next_run_at == T0 + MINUTE
        assert rows_now["expire-points"].next_run_at == T0  # still due
        assert rows_now["expire-points"].last_started_at == T0

        done = Worker(batch_size=1).run_due()
        assert list(done) == [job.name for job in JOBS if job.name not in ("activate-pending",
                                                                            "release-expired-holds")]
        assert done["expire-points"] == {"members": 2, "transactions": 2}
        assert Counter(txn.member_id for txn in journal("expire")) == dict.fromkeys(ids, 1)
        assert schedule()["expire-points"].next_run_at == T0 + 5 * MINUTE
        assert_ledger_verifies()


def _seed_three(job: str) -> None:
    """Three units of work for `job`, due at T0."""
    if job in ("birthday-bonuses", "release-expired-holds"):
        publish_program()
    if job == "evaluate-tiers":
        create_ladder()
    for n in range(3):
        member = enrol(birthday=date(1990, 6, 1)) if job == "birthday-bonuses" else enrol()
        if job == "activate-pending":
            earn(member, 100, pending_until=T0)
        elif job == "expire-points":
            earn(member, 100, expires_at=T0)
        elif job == "remind-expiring":
            earn(member, 100, expires_at=T0 + DAY)
        elif job == "release-expired-holds":
            earn(member, 1000)
            hold_points(member, 100, at=T0 - HOUR, hold_for=30 * MINUTE)
        elif job == "evaluate-tiers":
            earn(member, 1000, at=T0)
        elif job == "purge":
            db.session.add(StoredResponse(caller="key_1", key=f"k{n}", request_hash="h", method="POST", path="/",
                                          status_code=200, body="{}", created_at=T0 - DAY, expires_at=T0 - HOUR))
    db.session.commit()  # deliver-webhooks: enrolling wrote three member.created events


ONE_BATCH_OF_EACH = {
    "activate-pending": {"members": 1, "transactions": 1},
    "release-expired-holds": {"released": 1},
    "expire-points": {"members": 1, "transactions": 1},
    "remind-expiring": {"reminders": 1},
    "evaluate-tiers": {"evaluated": 1, "upgraded": 1, "downgraded": 0},
    "birthday-bonuses": {"members": 1, "paid": 1},
    "purge": {"idempotency_keys": 1, "events": 0},
    "deliver-webhooks": {"events": 1, "deliveries": 0},  # dispatching: what sending counts is outbound's own
}


@pytest.mark.parametrize("job", [job.name for job in JOBS])
def test_every_job_asks_keep_going_between_batches(in_app, job):
    """What a worker told to stop relies on: one batch, then the job returns."""
    assert set(ONE_BATCH_OF_EACH) == set(JOBS_BY_NAME)
    with in_app():
        _seed_three(job)
        answers = iter([True])
        done = run(job, T0, batch_size=1, keep_going=lambda: next(answers, False))
        assert {name: done[name] for name in ONE_BATCH_OF_EACH[job]} == ONE_BATCH_OF_EACH[job]


# --- the schedule -----------------------------------------------------------------------------------------

def test_the_worker_runs_each_job_when_due_in_order_and_not_again_before_its_interval(in_app, stop_clock):
    clock = stop_clock(T0)
    names = [job.name for job in JOBS]
    with in_app():
        worker = Worker(batch_size=100)
        assert list(worker.run_due()) == names  # a first run finds every job due
        assert {name: row.next_run_at for name, row in schedule().items()} == {
            job.name: T0 + job.every for job in JOBS}
        assert worker.run_due() == {}

        expected = {
            4 * SECOND: [],
            5 * SECOND: ["deliver-webhooks"],
            MINUTE - SECOND: ["deliver-webhooks"],
            MINUTE: ["activate-pending", "release-expired-holds"],  # deliver-webhooks ran a second ago
            5 * MINUTE: ["activate-pending", "release-expired-holds", "expire-points", "deliver-webhooks"],
            HOUR: [name for name in names if name != "evaluate-tiers"],
            DAY: names,
        }
        for since_start, due in expected.items():
            clock.set(T0 + since_start)
            assert list(worker.run_due()) == due, since_start
            assert worker.run_due() == {}
        rows_now = schedule()
        assert rows_now["evaluate-tiers"].last_started_at == T0 + DAY
        assert rows_now["evaluate-tiers"].next_run_at == T0 + 2 * DAY
        assert rows_now["expire-points"].last_result == "members=0, transactions=0"


def test_a_failing_job_is_logged_and_the_others_still_run(in_app, stop_clock, monkeypatch):
    stop_clock(T0)
    with in_app():
        member = enrol()
        earn(member, 100, expires_at=T0)

        def broken(*_, **__):
            raise RuntimeError("boom")

        monkeypatch.setattr(ledger, "settle", broken)
        done = Worker().run_due()
        assert done["activate-pending"] == {"members": 0, "transactions": 0}
        assert done["expire-points"] == {"failed": 1}
        assert list(done) == [job.name for job in JOBS]
        assert schedule()["expire-points"].last_result == "failed=1"
        assert balances(member).available == 100
        assert_ledger_verifies()


# --- several workers at once, on PostgreSQL ----------------------------------------------------------------

def test_workers_running_at_once_run_each_job_once(pg, stop_clock):
    stop_clock(T0)
    with pg.app_context():
        ids = [enrol() for _ in range(8)]
        for n, member in enumerate(ids):
            earn(member, 100, expires_at=T0)
            if n % 2:
                earn(member, 40, at=T0 - 14 * DAY, pending_until=T0)
            if n < 3:
                earn(member, 10, expires_at=T0 + DAY)  # for the reminders
        lots = db.session.scalars(select(Lot.public_id).where(Lot.expires_at == T0)).all()

    workers = 4
    barrier = threading.Barrier(workers)

    def work(_: int) -> dict[str, dict[str, int]]:
        with pg.app_context():
            barrier.wait()
            return Worker(batch_size=2).run_due()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(work, range(workers)))

    assert Counter(name for done in results for name in done) == {job.name: 1 for job in JOBS}
    assert [name for done in results for name, counts in done.items() if counts == {"failed": 1}] == []
    ran = {name: counts for done in results for name, counts in done.items()}
    assert ran["activate-pending"]["transactions"] + ran["expire-points"]["transactions"] == 8 + 4
    assert ran["remind-expiring"] == {"reminders": 3}
    with pg.app_context():
        assert sorted(txn.reference for txn in journal("expire")) == sorted(f"expire:{lot}" for lot in lots)
        assert len(journal("activate")) == 4
        assert len(events("points.expired")) == 8
        assert len(events("points.expiring")) == 3
        assert {name: (row.last_started_at, row.next_run_at) for name, row in schedule().items()} == {
            job.name: (T0, T0 + job.every) for job in JOBS}
        assert [balances(member).available for member in ids] == [10, 50, 10, 40, 0, 40, 0, 40]
        assert_no_reference_twice()
        assert_ledger_verifies()


# --- the commands -------------------------------------------------------------------------------------------

def test_jobs_run_runs_one_job_now_and_prints_its_counts(runner, in_app, stop_clock):
    stop_clock(T0)
    with in_app():
        earn(enrol(), 100, expires_at=T0)
    result = runner.invoke(args=["loyalty", "jobs", "run", "expire-points", "--batch-size", "1"])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"expire-points: members=1, transactions=1 in \d+\.\d\d s\n", result.output)

    again = runner.invoke(args=["loyalty", "jobs", "run", "expire-points"])
    assert again.output.startswith("expire-points: members=0, transactions=0 in ")
    with in_app():
        assert len(journal("expire")) == 1
        assert schedule() == {}  # run by hand, whatever the schedule says


def test_jobs_run_refuses_an_unknown_job(runner):
    result = runner.invoke(args=["loyalty", "jobs", "run", "expire-everything"])
    assert result.exit_code == 2
    assert "expire-points" in result.output  # the choices are listed


def test_worker_once_runs_what_is_due_and_stops(runner, in_app, stop_clock):
    clock = stop_clock(T0)
    with in_app():
        earn(enrol(), 100, expires_at=T0)
    result = runner.invoke(args=["loyalty", "worker", "--once"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [line.split(":")[0] for line in lines] == [job.name for job in JOBS]
    assert "expire-points: members=1, transactions=1" in lines

    assert runner.invoke(args=["loyalty", "worker", "--once"]).output == ""  # nothing is due yet
    clock.travel(5 * SECOND)
    [line] = runner.invoke(args=["loyalty", "worker", "--once"]).output.splitlines()
    assert line.startswith("deliver-webhooks: events=0, deliveries=0")


def test_sigterm_stops_the_worker_cleanly(tmp_path):
    database = tmp_path / "worker.db"
    url = f"sqlite:///{database}"
    scratch = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url})
    with scratch.app_context():
        flask_migrate.upgrade()
        db.engine.dispose()
    log = tmp_path / "worker.log"
    env = {**os.environ, "LOYALTY_ENV": "testing", "DATABASE_URL": url}
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "loyalty", "worker", "--tick",
                                    "0.2"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 20
        while "worker started" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        with closing(sqlite3.connect(database)) as connection:  # a first round of jobs has run
            while connection.execute("SELECT count(*) FROM job_schedule").fetchone()[0] < len(JOBS):
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "worker stopped" in log.read_text()
