"""Property tests of the ledger (DESIGN.md, "The ledger").

A state machine drives random sequences of movements for a few members on a simulated clock:
earns into pending or available (expiring or not), settlement, holds with a TTL, captures,
releases, the worker's release of expired holds, spends, staff adjustments both ways, clawbacks,
restores, reversals, suspensions, and retries of earlier calls with the same reference. After
every step every invariant of `verify` must hold and the balances must agree with a simple model
the machine keeps: for each member what they hold in total, what is pending, what is held and
what they earned over their lifetime.

The model is deliberately smaller than the ledger: it knows the amount of each movement, which
holds are open and which earns are still in their return window, but not which lots a spend took
from. Expirations, and the part of a release or restore that expires because its lot expired
meanwhile, are read from the transactions the ledger wrote, after checking they are of a kind and
sign that may appear there.

The plain tests at the end pin down, one each, bugs this machine found in earlier versions of
the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pprint import pformat
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from loyalty.errors import (
    Conflict,
    HoldExpired,
    IdempotencyKeyReused,
    InsufficientPoints,
    MemberSuspended,
    Problem,
    RedemptionNotHeld,
)
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Account, Hold, JournalTransaction, Lot
from loyalty.ledger.service import EARN_KINDS
from loyalty.ledger.verify import verify
from loyalty.members import service as members
from loyalty.members.models import Member
from tests.conftest import empty_all_tables, unique_email

# Each example starts from an empty database, emptied on a connection of its own (`empty_database`).
pytestmark = pytest.mark.real_commits

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
MEMBERS = 3
SETTLEMENT = ("activate", "expire")  # what a movement may write besides its own transaction

# A share, in percent, of what there is to take; above 100 asks for more than there is.
SHARE = st.integers(1, 120)
DURATIONS = st.one_of(st.integers(1, 72).map(lambda hours: timedelta(hours=hours)),
                      st.integers(1, 30).map(lambda days: timedelta(days=days)))

MACHINE_SETTINGS = settings(
    max_examples=40, stateful_step_count=40, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PLAIN_SETTINGS = settings(
    max_examples=25, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# --- what the tests read back and remember --------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """A journal transaction as read back: the fields the properties talk about."""

    id: int
    public_id: str
    member: int
    kind: str
    points: int
    shortfall: int
    related_id: int | None
    available_after: int

    @classmethod
    def of(cls, txn: JournalTransaction) -> Seen:
        return cls(txn.id, txn.public_id, txn.member_id, txn.kind, txn.points, txn.shortfall, txn.related_id,
                   txn.available_after)


@dataclass(frozen=True)
class Reserved:
    """A hold as read back, with the transaction that opened it."""

    public_id: str
    amount: int
    expires_at: datetime
    transaction: Seen


def seen(result: Any) -> Any:
    if isinstance(result, JournalTransaction):
        return Seen.of(result)
    if isinstance(result, Hold):
        return Reserved(result.public_id, result.amount, result.expires_at,
                        Seen.of(db.session.get(JournalTransaction, result.hold_transaction_id)))
    return [seen(item) for item in result]


def written(result: Any) -> list[Seen]:
    """The transactions a call answered."""
    if isinstance(result, Seen):
        return [result]
    if isinstance(result, Reserved):
        return [result.transaction]
    return list(result)


def public_id(result: Seen | Reserved) -> str:
    return result.public_id


@dataclass
class Call:
    """A call to the ledger as a caller made it, kept so it can be retried. Holds and transactions
    are named by public id and looked up again at each call, in that call's session."""

    operation: str
    member: int
    fields: dict[str, Any]
    answer: str | None = None  # public id of what the first call answered

    def invoke(self, now: datetime) -> Any:
        fields = dict(self.fields)
        if "hold" in fields:
            fields["hold"] = ledger.get_hold(fields["hold"])
        for name in ("earn", "original"):
            if name in fields:
                fields[name] = ledger.get_transaction(fields[name])
        return getattr(ledger, self.operation)(**fields, now=now)

    def with_other_fields(self) -> Call:
        """The same reference with different details, as a buggy or malicious client might send."""
        if "points" in self.fields:
            return replace(self, fields={**self.fields, "points": self.fields["points"] * 2})
        return replace(self, fields={**self.fields, "reason": self.fields["reason"] + " (edited)"})


