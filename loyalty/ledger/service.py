"""The ledger service: the only code that moves points.

Module functions over the unit of work's session (`db.session`), like every other service. Every
movement follows the same steps: lock the member's accounts (in id order, so two movements never
deadlock), replay the first result if the caller's reference was seen before, check, then write one
journal transaction whose postings sum to zero, update the cached balances and the lots. It adds and
flushes; the caller commits. No request-layer code here: no Flask import, no `current_app`, `request`
or `g`; the session is reached only through `loyalty.extensions.db`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, and_, bindparam, cast, column, func, insert, literal, null, or_, select, table
from sqlalchemy.exc import IntegrityError

from loyalty.db import for_update
from loyalty.errors import (
    Conflict,
    HoldExpired,
    IdempotencyKeyReused,
    InsufficientPoints,
    MemberSuspended,
    NotFound,
    RedemptionNotHeld,
    ValidationProblem,
)
from loyalty.extensions import db
from loyalty.idempotency import fingerprint
from loyalty.ledger.models import (
    ACCOUNT_KINDS,
    MEMBER_ACCOUNTS,
    Account,
    Hold,
    JournalTransaction,
    Lot,
    LotMovement,
    Posting,
)

# The ledger reads a member's status without importing the members package (which needs Flask's request layer).
_members = table("members", column("id"), column("status"))

# The reads every checkout makes, built once (a statement costs as much to build as to run).
_ACCOUNTS = (select(Account, _members.c.status).join(_members, _members.c.id == Account.member_id)
             .where(Account.member_id == bindparam("member_id")).order_by(Account.id)
             .execution_options(populate_existing=True))
_ACCOUNTS_FOR_UPDATE = _ACCOUNTS.with_for_update(of=Account)
_BALANCES = select(Account.kind, Account.balance).where(Account.member_id == bindparam("member_id"))
_BY_REFERENCE = select(JournalTransaction).where(JournalTransaction.reference == bindparam("reference"))
_INSERT_POSTINGS = insert(Posting.__table__)
_INSERT_LOT_MOVEMENTS = insert(LotMovement.__table__)
# With what refunds could not take back, from the few rows that fell short (a partial index), and the member's
# last activity (on their available account): still one read.
_BALANCES_KEPT = select(Account.kind, Account.balance, Account.last_activity_at).where(
    Account.member_id == bindparam("member_id")).union_all(
    select(literal("shortfall"), cast(func.coalesce(func.sum(JournalTransaction.shortfall), 0), BigInteger),
           cast(null(), Account.last_activity_at.type))
    .where(JournalTransaction.member_id == bindparam("member_id"), JournalTransaction.shortfall > 0))
_EXPIRING = (select(Lot.expires_at, func.sum(Lot.remaining))
             .where(Lot.member_id == bindparam("member_id"), Lot.status == "active",
                    Lot.expires_at > bindparam("now"), Lot.expires_at <= bindparam("until"))
             .group_by(Lot.expires_at).order_by(Lot.expires_at).limit(bindparam("limit")))

EARN_KINDS = ("earn", "bonus")
REVERSIBLE_KINDS = ("earn", "bonus", "adjust")
MAX_POINTS = 10**12


@dataclass(frozen=True)
class Balances:
    available: int = 0
    pending: int = 0
    held: int = 0
    lifetime_earned: int = 0
    # Read with the balances that keep what refunds took (`kept`), for the inactivity policy's expiry date; not
    # a balance, so balances compare without it.
    last_activity_at: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Expiring:
    points: int
    expires_at: datetime


def _positive(points: int, field: str = "points") -> None:
    if not isinstance(points, int) or isinstance(points, bool) or not 0 < points <= MAX_POINTS:
        raise ValidationProblem(errors={field: [f"Must be a whole number from 1 to {MAX_POINTS}."]})


def _is_live(lot: Lot, now: datetime) -> bool:
    return lot.expires_at is None or lot.expires_at > now


class _Movement:
    """One transaction being written: its postings and lot movements, applied to the locked rows."""

    def __init__(self, accounts: dict[str, Account], now: datetime) -> None:
        self.now = now
        self.accounts = accounts
        self.legs: dict[str, int] = {}
        self.lot_changes: list[tuple[Lot, int]] = []

    def move(self, source: str, destination: str, points: int) -> None:
        if points:
            self.legs[source] = self.legs.get(source, 0) - points
            self.legs[destination] = self.legs.get(destination, 0) + points

    def change_lot(self, lot: Lot, amount: int) -> None:
        lot.remaining += amount
        self.lot_changes.append((lot, amount))

    def write(self, member_id: int, kind: str, *, reference: str, request_hash: str, description: str,
              **fields: Any) -> JournalTransaction:
        txn = self.journal_row(member_id, kind, reference=reference, request_hash=request_hash,
                               description=description, **fields)
        _flush_journal()
        _insert_rows([self])
        return txn

    def journal_row(self, member_id: int, kind: str, *, reference: str, request_hash: str, description: str,
                    **fields: Any) -> JournalTransaction:
        """Apply the legs to the locked accounts and add the journal row; its postings and lot movements
        follow once it is flushed (`_insert_rows`), so a batch of movements flushes once."""
        member_change = 0
        for kind_of_account, amount in self.legs.items():
            account = self.accounts[kind_of_account]
            account.balance += amount
            if kind_of_account in MEMBER_ACCOUNTS:
                member_change += amount
                if account.balance < 0:  # callers check first; this is the last line of defence
                    raise InsufficientPoints("The member does not have enough points.")
        self.txn = JournalTransaction(
            member_id=member_id, kind=kind, points=member_change, reference=reference,
            request_hash=request_hash, description=description[:500],
            available_after=self.accounts["available"].balance,
            pending_after=self.accounts["pending"].balance,
            held_after=self.accounts["held"].balance, created_at=self.now, **fields,
        )
        db.session.add(self.txn)
        return self.txn


def _flush_journal() -> None:
    try:
        db.session.flush()
    except IntegrityError:
        # Only the reference is unique here: another member's movement already took it.
        raise IdempotencyKeyReused("This reference was already used for another movement.") from None


def _insert_rows(movements: list[_Movement]) -> None:
    """The postings and lot movements of flushed movements, as Core inserts of the tables: the journal's rows
    are never read back as objects in this unit of work, so the ORM's bulk path (and its RETURNING of ids
    nobody reads) is not needed."""
    # A shortfall-only clawback moves nothing but is still recorded with two zero postings.
    postings = [{"transaction_id": m.txn.id, "account_id": m.accounts[k].id, "amount": a}
                for m in movements for k, a in (m.legs or {"issued": 0, "available": 0}).items()]
    db.session.execute(_INSERT_POSTINGS, postings)
    lot_movements = [{"transaction_id": m.txn.id, "lot_id": lot.id, "amount": amount}
                     for m in movements for lot, amount in m.lot_changes if amount]
    if lot_movements:
        db.session.execute(_INSERT_LOT_MOVEMENTS, lot_movements)


# --- accounts, locking and idempotency -----------------------------------------------------

def open_accounts(member_id: int, now: datetime) -> None:
    """Give a new member their accounts; called once, when the member is enrolled (their first activity)."""
    db.session.add_all(Account(member_id=member_id, kind=kind, balance=0,
                               last_activity_at=now if kind == "available" else None)
                       for kind in ACCOUNT_KINDS)
    db.session.flush()


def _lock(member_id: int) -> tuple[dict[str, Account], str]:
    """Lock the member's accounts in id order; answer them with the member's status."""
    # SQLite has no row locks: its transactions begin IMMEDIATE instead (see loyalty.db.for_update).
    postgresql = db.session.get_bind().dialect.name == "postgresql"
    rows = db.session.execute(_ACCOUNTS_FOR_UPDATE if postgresql else _ACCOUNTS, {"member_id": member_id}).all()
    if not rows:
        raise NotFound("No member has this id.")
    return {account.kind: account for account, _ in rows}, rows[0][1]


def lock_members(member_ids: list[int]) -> None:
    """Lock several members' accounts at once, in member order, before a movement that touches
    them all (a referral pays two members): two such movements can never wait on each other."""
    _lock_many(member_ids)


def _replay(reference: str, request_hash: str) -> JournalTransaction | None:
    txn = db.session.scalar(_BY_REFERENCE, {"reference": reference})
    if txn is not None and txn.request_hash != request_hash:
        raise IdempotencyKeyReused("This reference was already used with other details.")
    return txn


def _refuse_if_erased(status: str) -> None:
    if status == "erased":
        raise Conflict("The member's account was erased.", code="member_erased")


def _refuse_unless_active(status: str) -> None:
    """Suspended members keep their points but may not spend them."""
    if status == "suspended":
        raise MemberSuspended("The member is suspended and cannot spend points.")
    _refuse_if_erased(status)


# --- reading -------------------------------------------------------------------------------

def balances(member_id: int, *, kept: bool = False) -> Balances:
    """From the cached account rows: one indexed read, whatever the history's length. `lifetime_earned` is
    what was issued and not taken back; with `kept`, less what refunds could not take back either (points
    the member had spent already): what they kept."""
    if not kept:
        rows = dict(db.session.execute(_BALANCES, {"member_id": member_id}).all())
        return Balances(rows.get("available", 0), rows.get("pending", 0), rows.get("held", 0),
                        -rows.get("issued", 0))
    rows = db.session.execute(_BALANCES_KEPT, {"member_id": member_id}).all()
    balance = {kind: amount for kind, amount, _ in rows}
    return Balances(balance.get("available", 0), balance.get("pending", 0), balance.get("held", 0),
                    -balance.get("issued", 0) - balance.get("shortfall", 0),
                    next((at for kind, _, at in rows if kind == "available"), None))


def expiring(member_id: int, now: datetime, until: datetime, limit: int = 5,
             inactive_days: int | None = None, balances: Balances | None = None) -> list[Expiring]:
    """Available points that expire before `until`, soonest first, grouped by moment. Under the inactivity
    policy (`inactive_days`), every point not dated to expire sooner expires that many days after the
    member's last activity, if they stay inactive: `balances`, read with `kept`, say when that was."""
    deadline = None
    if inactive_days is not None:
        assert balances is not None, "the inactivity policy needs the member's balances and last activity"
        available, last = balances.available, balances.last_activity_at
        deadline = max(last + timedelta(days=inactive_days), now) if available and last else None
    dated_until = deadline if deadline is not None and deadline <= until else until
    rows = db.session.execute(_EXPIRING, {"member_id": member_id, "now": now, "until": dated_until,
                                          "limit": limit}).all()
    found = [Expiring(int(points), expires_at) for expires_at, points in rows if expires_at != deadline]
    if deadline is not None and deadline <= until:
        dated_sooner = db.session.scalar(select(func.coalesce(func.sum(Lot.remaining), 0)).where(
            Lot.member_id == member_id, Lot.status == "active", Lot.expires_at < deadline))
        if available - dated_sooner > 0:
            found.append(Expiring(int(available - dated_sooner), deadline))
    return found[:limit]


