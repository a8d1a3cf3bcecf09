"""The scheduled jobs. Each works in batches, each batch its own transaction (services yield their batches,
`loyalty.unit_of_work.run_batches` commits each), and is idempotent: a batch that dies rolls back whole and is
done again by the next run, and doing it again changes nothing twice (the ledger's
references and the reminders' unique lot say so). Each takes `keep_going`, asked between batches, so a worker
told to stop finishes the batch in hand and stops.

The order of `JOBS` is the order a worker runs due jobs in: points are activated before stale holds are
released and before anything expires, so no member loses points a job was about to give them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Select, extract, select

from loyalty import events, writes
from loyalty.batches import KeepGoing, always
from loyalty.checkout import service as checkout
from loyalty.extensions import db
from loyalty.jobs.models import ExpiryReminder
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Account, Lot
from loyalty.members.models import Member
from loyalty.rules import service as rules
from loyalty.rules.models import RuleAward
from loyalty.settings import settings
from loyalty.tiers import service as tiers
from loyalty.unit_of_work import Batches, run_batches
from loyalty.webhooks import outbound

_MOVED = {"members": 0, "transactions": 0}


def _settle_members(due_lots: Select, now: datetime, batch_size: int) -> Batches:
    """Settle (activate, then expire) the members of the lots `due_lots` finds, soonest first, a batch of
    members at a time. Settled lots leave the query, so each batch reads only its own rows of the index,
    however many lots are due."""
    while ids := list(dict.fromkeys(db.session.scalars(due_lots.limit(batch_size * 10))))[:batch_size]:
        moved = sum(len(ledger.settle(member_id, now)) for member_id in ids)
        yield {"members": len(ids), "transactions": moved}
        if not moved:  # nothing was due after all: never spin on the same lots
            break


def activate_pending(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always) -> dict[str, int]:
    """Points whose return window has ended become available."""
    return run_batches(_settle_members(select(Lot.member_id).where(Lot.status == "pending", Lot.activates_at <= now)
                                       .order_by(Lot.activates_at, Lot.id), now, batch_size), _MOVED, keep_going)


def expire_points(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always) -> dict[str, int]:
    """Points past their expiry go to the program's expired account; under the inactivity policy, so do all
    the available points of members inactive for its days."""
    counts = run_batches(_settle_members(select(Lot.member_id).where(Lot.status == "active", Lot.expires_at <= now)
                                         .order_by(Lot.expires_at, Lot.id), now, batch_size), _MOVED, keep_going)
    days = rules.inactivity_days(now)
    if days is not None:
        counts = run_batches(_expire_inactive(now - timedelta(days=days), now, batch_size), counts, keep_going)
    return counts


def _expire_inactive(idle_since: datetime, now: datetime, batch_size: int) -> Batches:
    """A batch of members at a time, set-based, each member's points in one ledger transaction. Expired members
    have nothing available left, so they leave the index: each batch reads only its own rows."""
    # Read from the partial index on last activity, which holds only members with available points.
    idle = (select(Account.member_id)
            .where(Account.kind == "available", Account.balance > 0, Account.last_activity_at <= idle_since)
            .order_by(Account.last_activity_at, Account.member_id).limit(batch_size))
    while ids := list(db.session.scalars(idle)):
        moved = ledger.expire_inactive(ids, idle_since=idle_since, now=now)
        yield {"members": len(ids), "transactions": moved}
        if not moved:  # all of them were active meanwhile: never spin on the same rows
            break


def remind_expiring(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always) -> dict[str, int]:
    """`points.expiring` for each lot that expires within EXPIRY_REMINDER_DAYS, once per lot; under the
    inactivity policy, for each member whose points would expire within them if they stay inactive, once
    per stretch of inactivity."""
    until = now + timedelta(days=settings().expiry_reminder_days)
    counts = run_batches(_remind_lots(now, until, batch_size), {"reminders": 0}, keep_going)
    days = rules.inactivity_days(now)
    if days is not None:
        counts = run_batches(_remind_inactive(timedelta(days=days), now, until, batch_size), counts, keep_going)
    return counts


def _remind_lots(now: datetime, until: datetime, batch_size: int) -> Batches:
    reminded = select(ExpiryReminder.id).where(ExpiryReminder.lot_id == Lot.id).exists()
    while lots := db.session.scalars(select(Lot).where(
            Lot.status == "active", Lot.remaining > 0, Lot.expires_at > now, Lot.expires_at <= until, ~reminded)
            .order_by(Lot.id).limit(batch_size)).all():
        for lot in lots:
            db.session.add(ExpiryReminder(lot_id=lot.id, member_id=lot.member_id, sent_at=now))
            events.emit("points.expiring", {"lot_id": lot.public_id, "points": lot.remaining,
                                            "expires_at": lot.expires_at.isoformat()}, member_id=lot.member_id)
        yield {"reminders": len(lots)}


def _remind_inactive(idle: timedelta, now: datetime, until: datetime, batch_size: int) -> Batches:
    """One `points.expiring` per member whose points expire by `until` unless they are active again, and once
    per stretch of inactivity (the reminder's key is the activity it began at)."""
    reminded = select(ExpiryReminder.id).where(ExpiryReminder.member_id == Account.member_id,
                                               ExpiryReminder.activity_at == Account.last_activity_at).exists()
    while due := db.session.execute(
            select(Account.member_id, Account.last_activity_at, Account.balance)
            .where(Account.kind == "available", Account.balance > 0, Account.last_activity_at > now - idle,
                   Account.last_activity_at <= until - idle, ~reminded)
            .order_by(Account.last_activity_at, Account.member_id).limit(batch_size)).all():
        for member_id, last_activity_at, points in due:
            db.session.add(ExpiryReminder(member_id=member_id, activity_at=last_activity_at, sent_at=now))
            events.emit("points.expiring", {"points": points, "expires_at": (last_activity_at + idle).isoformat(),
                                            "reason": "inactivity", "last_activity_at": last_activity_at.isoformat()},
                        member_id=member_id)
        yield {"reminders": len(due)}


def birthday_bonuses(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always) -> dict[str, int]:
    """The birthday rule for members whose birthday month it is and who have had no birthday bonus this
    year; the rules decide the day, and the reference makes it once a year whatever runs it."""
    year_start = datetime(now.year, 1, 1, tzinfo=UTC)
    paid = select(RuleAward.id).where(RuleAward.member_id == Member.id, RuleAward.rule == "event.birthday",
                                      RuleAward.created_at >= year_start).exists()
    return run_batches(_birthday_batches(now, paid, batch_size), {"members": 0, "paid": 0}, keep_going)


def _birthday_batches(now: datetime, paid: ColumnElement[bool], batch_size: int) -> Batches:
    last = 0
    while batch := db.session.scalars(select(Member).where(
            Member.status == "active", Member.birthday.is_not(None), extract("month", Member.birthday) == now.month,
            ~paid, Member.id > last).order_by(Member.id).limit(batch_size)).all():
        paid_now = 0
        for member in batch:
            _, txn = rules.award_event(member, "birthday", now=now, reference=f"birthday:{member.public_id}:{now.year}")
            paid_now += txn is not None
        last = batch[-1].id  # read before the commit expires it
        yield {"members": len(batch), "paid": paid_now}


def release_expired_holds(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always
                          ) -> dict[str, int]:
    return run_batches(checkout.release_expired(now, batch_size=batch_size), {"released": 0}, keep_going)


def evaluate_tiers(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always) -> dict[str, int]:
    return run_batches(tiers.evaluate_all(now, batch_size=batch_size), {}, keep_going)


def purge(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always) -> dict[str, int]:
    """Idempotency keys and delivered events past their retention."""
    return {"idempotency_keys": purge_idempotency_keys(now, batch_size=batch_size, keep_going=keep_going)["purged"],
            "events": purge_events(now, batch_size=batch_size, keep_going=keep_going)["purged"]}


def purge_idempotency_keys(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always
                           ) -> dict[str, int]:
    return run_batches(writes.purge_expired(now, batch_size=batch_size), {"purged": 0}, keep_going)


def purge_events(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always) -> dict[str, int]:
    retention = timedelta(days=settings().webhook_retention_days)
    return run_batches(outbound.purge_delivered(now, retention=retention, batch_size=batch_size), {"purged": 0},
                       keep_going)


def deliver_webhooks(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always) -> dict[str, int]:
    """Fan new outbox events out to the endpoints that want them, then send what is due."""
    return {**dispatch_events(now, batch_size=batch_size, keep_going=keep_going),
            **deliver_due(now, batch_size=min(100, batch_size), keep_going=keep_going)}


def dispatch_events(now: datetime, *, batch_size: int = 1000, keep_going: KeepGoing = always) -> dict[str, int]:
    """New outbox events, each fanned out to the endpoints that want it."""
    return run_batches(outbound.dispatch(now, batch_size=batch_size), {"events": 0, "deliveries": 0}, keep_going)


def deliver_due(now: datetime, *, batch_size: int = 100, keep_going: KeepGoing = always) -> dict[str, int]:
    """The deliveries that are due, sent."""
    return run_batches(outbound.deliver_due(now, settings(), batch_size=batch_size),
                       {"delivered": 0, "retrying": 0, "failed": 0}, keep_going)


@dataclass(frozen=True)
class Job:
    name: str
    run: Callable[..., dict[str, int]]
    every: timedelta


JOBS: tuple[Job, ...] = (
    Job("activate-pending", activate_pending, timedelta(minutes=1)),
    Job("release-expired-holds", release_expired_holds, timedelta(minutes=1)),
    Job("expire-points", expire_points, timedelta(minutes=5)),
    Job("remind-expiring", remind_expiring, timedelta(hours=1)),
    Job("evaluate-tiers", evaluate_tiers, timedelta(days=1)),
    Job("birthday-bonuses", birthday_bonuses, timedelta(hours=1)),
    Job("purge", purge, timedelta(hours=1)),
    Job("deliver-webhooks", deliver_webhooks, timedelta(seconds=5)),
)
JOBS_BY_NAME = {job.name: job for job in JOBS}