@dataclass
class Credit:
    """What the machine remembers of an earn or an adjustment."""

    member: int
    kind: str
    points: int
    transaction_id: int
    pending_until: datetime | None = None  # set while its lot is pending
    pending: int = 0  # points of its lot still pending
    clawed_back: int = 0  # asked for by clawbacks, shortfalls included
    taken_back: int = 0  # actually taken back, by clawbacks and the reversal
    reversed: bool = False


@dataclass
class Reservation:
    """What the machine remembers of a hold."""

    member: int
    amount: int
    expires_at: datetime
    transaction_id: int
    status: str = "held"
    resolution: str | None = None  # public id of the capture or release
    restored: int = 0


@dataclass
class Holdings:
    """What the machine expects one member to have."""

    total: int = 0  # available + pending + held
    lifetime_earned: int = 0
    suspended: bool = False
    credits: list[Credit] = field(default_factory=list)
    holds: list[Reservation] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return sum(credit.pending for credit in self.credits if credit.pending_until is not None)

    @property
    def held(self) -> int:
        return sum(hold.amount for hold in self.holds if hold.status == "held")


def snapshot() -> tuple:
    """Everything a movement can change; equal before and after means nothing moved."""
    return (
        db.session.scalar(select(func.count()).select_from(JournalTransaction)),
        db.session.execute(select(Account.id, Account.balance).order_by(Account.id)).all(),
        db.session.execute(select(Lot.id, Lot.remaining, Lot.status).order_by(Lot.id)).all(),
        db.session.execute(select(Hold.id, Hold.status, Hold.restored).order_by(Hold.id)).all(),
    )


def assert_every_invariant_holds() -> None:
    breaches = [(r.check.name, r.check.description, r.breaches, r.examples) for r in verify(db.session) if not r.ok]
    assert not breaches, "ledger invariants broken:\n" + pformat(breaches)


def empty_database(app: Flask) -> None:
    with app.app_context():
        db.session.remove()
        with db.engine.begin() as connection:
            empty_all_tables(connection)


def enrol_member() -> int:
    """A new member with their ledger accounts, committed. Needs an app context."""
    member = members.enrol(members.NewMember(email=unique_email("props")), source="test")
    db.session.commit()
    return member.id


# --- the state machine ----------------------------------------------------------------------------