def get_transaction(public_id: str) -> JournalTransaction:
    txn = db.session.scalar(select(JournalTransaction).where(JournalTransaction.public_id == public_id))
    if txn is None:
        raise NotFound("No transaction has this id.")
    return txn


def get_hold(public_id: str) -> Hold:
    hold = db.session.scalar(select(Hold).where(Hold.public_id == public_id))
    if hold is None:
        raise NotFound("No hold has this id.")
    return hold


def history(member_id: int, *, limit: int, starting_after: str | None = None) -> dict:
    """The member's journal, newest first, one page at a time."""
    query = select(JournalTransaction).where(JournalTransaction.member_id == member_id)
    if starting_after:
        cursor = db.session.scalar(select(JournalTransaction.id).where(
            JournalTransaction.public_id == starting_after, JournalTransaction.member_id == member_id))
        if cursor is None:
            raise ValidationProblem(errors={"starting_after": ["No such id in this list."]})
        query = query.where(JournalTransaction.id < cursor)
    rows = list(db.session.scalars(query.order_by(JournalTransaction.id.desc()).limit(limit + 1)))
    return {"data": rows[:limit], "has_more": len(rows) > limit}


# --- lots ----------------------------------------------------------------------------------

def _lots(member_id: int, *conditions: Any) -> list[Lot]:
    return list(db.session.scalars(
        select(Lot).where(Lot.member_id == member_id, *conditions)
        .order_by(Lot.expires_at.is_(None), Lot.expires_at, Lot.id)
        .execution_options(populate_existing=True)
    ))


def _settle(member_id: int, accounts: dict[str, Account], now: datetime,
            lots: list[Lot] | None = None) -> list[JournalTransaction]:
    """Activate due pending lots, then expire due ones, so what is spent next is current.
    `lots`, when the caller loaded them already, must include every due one."""
    done = []
    if lots is None:
        due = _lots(member_id, or_(and_(Lot.status == "pending", Lot.activates_at <= now),
                                   and_(Lot.status == "active", Lot.expires_at <= now)))
    else:
        due = [lot for lot in lots if (lot.status == "pending" and lot.activates_at is not None
                                       and lot.activates_at <= now)
               or (lot.status == "active" and not _is_live(lot, now))]
    for lot in (lot for lot in due if lot.status == "pending"):
        if lot.remaining == 0:  # all clawed back inside the return window
            lot.status = "spent"
            continue
        movement = _Movement(accounts, now)
        movement.move("pending", "available", lot.remaining)
        lot.status = "active"
        source = db.session.get(JournalTransaction, lot.transaction_id)
        done.append(movement.write(
            member_id, "activate", reference=f"activate:{lot.public_id}",
            request_hash=fingerprint("activate", lot.public_id), related_id=source.id,
            order_id=source.order_id,
            description=f"{lot.remaining} points from {source.description} are now available",
        ))
    expiring = [lot for lot in due if lot.status == "active" and not _is_live(lot, now)]
    if expiring:
        done.append(_expire(member_id, accounts, expiring, now))
    return done