class LedgerMachine(RuleBasedStateMachine):
    """Random movements for a few members. Every rule knows what the ledger must answer: the
    result it expects, or the one refusal. A refused movement must move nothing."""

    app: Flask  # bound by `machine_for`

    members = Bundle("members")
    earns = Bundle("earns")
    adjustments = Bundle("adjustments")
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        empty_database(self.app)
        self.now = T0
        self.expected: dict[int, Holdings] = {}
        self.credits: dict[str, Credit] = {}
        self.reservations: dict[str, Reservation] = {}
        self.calls: list[Call] = []
        self.last_written: list[Seen] = []
        self.references = count(1)

    def teardown(self) -> None:
        empty_database(self.app)

    # --- helpers ---------------------------------------------------------------------------------

    def reference(self, prefix: str) -> str:
        return f"{prefix}:{next(self.references)}"

    def spendable(self, member: int) -> int:
        """Available points once due lots are activated and expired, as a movement would see them."""
        with self.app.app_context():
            ledger.settle(member, self.now)
            available = ledger.balances(member).available
            db.session.rollback()
        return available

    def lot_is_untouched(self, credit: Credit) -> bool:
        """Whether the lot an earn or a positive adjustment created still holds all its points, once
        due lots are activated and expired, as a reversal would see it."""
        with self.app.app_context():
            ledger.settle(credit.member, self.now)
            lot = db.session.scalar(select(Lot).where(Lot.transaction_id == credit.transaction_id))
            untouched = lot.remaining == lot.amount and lot.status in ("pending", "active")
            db.session.rollback()
        return untouched

    def move(self, call: Call, *, refused: type[Problem] | None = None, code: str | None = None,
             settles: bool = False) -> Any:
        """Make the call; commit it, or roll it back when it must be refused with `refused`.

        Checks what every movement promises: a refusal moves nothing; a first call writes the
        transactions it answers, for its own member only, plus (if it settles first) activations
        and expirations of that member's due lots, and nothing else.
        """
        with self.app.app_context():
            if refused is not None:
                before = snapshot()
                with pytest.raises(refused) as error:
                    call.invoke(self.now)
                db.session.rollback()
                assert code is None or error.value.code == code, (error.value.code, str(error.value))
                assert snapshot() == before, "a refused movement moved points"
                return None
            last_id = db.session.scalar(select(func.coalesce(func.max(JournalTransaction.id), 0)))
            result = seen(call.invoke(self.now))
            db.session.commit()
            new = [Seen.of(txn) for txn in db.session.scalars(
                select(JournalTransaction).where(JournalTransaction.id > last_id).order_by(JournalTransaction.id))]
        self.last_written = new
        answered = {txn.id for txn in written(result)}
        assert answered <= {txn.id for txn in new}, "a first call answered a transaction it did not write"
        assert {txn.member for txn in new} <= {call.member}, "a movement wrote to another member's journal"
        others = [txn for txn in new if txn.id not in answered]
        assert all(txn.kind in SETTLEMENT for txn in others), others
        settlement = [txn for txn in new if txn.kind in SETTLEMENT]
        if settles:
            self.settled(call.member, settlement)
        else:
            assert settlement == [], f"{call.operation} settled lots; it should not"
        return result

    def retry(self, call: Call) -> None:
        """The same call again: it answers the first result and moves nothing."""
        with self.app.app_context():
            before = snapshot()
            result = seen(call.invoke(self.now))
            db.session.commit()
            assert snapshot() == before, f"retrying {call.operation} moved points again"
        assert public_id(result) == call.answer, "a retry answered something other than the first call"

    def settled(self, member: int, settlement: list[Seen]) -> None:
        """Due pending lots were activated, each once; the model takes the expirations as written."""
        holdings = self.expected[member]
        due = [c for c in holdings.credits if c.pending_until is not None and c.pending_until <= self.now]
        activated = [txn for txn in settlement if txn.kind == "activate"]
        assert sorted(txn.related_id for txn in activated) == sorted(c.transaction_id for c in due if c.pending)
        assert all(txn.points == 0 for txn in activated), "an activation changed what the member holds"
        for credit in due:
            credit.pending_until, credit.pending = None, 0
        for txn in settlement:
            if txn.kind == "expire":
                assert txn.points < 0, "an expiration of an empty lot, or one that gave points"
                holdings.total += txn.points

    # --- members and the clock -------------------------------------------------------------------

    @initialize(target=members, welcome=st.lists(st.integers(0, 1000), min_size=MEMBERS, max_size=MEMBERS))
    def enrol_members(self, welcome):
        """Members start with some available points that never expire, so spending starts at once."""
        with self.app.app_context():
            ids = [enrol_member() for _ in range(MEMBERS)]
        self.expected = {member: Holdings() for member in ids}
        for member, points in zip(ids, welcome, strict=True):
            if points:
                self.earned(member, points, kind="bonus")
        return multiple(*ids)

    @rule(duration=DURATIONS)
    def time_passes(self, duration):
        self.now += duration

    @rule(member=members, suspended=st.booleans())
    def suspend_or_reinstate(self, member, suspended):
        with self.app.app_context():
            members.set_status(db.session.get(Member, member), "suspended" if suspended else "active")
            db.session.commit()
        self.expected[member].suspended = suspended

    # --- earning and settling --------------------------------------------------------------------

    @rule(target=earns, member=members, points=st.integers(1, 500), kind=st.sampled_from(EARN_KINDS),
          return_window=st.none() | DURATIONS, expires_in=st.none() | DURATIONS)
    def earn(self, member, points, kind, return_window, expires_in):
        return self.earned(member, points, kind=kind, pending_until=self.now + return_window if return_window else None,
                           expires_at=self.now + expires_in if expires_in else None)

    def earned(self, member: int, points: int, *, kind: str, pending_until: datetime | None = None,
               expires_at: datetime | None = None) -> str:
        call = Call("earn", member, {
            "member_id": member, "points": points, "kind": kind, "reference": self.reference("order"),
            "description": "Order", "pending_until": pending_until, "expires_at": expires_at,
        })
        txn = self.move(call)
        assert (txn.kind, txn.points) == (kind, points)
        holdings = self.expected[member]
        holdings.total += points
        holdings.lifetime_earned += points
        credit = Credit(member, "earn", points, txn.id, pending_until=pending_until,
                        pending=points if pending_until else 0)
        holdings.credits.append(credit)
        self.credits[txn.public_id] = credit
        self.calls.append(replace(call, answer=txn.public_id))
        return txn.public_id

    @rule(member=members, later=DURATIONS)
    def settle_later(self, member, later):
        """The settlement job, some time later: due pending lots activate, due lots expire."""
        self.now += later
        txns = self.move(Call("settle", member, {"member_id": member}), settles=True)
        assert txns == self.last_written, "settle did not answer everything it did"

    # --- two-phase redemption --------------------------------------------------------------------

    @rule(target=holds, member=members, share=SHARE, ttl_hours=st.integers(1, 72))
    def hold(self, member, share, ttl_hours):
        available = self.spendable(member)
        points = max(1, available * share // 100)
        call = Call("hold", member, {
            "member_id": member, "points": points, "reference": self.reference("checkout"),
            "description": "Checkout", "expires_at": self.now + timedelta(hours=ttl_hours),
        })
        holdings = self.expected[member]
        refused = MemberSuspended if holdings.suspended else InsufficientPoints if points > available else None
        reserved = self.move(call, refused=refused, settles=True)
        if reserved is None:
            return multiple()
        assert (reserved.amount, reserved.transaction.kind, reserved.transaction.points) == (points, "hold", 0)
        # Only earns and adjustments can be reversed; a hold is undone by releasing it.
        self.move(Call("reverse", member, {"original": reserved.transaction.public_id,
                                           "reference": self.reference("reversal"), "reason": "Not allowed"}),
                  refused=Conflict, code="not_reversible")
        reservation = Reservation(member, points, reserved.expires_at, reserved.transaction.id)
        holdings.holds.append(reservation)
        self.reservations[reserved.public_id] = reservation
        self.calls.append(replace(call, answer=reserved.public_id))
        return reserved.public_id

    @rule(hold=holds)
    def capture(self, hold):
        reservation = self.reservations[hold]
        call = Call("capture", reservation.member, {"hold": hold})
        if reservation.status == "captured":
            self.retry(replace(call, answer=reservation.resolution))  # a second capture answers the first
            return
        refused = (RedemptionNotHeld if reservation.status == "released"
                   else HoldExpired if self.now >= reservation.expires_at else None)
        txn = self.move(call, refused=refused)
        if txn is None:
            return
        assert (txn.kind, txn.points) == ("redeem", -reservation.amount)
        self.expected[reservation.member].total += txn.points
        reservation.status, reservation.resolution = "captured", txn.public_id

    def released(self, reservation: Reservation, txn: Seen) -> None:
        # Points go back to their lots, or expire if their lot expired meanwhile.
        assert txn.kind == "release" and -reservation.amount <= txn.points <= 0, txn
        self.expected[reservation.member].total += txn.points
        reservation.status, reservation.resolution = "released", txn.public_id

    @rule(hold=holds)
    def release(self, hold):
        reservation = self.reservations[hold]
        call = Call("release", reservation.member, {"hold": hold})
        if reservation.status == "released":
            self.retry(replace(call, answer=reservation.resolution))  # a second release answers the first
            return
        txn = self.move(call, refused=RedemptionNotHeld if reservation.status == "captured" else None)
        if txn is not None:
            self.released(reservation, txn)

    @rule(member=members, later=DURATIONS)
    def release_expired_holds_later(self, member, later):
        """The worker, some time later: holds past their TTL are released, and only those."""
        self.now += later
        due = {r.transaction_id: r for r in self.expected[member].holds
               if r.status == "held" and r.expires_at <= self.now}
        txns = self.move(Call("release_expired_holds", member, {"member_id": member}))
        assert sorted(txn.related_id for txn in txns) == sorted(due), "not exactly the expired holds were released"
        for txn in txns:
            self.released(due[txn.related_id], txn)

    @rule(member=members, share=SHARE)
    def spend(self, member, share):
        available = self.spendable(member)
        points = max(1, available * share // 100)
        call = Call("spend", member, {"member_id": member, "points": points, "reference": self.reference("reward"),
                                      "description": "Reward"})
        holdings = self.expected[member]
        refused = MemberSuspended if holdings.suspended else InsufficientPoints if points > available else None
        txn = self.move(call, refused=refused, settles=True)
        if txn is None:
            return
        assert (txn.kind, txn.points) == ("reward", -points)
        holdings.total += txn.points
        self.calls.append(replace(call, answer=txn.public_id))

    # --- corrections -----------------------------------------------------------------------------

    def adjust(self, member: int, points: int, expires_in: timedelta | None, refused: type[Problem] | None):
        call = Call("adjust", member, {
            "member_id": member, "points": points, "reason": "Goodwill", "reference": self.reference("adjust"),
            "expires_at": self.now + expires_in if expires_in else None,
        })
        txn = self.move(call, refused=refused, settles=True)  # suspended members may still be corrected
        if txn is None:
            return multiple()
        assert (txn.kind, txn.points) == ("adjust", points)
        holdings = self.expected[member]
        holdings.total += points
        credit = Credit(member, "adjust", points, txn.id)
        holdings.credits.append(credit)
        self.credits[txn.public_id] = credit
        self.calls.append(replace(call, answer=txn.public_id))
        return txn.public_id

    @rule(target=adjustments, member=members, points=st.integers(1, 300), expires_in=st.none() | DURATIONS)
    def adjust_up(self, member, points, expires_in):
        return self.adjust(member, points, expires_in, refused=None)

    @rule(target=adjustments, member=members, share=SHARE)
    def adjust_down(self, member, share):
        available = self.spendable(member)
        points = max(1, available * share // 100)
        return self.adjust(member, -points, None, refused=InsufficientPoints if points > available else None)

    @rule(earn=earns, share=st.integers(1, 110))
    def clawback(self, earn, share):
        credit = self.credits[earn]
        points = max(1, credit.points * share // 100)
        call = Call("clawback", credit.member, {"earn": earn, "points": points, "reference": self.reference("refund"),
                                                "description": "Refund"})
        refused, code = None, None
        if credit.reversed:  # its points were taken back already
            refused, code = Conflict, "already_reversed"
        elif credit.clawed_back + points > credit.points:
            refused, code = Conflict, "clawback_exceeds_earned"
        txn = self.move(call, refused=refused, code=code, settles=True)
        if txn is None:
            return
        taken = -txn.points
        assert txn.kind == "clawback" and txn.shortfall >= 0 and taken + txn.shortfall == points, txn
        assert txn.shortfall == 0 or txn.available_after == 0, "a shortfall while the member still had points"
        if credit.pending_until is not None:  # still in its return window: taken from its own lot first
            credit.pending -= min(points, credit.pending)
        credit.clawed_back += points
        credit.taken_back += taken
        assert credit.taken_back <= credit.points
        holdings = self.expected[credit.member]
        holdings.total -= taken
        holdings.lifetime_earned -= taken
        self.calls.append(replace(call, answer=txn.public_id))

    @rule(hold=holds, share=st.integers(1, 110))
    def restore(self, hold, share):
        reservation = self.reservations[hold]
        points = max(1, reservation.amount * share // 100)
        call = Call("restore", reservation.member, {"hold": hold, "points": points,
                                                    "reference": self.reference("refund"), "description": "Refund"})
        refused, code = None, None
        if reservation.status != "captured":
            refused = RedemptionNotHeld
        elif reservation.restored + points > reservation.amount:
            refused, code = Conflict, "restore_exceeds_redeemed"
        txn = self.move(call, refused=refused, code=code)
        if txn is None:
            return
        # Points go back to their lots, or expire if their lot expired meanwhile.
        assert txn.kind == "restore" and 0 <= txn.points <= points, txn
        reservation.restored += points
        self.expected[reservation.member].total += txn.points
        self.calls.append(replace(call, answer=txn.public_id))

    @rule(original=st.one_of(earns, adjustments))
    def reverse(self, original):
        """Undo an earn or an adjustment, at most once; the ledger settles the member's lots first."""
        credit = self.credits[original]
        call = Call("reverse", credit.member, {"original": original, "reference": self.reference("reversal"),
                                               "reason": "Entered by mistake"})
        refused, code = None, None
        if credit.reversed:
            refused, code = Conflict, "already_reversed"
        elif credit.clawed_back:  # a refund took points of it back already: adjust instead
            refused, code = Conflict, "not_reversible"
        elif credit.points > 0 and not self.lot_is_untouched(credit):  # spent, expired or clawed back
            refused = InsufficientPoints
        txn = self.move(call, refused=refused, code=code, settles=True)
        if txn is None:
            return
        assert txn.kind == "adjust", txn
        if credit.points > 0:  # the points come back out of their own lot, pending or available
            assert txn.points == -credit.points, txn
        else:  # the points go back to the lots they came from, or expire if their lot expired meanwhile
            assert 0 <= txn.points <= -credit.points, txn
        holdings = self.expected[credit.member]
        holdings.total += txn.points
        if credit.kind == "earn":
            holdings.lifetime_earned -= credit.points
            credit.taken_back += credit.points
            assert credit.taken_back <= credit.points
        credit.reversed, credit.pending_until, credit.pending = True, None, 0
        self.calls.append(replace(call, answer=txn.public_id))
        # A reversal is final: it cannot be reversed in its turn.
        self.move(Call("reverse", credit.member, {"original": txn.public_id, "reference": self.reference("reversal"),
                                                  "reason": "Undo the undo"}),
                  refused=Conflict, code="not_reversible")

    # --- idempotency -----------------------------------------------------------------------------

    @precondition(lambda self: self.calls)
    @rule(data=st.data(), same_fields=st.booleans())
    def call_again_with_the_same_reference(self, data, same_fields):
        """With the same fields, a retry answers the first result; with others, it is refused."""
        call = data.draw(st.sampled_from(self.calls), label="call")
        if same_fields:
            self.retry(call)
        else:
            self.move(call.with_other_fields(), refused=IdempotencyKeyReused)

    # --- after every step ------------------------------------------------------------------------

    @invariant()
    def every_ledger_invariant_holds(self):
        with self.app.app_context():
            assert_every_invariant_holds()

    @invariant()
    def balances_agree_with_the_model(self):
        with self.app.app_context():
            for member, holdings in self.expected.items():
                balances = ledger.balances(member)
                assert min(balances.available, balances.pending, balances.held) >= 0, (member, balances)
                actual = {"total": balances.available + balances.pending + balances.held,
                          "pending": balances.pending, "held": balances.held,
                          "lifetime_earned": balances.lifetime_earned}
                expected = {"total": holdings.total, "pending": holdings.pending, "held": holdings.held,
                            "lifetime_earned": holdings.lifetime_earned}
                assert actual == expected, f"member {member}: {balances}"


def machine_for(app: Flask) -> type[LedgerMachine]:
    return type("LedgerMachine", (LedgerMachine,), {"app": app})


def test_random_sequences_of_movements_keep_every_invariant(app):
    run_state_machine_as_test(machine_for(app), settings=MACHINE_SETTINGS)


# --- plain properties -----------------------------------------------------------------------------

def fresh_member(app: Flask) -> int:
    """An empty database with one member: each example starts from nothing."""
    empty_database(app)
    with app.app_context():
        return enrol_member()


@PLAIN_SETTINGS
@given(earned=st.lists(st.integers(1, 200), min_size=1, max_size=5),
       asked=st.lists(st.integers(1, 300), min_size=1, max_size=6))
def test_holds_never_reserve_more_than_was_earned(app, earned, asked):
    member = fresh_member(app)
    with app.app_context():
        for n, points in enumerate(earned):
            ledger.earn(member, points, reference=f"order:{n}", description="Order", now=T0)
            db.session.commit()
        held = 0
        for n, points in enumerate(asked):
            call = dict(reference=f"checkout:{n}", description="Checkout", now=T0, expires_at=T0 + DAY)
            if held + points <= sum(earned):
                ledger.hold(member, points, **call)
                db.session.commit()
                held += points
            else:
                with pytest.raises(InsufficientPoints):
                    ledger.hold(member, points, **call)
                db.session.rollback()
        balances = ledger.balances(member)
        assert balances.held == held <= sum(earned)
        assert balances.available == sum(earned) - held
        assert_every_invariant_holds()


@PLAIN_SETTINGS
@given(earned=st.integers(1, 300), other=st.integers(0, 300), spent_share=st.integers(0, 100),
       in_return_window=st.booleans(), pieces=st.lists(st.integers(1, 200), min_size=1, max_size=8))
def test_partial_clawbacks_never_take_more_than_was_earned(app, earned, other, spent_share, in_return_window,
                                                           pieces):
    member = fresh_member(app)
    with app.app_context():
        if other:
            ledger.earn(member, other, reference="order:other", description="Another order", now=T0)
        order = ledger.earn(member, earned, reference="order:refunded", description="Order", now=T0,
                            pending_until=T0 + 14 * DAY if in_return_window else None)
        spent = ledger.balances(member).available * spent_share // 100
        if spent:
            ledger.spend(member, spent, reference="reward", description="Reward", now=T0)
        db.session.commit()
        asked = taken = 0
        for n, points in enumerate(pieces):
            call = dict(reference=f"refund:{n}", description="Partial refund", now=T0)
            if asked + points > earned:
                with pytest.raises(Conflict) as error:
                    ledger.clawback(order, points, **call)
                db.session.rollback()
                assert error.value.code == "clawback_exceeds_earned"
                continue
            txn = ledger.clawback(order, points, **call)
            db.session.commit()
            assert -txn.points + txn.shortfall == points, "taken and shortfall add up to what was asked"
            asked += points
            taken += -txn.points
        assert taken <= asked <= earned
        assert ledger.balances(member).lifetime_earned == other + earned - taken
        assert_every_invariant_holds()


@PLAIN_SETTINGS
@given(expiring=st.integers(1, 200), lasting=st.integers(1, 200), held_share=st.integers(1, 100),
       pieces=st.lists(st.integers(1, 150), min_size=1, max_size=8), late=st.booleans())
def test_partial_restores_give_back_at_most_what_was_captured(app, expiring, lasting, held_share, pieces, late):
    """Restores return the captured points to their lots; late ones find the expiring lot expired."""
    member = fresh_member(app)
    with app.app_context():
        ledger.earn(member, expiring, reference="order:1", description="Order", now=T0, expires_at=T0 + DAY)
        ledger.earn(member, lasting, reference="order:2", description="Order", now=T0)
        captured = max(1, (expiring + lasting) * held_share // 100)
        hold = ledger.hold(member, captured, reference="checkout", description="Checkout", now=T0,
                           expires_at=T0 + DAY)
        ledger.capture(hold, now=T0)
        db.session.commit()
        now = T0 + 2 * DAY if late else T0
        restored = returned = 0
        for n, points in enumerate(pieces):
            call = dict(reference=f"refund:{n}", description="Refund", now=now)
            if restored + points > captured:
                with pytest.raises(Conflict) as error:
                    ledger.restore(hold, points, **call)
                db.session.rollback()
                assert error.value.code == "restore_exceeds_redeemed"
                continue
            txn = ledger.restore(hold, points, **call)
            db.session.commit()
            assert 0 <= txn.points <= points
            assert txn.points == points or late, "nothing expired, yet not everything came back"
            restored += points
            returned += txn.points
        assert returned <= restored <= captured
        ledger.settle(member, now)
        db.session.commit()
        available = ledger.balances(member).available
        if late:  # only the lasting lot is left; what was taken from it came back
            assert available == lasting - max(0, captured - expiring) + returned
            assert returned <= min(restored, max(0, captured - expiring))
        else:
            assert available == expiring + lasting - captured + restored
        assert_every_invariant_holds()


# --- regressions: bugs found in earlier versions of the ledger --------------------------------------

@pytest.mark.parametrize("other_pending", [0, 100], ids=["nothing else pending", "another order pending"])
def test_reversing_an_earn_after_its_return_window_takes_back_available_points(app, other_pending):
    """Once activated, an earn's points are available: its reversal takes them from there, not from pending."""
    member = fresh_member(app)
    with app.app_context():
        first = ledger.earn(member, 100, reference="order:1", description="Order 1", now=T0, pending_until=T0 + DAY)
        if other_pending:
            ledger.earn(member, other_pending, reference="order:2", description="Order 2", now=T0,
                        pending_until=T0 + 30 * DAY)
        ledger.settle(member, T0 + 2 * DAY)  # the first order's points are available now
        db.session.commit()
        txn = ledger.reverse(first, reference="reversal", now=T0 + 2 * DAY, reason="Test order")
        db.session.commit()
        assert txn.points == -100
        balances = ledger.balances(member)
        assert (balances.available, balances.pending) == (0, other_pending)
        assert_every_invariant_holds()


def test_reversing_a_negative_adjustment_after_its_lot_expired_expires_the_points(app):
    """Points a reversal gives back to a lot that expired meanwhile expire, as for releases and restores."""
    member = fresh_member(app)
    with app.app_context():
        ledger.earn(member, 100, reference="order", description="Order", now=T0, expires_at=T0 + DAY)
        adjustment = ledger.adjust(member, -30, reason="Correction", reference="adjust", now=T0)
        ledger.settle(member, T0 + 2 * DAY)  # the other 70 expire
        db.session.commit()
        txn = ledger.reverse(adjustment, reference="reversal", now=T0 + 2 * DAY, reason="Correction was wrong")
        db.session.commit()
        assert txn.points == 0
        assert ledger.balances(member).available == 0
        assert_every_invariant_holds()


def test_a_reversed_earn_is_not_clawed_back_again_from_other_points(app):
    member = fresh_member(app)
    with app.app_context():
        order = ledger.earn(member, 100, reference="order:1", description="Order 1", now=T0)
        ledger.earn(member, 100, reference="order:2", description="Order 2", now=T0)
        ledger.reverse(order, reference="reversal", now=T0, reason="Test order")
        db.session.commit()
        with pytest.raises(Conflict) as error:
            ledger.clawback(order, 100, reference="refund", now=T0, description="Refund of order 1")
        db.session.rollback()
        assert error.value.code == "already_reversed"
        balances = ledger.balances(member)
        assert (balances.available, balances.lifetime_earned) == (100, 100)  # order 2's points are untouched


def test_a_clawed_back_earn_is_not_reversed_again(app):
    member = fresh_member(app)
    with app.app_context():
        order = ledger.earn(member, 100, reference="order:1", description="Order 1", now=T0)
        hold = ledger.hold(member, 100, reference="checkout", description="Checkout", now=T0, expires_at=T0 + DAY)
        ledger.capture(hold, now=T0)  # order 1's points pay for a checkout
        ledger.earn(member, 100, reference="order:2", description="Order 2", now=T0)
        ledger.clawback(order, 100, reference="refund", now=T0, description="Refund of order 1")  # takes order 2's
        ledger.restore(hold, 100, reference="refund:checkout", now=T0, description="Refund of the checkout")
        db.session.commit()
        with pytest.raises(Conflict) as error:
            ledger.reverse(order, reference="reversal", now=T0, reason="Test order")
        db.session.rollback()
        assert error.value.code == "not_reversible"
        balances = ledger.balances(member)
        assert (balances.available, balances.lifetime_earned) == (100, 100)  # order 1 was taken back once


def test_a_retried_hold_answers_the_first_hold_even_after_it_expired(app):
    """DESIGN.md: a retry with the same fields returns the first result, however late it comes."""
    member = fresh_member(app)
    with app.app_context():
        ledger.earn(member, 100, reference="order", description="Order", now=T0)
        call = dict(reference="checkout", description="Checkout", expires_at=T0 + timedelta(minutes=30))
        first = ledger.hold(member, 60, now=T0, **call)
        db.session.commit()
        retried = ledger.hold(member, 60, now=T0 + timedelta(hours=1), **call)  # the client retries late
        assert retried.public_id == first.public_id
        assert ledger.balances(member).held == 60