def _expire(member_id: int, accounts: dict[str, Account], lots: list[Lot], now: datetime
            ) -> JournalTransaction:
    """All of a member's due lots in one transaction: one journal row, whatever the number of lots (the
    worker expires a million lots member by member). A lot expires once: its status says so, and its
    id is the reference of the first lot's expiry."""
    movement = _expiry(member_id, accounts, lots, now)
    _flush_journal()
    _insert_rows([movement])
    return movement.txn


def _expiry(member_id: int, accounts: dict[str, Account], lots: list[Lot], now: datetime,
            why: str = "") -> _Movement:
    """`_expire`'s movement with its journal row added, not yet flushed."""
    movement = _Movement(accounts, now)
    for lot in lots:
        movement.move("available", "expired", lot.remaining)
        movement.change_lot(lot, -lot.remaining)
        lot.status = "expired"
    points = -movement.legs.get("available", 0)
    earned = ", ".join(sorted({f"{lot.created_at:%Y-%m-%d}" for lot in lots}))
    movement.journal_row(
        member_id, "expire", reference=f"expire:{lots[0].public_id}",
        request_hash=fingerprint("expire", [lot.public_id for lot in lots]),
        related_id=lots[0].transaction_id if len(lots) == 1 else None,
        description=f"{points} points expired{why} (earned {earned})")
    return movement


def expire_inactive(member_ids: list[int], *, idle_since: datetime, now: datetime) -> int:
    """Expire every available point of each member whose last activity was at or before `idle_since` (the
    inactivity policy), one journal transaction a member; answers how many were written. Set-based: the
    members' accounts are locked in one statement, their lots read in one, and the journal rows, postings
    and lot movements of the whole batch written in one each. A member active since (checked under the
    lock) keeps theirs. Pending and held points are left alone: they expire, if still idle, once available
    again. A member with lots due to activate or to expire by date is settled first, on their own."""
    accounts = _lock_many(member_ids)
    idle = {member_id: rows["available"].last_activity_at for member_id, rows in accounts.items()
            if rows["available"].last_activity_at is not None
            and rows["available"].last_activity_at <= idle_since}
    if not idle:
        return 0
    lots: dict[int, list[Lot]] = {member_id: [] for member_id in idle}
    for lot in db.session.scalars(
            select(Lot).where(Lot.member_id.in_(idle), or_(Lot.status == "active", and_(
                Lot.status == "pending", Lot.activates_at <= now)))
            .order_by(Lot.member_id, Lot.expires_at.is_(None), Lot.expires_at, Lot.id)
            .execution_options(populate_existing=True)):
        lots[lot.member_id].append(lot)
    movements = []
    for member_id, last in idle.items():
        _settle(member_id, accounts[member_id], now, lots[member_id])  # writes only what is due
        live = [lot for lot in lots[member_id] if lot.status == "active" and lot.remaining > 0]
        if live:
            movements.append(_expiry(member_id, accounts[member_id], live, now,
                                     f" after no activity since {last:%Y-%m-%d}"))
    if movements:
        _flush_journal()
        _insert_rows(movements)
    return len(movements)


def _lock_many(member_ids: list[int]) -> dict[int, dict[str, Account]]:
    """Several members' accounts, locked in member order, by member and kind."""
    query = (select(Account).where(Account.member_id.in_(member_ids)).order_by(Account.member_id, Account.id)
             .execution_options(populate_existing=True))
    by_member: dict[int, dict[str, Account]] = {}
    for account in db.session.scalars(for_update(query, db.session)):
        by_member.setdefault(account.member_id, {})[account.kind] = account
    return by_member


def _active(accounts: dict[str, Account], now: datetime) -> None:
    """Record the member's activity: an earn (but a birthday bonus), a captured hold, a reward claimed."""
    available = accounts["available"]
    if available.last_activity_at is None or available.last_activity_at < now:
        available.last_activity_at = now


def forfeit(member_id: int, *, now: datetime, reference: str) -> JournalTransaction | None:
    """Take away every point the member still has coming, available and pending (an erased account), posted
    like an expiry: one `expire` transaction to the member's `expired` account, every active and pending lot
    emptied and marked expired, each lot's movement written. Held points are left alone: release or capture
    their holds first. The same reference again answers the first forfeit; with nothing left to forfeit,
    nothing is written and the answer is None."""
    request_hash = fingerprint("forfeit", member_id)
    accounts, _ = _lock(member_id)
    if (txn := _replay(reference, request_hash)) is not None:
        return txn
    movement = _Movement(accounts, now)
    for lot in _lots(member_id, Lot.status.in_(("active", "pending"))):
        movement.move("pending" if lot.status == "pending" else "available", "expired", lot.remaining)
        movement.change_lot(lot, -lot.remaining)
        lot.status = "expired"
    if not movement.legs:
        return None
    return movement.write(member_id, "expire", reference=reference, request_hash=request_hash,
                          description=f"{movement.legs['expired']} points forfeited: the account was erased")


def _take_available(member_id: int, accounts: dict[str, Account], points: int, destination: str,
                    now: datetime) -> _Movement:
    """Settle the member's lots, then move `points` of available points to `destination`, taken
    from lots soonest-expiring first. Never below zero. One query loads the lots for both steps."""
    lots = _lots(member_id, or_(Lot.status == "active", and_(Lot.status == "pending",
                                                             Lot.activates_at <= now)))
    _settle(member_id, accounts, now, lots)
    available = accounts["available"].balance
    if available < points:
        raise InsufficientPoints(f"The member has {available} points available; {points} were asked for.")
    movement = _Movement(accounts, now)
    _spend_lots(movement, member_id, points, lots=lots)
    movement.move("available", destination, points)
    return movement


def _spend_lots(movement: _Movement, member_id: int, points: int,
                exclude: Lot | None = None, lots: list[Lot] | None = None) -> int:
    """Take up to `points` from active lots, soonest-expiring first; answer what was taken."""
    taken = 0
    if lots is None:
        lots = _lots(member_id, Lot.status == "active", Lot.remaining > 0)
    for lot in (lot for lot in lots if lot.status == "active" and lot.remaining > 0):
        if taken == points:
            break
        if lot is exclude:
            continue
        take = min(lot.remaining, points - taken)
        movement.change_lot(lot, -take)
        if lot.remaining == 0:
            lot.status = "spent"
        taken += take
    return taken


def _return_to_lots(movement: _Movement, allocations: Iterable[tuple[Lot, int]], source: str,
                    now: datetime, *, erased: bool = False) -> int:
    """Give points back to the lots they came from. Points whose lot has expired meanwhile, or whose
    member was erased (their points were forfeited), expire now rather than come back to life.
    Answers the points that came back."""
    returned = 0
    for lot, points in allocations:
        movement.change_lot(lot, points)
        if not erased and _is_live(lot, now):
            lot.status = "active"
            movement.move(source, "available", points)
            returned += points
        else:
            movement.change_lot(lot, -points)
            movement.move(source, "expired", points)
    return returned


def _allocations(transaction_id: int) -> list[tuple[Lot, int]]:
    """What a transaction took from each lot, in the order it took it."""
    rows = db.session.execute(
        select(Lot, LotMovement.amount).join(LotMovement, LotMovement.lot_id == Lot.id)
        .where(LotMovement.transaction_id == transaction_id).order_by(LotMovement.id)
        .execution_options(populate_existing=True)
    ).all()
    return [(lot, -amount) for lot, amount in rows if amount < 0]


# --- movements -----------------------------------------------------------------------------

def earn(member_id: int, points: int, *, reference: str, description: str, now: datetime,
         pending_until: datetime | None = None, expires_at: datetime | None = None,
         kind: str = "earn", order_id: str | None = None,
         rule_version: int | None = None, activity: bool = True) -> JournalTransaction:
    """Issue points: into pending until `pending_until` (the return window), else available. It is the
    member's activity unless `activity` is False (a bonus they did nothing for: their birthday)."""
    _positive(points)
    if kind not in EARN_KINDS:
        raise ValueError(f"earn kind must be one of {EARN_KINDS}")
    request_hash = fingerprint("earn", member_id, points, kind, pending_until, expires_at, order_id,
                                rule_version)
    accounts, status = _lock(member_id)
    if (txn := _replay(reference, request_hash)) is not None:
        return txn
    _refuse_if_erased(status)
    pending = pending_until is not None and pending_until > now
    movement = _Movement(accounts, now)
    movement.move("issued", "pending" if pending else "available", points)
    if activity:
        _active(accounts, now)
    txn = movement.write(member_id, kind, reference=reference, request_hash=request_hash,
                         description=description, order_id=order_id, rule_version=rule_version)
    _add_lot(txn, points, expires_at, now, activates_at=pending_until if pending else None)
    return txn


def settle(member_id: int, now: datetime) -> list[JournalTransaction]:
    """Activate the member's due pending points and expire their due points (for the jobs)."""
    accounts, _ = _lock(member_id)
    return _settle(member_id, accounts, now)


def hold(member_id: int, points: int, *, reference: str, expires_at: datetime, now: datetime,
         description: str, order_id: str | None = None) -> Hold:
    """Reserve available points for a checkout until `expires_at`."""
    _positive(points)
    request_hash = fingerprint("hold", member_id, points, order_id)
    accounts, status = _lock(member_id)
    if (txn := _replay(reference, request_hash)) is not None:
        return db.session.scalar(select(Hold).where(Hold.hold_transaction_id == txn.id))
    if expires_at <= now:
        raise ValidationProblem(errors={"expires_at": ["Must be in the future."]})
    _refuse_unless_active(status)
    movement = _take_available(member_id, accounts, points, "held", now)
    txn = movement.write(member_id, "hold", reference=reference, request_hash=request_hash,
                         description=description, order_id=order_id)
    hold = Hold(member_id=member_id, amount=points, status="held", expires_at=expires_at,
                hold_transaction_id=txn.id, created_at=now)
    db.session.add(hold)
    db.session.flush()
    return hold


def _lock_hold(hold: Hold) -> tuple[dict[str, Account], str]:
    """Lock the hold's member; answers their accounts and status, with the hold as of now."""
    locked = _lock(hold.member_id)
    db.session.refresh(hold)
    return locked


def capture(hold: Hold, *, now: datetime, paid_at: datetime | None = None) -> JournalTransaction:
    """Redeem held points. Capturing a captured hold answers the first capture. Expiry is judged at
    `paid_at` when given: a payment made while the hold was live captures it, however late we hear."""
    accounts, _ = _lock_hold(hold)
    if hold.status == "captured":
        return db.session.get(JournalTransaction, hold.resolution_transaction_id)
    if hold.status == "released":
        raise RedemptionNotHeld("The hold was released; its points are no longer reserved.")
    if min(now, paid_at or now) >= hold.expires_at:
        raise HoldExpired("The hold expired before it was captured.")
    hold_txn = db.session.get(JournalTransaction, hold.hold_transaction_id)
    movement = _Movement(accounts, now)
    movement.move("held", "redeemed", hold.amount)
    _active(accounts, now)
    txn = movement.write(hold.member_id, "redeem", reference=f"capture:{hold.public_id}",
                         request_hash=fingerprint("capture", hold.public_id), related_id=hold_txn.id,
                         order_id=hold_txn.order_id,
                         description=f"{hold.amount} points redeemed: {hold_txn.description}")
    hold.status, hold.resolution_transaction_id, hold.resolved_at = "captured", txn.id, now
    return txn


def release(hold: Hold, *, now: datetime, reason: str = "released") -> JournalTransaction:
    """Give held points back to their lots. Releasing a released hold answers the first release."""
    accounts, status = _lock_hold(hold)
    if hold.status == "released":
        return db.session.get(JournalTransaction, hold.resolution_transaction_id)
    if hold.status == "captured":
        raise RedemptionNotHeld("The hold was captured; refund the order to give points back.")
    hold_txn = db.session.get(JournalTransaction, hold.hold_transaction_id)
    movement = _Movement(accounts, now)
    _return_to_lots(movement, _allocations(hold_txn.id), "held", now, erased=status == "erased")
    txn = movement.write(hold.member_id, "release", reference=f"release:{hold.public_id}",
                         request_hash=fingerprint("release", hold.public_id), related_id=hold_txn.id,
                         order_id=hold_txn.order_id,
                         description=f"{hold.amount} points released ({reason}): {hold_txn.description}")
    hold.status, hold.resolution_transaction_id, hold.resolved_at = "released", txn.id, now
    return txn


def release_expired_holds(member_id: int, now: datetime) -> list[JournalTransaction]:
    """Release the member's holds past their expiry (for the worker)."""
    holds = db.session.scalars(select(Hold).where(
        Hold.member_id == member_id, Hold.status == "held", Hold.expires_at <= now).order_by(Hold.id))
    return [release(hold, now=now, reason="expired") for hold in list(holds)]


def spend(member_id: int, points: int, *, reference: str, description: str, now: datetime,
          kind: str = "reward") -> JournalTransaction:
    """Redeem available points at once, without a hold (the reward catalog)."""
    _positive(points)
    request_hash = fingerprint("spend", member_id, points, kind)
    accounts, status = _lock(member_id)
    if (txn := _replay(reference, request_hash)) is not None:
        return txn
    _refuse_unless_active(status)
    movement = _take_available(member_id, accounts, points, "redeemed", now)
    _active(accounts, now)
    return movement.write(member_id, kind, reference=reference, request_hash=request_hash,
                          description=description)


def adjust(member_id: int, points: int, *, reason: str, reference: str, now: datetime,
           staff_id: int | None = None, expires_at: datetime | None = None) -> JournalTransaction:
    """A staff correction: positive adds a lot, negative spends lots but never below zero."""
    if not isinstance(points, int) or points == 0 or abs(points) > MAX_POINTS:
        raise ValidationProblem(errors={"points": ["Must be a non-zero whole number."]})
    if not reason or not reason.strip():
        raise ValidationProblem(errors={"reason": ["Say why the points are adjusted."]})
    request_hash = fingerprint("adjust", member_id, points, reason, staff_id, expires_at)
    accounts, status = _lock(member_id)
    if (txn := _replay(reference, request_hash)) is not None:
        return txn
    _refuse_if_erased(status)
    if points < 0:
        movement = _take_available(member_id, accounts, -points, "adjusted", now)
    else:
        _settle(member_id, accounts, now)
        movement = _Movement(accounts, now)
        movement.move("adjusted", "available", points)
    txn = movement.write(member_id, "adjust", reference=reference, request_hash=request_hash,
                         description=f"Adjustment: {reason.strip()}", staff_id=staff_id)
    if points > 0:
        _add_lot(txn, points, expires_at, now)
    return txn


def _add_lot(txn: JournalTransaction, points: int, expires_at: datetime | None, now: datetime,
             activates_at: datetime | None = None) -> Lot:
    lot = Lot(member_id=txn.member_id, transaction_id=txn.id, amount=points, remaining=points,
              status="pending" if activates_at else "active", activates_at=activates_at,
              expires_at=expires_at, created_at=now)
    db.session.add(lot)
    db.session.flush()
    db.session.add(LotMovement(transaction_id=txn.id, lot_id=lot.id, amount=points))
    return lot


def clawback(earn: JournalTransaction, points: int, *, reference: str, now: datetime,
             description: str) -> JournalTransaction:
    """Take back points an order earned (a refund): from that order's lot first, pending or
    not, then from other available points; what the member already spent and no longer has
    is recorded as the shortfall, and the member never goes below zero. `description` says why;
    the row's description adds what was taken and the shortfall."""
    _positive(points)
    if earn.kind not in EARN_KINDS:
        raise ValidationProblem(errors={"transaction": ["Only earned points can be clawed back."]})
    request_hash = fingerprint("clawback", earn.public_id, points)
    accounts, _ = _lock(earn.member_id)
    if (txn := _replay(reference, request_hash)) is not None:
        return txn
    _refuse_if_reversed(earn)
    already = db.session.scalar(
        select(func.coalesce(func.sum(-JournalTransaction.points + JournalTransaction.shortfall), 0))
        .where(JournalTransaction.related_id == earn.id, JournalTransaction.kind == "clawback"))
    if already + points > earn.points:
        raise Conflict(f"Only {earn.points - already} of the {earn.points} earned points are left to "
                       "claw back.", code="clawback_exceeds_earned")
    _settle(earn.member_id, accounts, now)
    [lot] = db.session.scalars(select(Lot).where(Lot.transaction_id == earn.id)
                               .execution_options(populate_existing=True))
    movement = _Movement(accounts, now)
    from_lot = min(points, lot.remaining)
    if from_lot:
        movement.change_lot(lot, -from_lot)
        movement.move("pending" if lot.status == "pending" else "available", "issued", from_lot)
        if lot.remaining == 0:
            lot.status = "spent"
    from_others = 0
    if points > from_lot:
        spendable = accounts["available"].balance + movement.legs.get("available", 0)
        from_others = _spend_lots(movement, earn.member_id, min(points - from_lot, spendable),
                                  exclude=lot)
        movement.move("available", "issued", from_others)
    taken, shortfall = from_lot + from_others, points - from_lot - from_others
    description += f": {taken} points taken back"
    if shortfall:
        description += f"; {shortfall} of the {points} were already spent (shortfall)"
    return movement.write(earn.member_id, "clawback", reference=reference, request_hash=request_hash,
                          description=description, related_id=earn.id, order_id=earn.order_id,
                          shortfall=shortfall)


def restore(hold: Hold, points: int, *, reference: str, now: datetime,
            description: str) -> JournalTransaction:
    """Give back redeemed points (a refund of an order paid with points), to the lots they
    came from; points whose lot has expired meanwhile, or whose member was erased, expire instead."""
    _positive(points)
    request_hash = fingerprint("restore", hold.public_id, points)
    accounts, status = _lock_hold(hold)
    if (txn := _replay(reference, request_hash)) is not None:
        return txn
    if hold.status != "captured":
        raise RedemptionNotHeld("Only captured points can be restored.")
    if hold.restored + points > hold.amount:
        raise Conflict(f"Only {hold.amount - hold.restored} of the {hold.amount} redeemed points are left "
                       "to restore.", code="restore_exceeds_redeemed")
    to_restore = _unrestored(hold, points)
    movement = _Movement(accounts, now)
    _return_to_lots(movement, to_restore, "redeemed", now, erased=status == "erased")
    hold.restored += points
    hold_txn = db.session.get(JournalTransaction, hold.hold_transaction_id)
    return movement.write(hold.member_id, "restore", reference=reference, request_hash=request_hash,
                          description=description, related_id=hold.resolution_transaction_id,
                          order_id=hold_txn.order_id)


def _unrestored(hold: Hold, points: int) -> list[tuple[Lot, int]]:
    """Pick `points` of the hold's allocations that no earlier restore gave back."""
    given_back = dict(db.session.execute(
        select(LotMovement.lot_id, func.sum(LotMovement.amount))
        .join(JournalTransaction, JournalTransaction.id == LotMovement.transaction_id)
        .where(JournalTransaction.related_id == hold.resolution_transaction_id,
               JournalTransaction.kind == "restore", LotMovement.amount > 0)
        .group_by(LotMovement.lot_id)
    ).all())
    picked, left = [], points
    for lot, taken in _allocations(hold.hold_transaction_id):
        share = min(taken - given_back.get(lot.id, 0), left)
        if share > 0:
            picked.append((lot, share))
            left -= share
    return picked


def reverse(original: JournalTransaction, *, reference: str, now: datetime, reason: str,
            staff_id: int | None = None) -> JournalTransaction:
    """Undo an earn, a bonus or an adjustment with a new transaction, at most once.

    Added points come back out of their own lot, wherever it is now (pending or available), and
    only while it is untouched: once spent, expired or clawed back, adjust instead. Points a
    negative adjustment took go back to their lots (those that expired meanwhile, to expired)."""
    if original.kind not in REVERSIBLE_KINDS or original.reverses_id is not None:
        raise Conflict("Only earns, bonuses and adjustments can be reversed.", code="not_reversible")
    request_hash = fingerprint("reverse", original.public_id, reason, staff_id)
    accounts, status = _lock(original.member_id)
    if (txn := _replay(reference, request_hash)) is not None:
        return txn
    _refuse_if_erased(status)
    _refuse_if_reversed(original)
    if db.session.scalar(select(JournalTransaction.id).where(
            JournalTransaction.related_id == original.id, JournalTransaction.kind == "clawback").limit(1)):
        raise Conflict("A refund already clawed back points of this earn; adjust instead.",
                       code="not_reversible")
    _settle(original.member_id, accounts, now)
    movement = _Movement(accounts, now)
    source = "adjusted" if original.kind == "adjust" else "issued"
    if original.points > 0:
        lot = db.session.scalars(select(Lot).where(Lot.transaction_id == original.id)
                                 .execution_options(populate_existing=True)).one()
        if lot.remaining != lot.amount or lot.status not in ("pending", "active"):
            raise InsufficientPoints("Some of these points were already spent, expired or clawed back; "
                                     "adjust instead.")
        movement.move("pending" if lot.status == "pending" else "available", source, lot.remaining)
        movement.change_lot(lot, -lot.remaining)
        lot.status = "spent"
    else:
        _return_to_lots(movement, _allocations(original.id), source, now)
    return movement.write(original.member_id, "adjust", reference=reference, request_hash=request_hash,
                          description=f"Reversal of {original.public_id}: {reason}",
                          related_id=original.id, reverses_id=original.id, staff_id=staff_id,
                          order_id=original.order_id)


def freeze_pending(earn: JournalTransaction) -> bool:
    """Keep an earn's pending points from activating (a disputed payment). Points already available
    stay so. Answers whether anything was frozen."""
    _lock(earn.member_id)
    lot = _earn_lot(earn)
    if lot is None or lot.status != "pending" or lot.activates_at is None:
        return False
    lot.activates_at = None  # a pending lot without a moment never comes due
    return True


def unfreeze_pending(earn: JournalTransaction, activates_at: datetime) -> bool:
    """Let frozen pending points activate again at `activates_at` (or at the next settle, if past)."""
    _lock(earn.member_id)
    lot = _earn_lot(earn)
    if lot is None or lot.status != "pending" or lot.activates_at is not None:
        return False
    lot.activates_at = activates_at
    return True


def _earn_lot(earn: JournalTransaction) -> Lot | None:
    return db.session.scalar(select(Lot).where(Lot.transaction_id == earn.id)
                             .execution_options(populate_existing=True))


def _refuse_if_reversed(original: JournalTransaction) -> None:
    if db.session.scalar(select(JournalTransaction.id).where(JournalTransaction.reverses_id == original.id)):
        raise Conflict("This transaction was already reversed.", code="already_reversed")
