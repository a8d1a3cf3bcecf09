"""The ledger service: every movement, its bad input, idempotency and the insert-only journal."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, text, update

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
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Account, JournalIsAppendOnly, JournalTransaction, Lot, Posting
from loyalty.ledger.service import Balances
from loyalty.ledger.verify import verify
from loyalty.members import service as members
from loyalty.members.models import Member
from tests.conftest import unique_email

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
_refs = iter(range(1, 10**9))


def ref(prefix: str = "test") -> str:
    return f"{prefix}:{next(_refs)}"


@pytest.fixture
def app_context(in_app):
    """An app context held for the test, for the ledger's session: no client requests in these tests."""
    with in_app():
        yield
        db.session.rollback()


@pytest.fixture
def new_member(app_context):
    def make(status: str = "active") -> int:
        member = members.enrol(members.NewMember(email=unique_email()), source="test")
        member.status = status
        db.session.commit()
        return member.id

    return make


@pytest.fixture
def member(new_member) -> int:
    return new_member()


def earn(member, points, **kwargs):
    kwargs.setdefault("now", T0)
    txn = ledger.earn(member, points, reference=kwargs.pop("reference", ref("earn")),
                      description=kwargs.pop("description", "Order #1"), **kwargs)
    db.session.commit()
    return txn


def hold(member, points, *, now=T0, ttl=timedelta(minutes=30), reference=None):
    held = ledger.hold(member, points, reference=reference or ref("hold"), expires_at=now + ttl, now=now,
                       description="Order #2")
    db.session.commit()
    return held


def lots(member):
    return list(db.session.scalars(select(Lot).where(Lot.member_id == member).order_by(Lot.id)))


def journal_size() -> tuple[int, int]:
    return (db.session.scalar(select(func.count()).select_from(JournalTransaction)),
            db.session.scalar(select(func.count()).select_from(Posting)))


def assert_ledger_consistent():
    breaches = [r for r in verify(db.session) if not r.ok]
    assert breaches == [], [(r.check.name, r.examples) for r in breaches]


# --- earning and activation ---------------------------------------------------------------------

def test_new_member_has_all_seven_accounts_at_zero(app_context, member):
    kinds = dict(db.session.execute(select(Account.kind, Account.balance).where(Account.member_id == member)).all())
    assert kinds == dict.fromkeys(
        ("available", "pending", "held", "issued", "redeemed", "expired", "adjusted"), 0)


def test_earn_into_the_return_window_is_pending(app_context, member):
    txn = earn(member, 120, pending_until=T0 + 14 * DAY, order_id="ord_1")
    assert ledger.balances(member) == Balances(available=0, pending=120, held=0, lifetime_earned=120)
    assert (txn.kind, txn.points, txn.pending_after, txn.order_id) == ("earn", 120, 120, "ord_1")
    [lot] = lots(member)
    assert (lot.amount, lot.remaining, lot.status, lot.activates_at) == (120, 120, "pending", T0 + 14 * DAY)
    assert_ledger_consistent()


def test_earn_without_a_return_window_is_available_at_once(app_context, member):
    earn(member, 50)
    assert ledger.balances(member) == Balances(available=50, lifetime_earned=50)


def test_every_earn_posts_from_issued_and_sums_to_zero(app_context, member):
    txn = earn(member, 75)
    postings = db.session.execute(
        select(Account.kind, Posting.amount).join(Account).where(Posting.transaction_id == txn.id)).all()
    assert sorted(postings) == [("available", 75), ("issued", -75)]


def test_pending_points_activate_at_the_end_of_the_window_not_before(app_context, member):
    earn(member, 100, pending_until=T0 + 14 * DAY)
    assert ledger.settle(member, T0 + 14 * DAY - timedelta(seconds=1)) == []
    [activation] = ledger.settle(member, T0 + 14 * DAY)
    db.session.commit()
    assert (activation.kind, activation.points, activation.available_after) == ("activate", 0, 100)
    assert ledger.balances(member) == Balances(available=100, lifetime_earned=100)
    assert ledger.settle(member, T0 + 15 * DAY) == []
    assert_ledger_consistent()


@pytest.mark.parametrize("points", [0, -5, 1.5, True, 10**13])
def test_earn_refuses_amounts_that_are_not_positive_whole_points(app_context, member, points):
    with pytest.raises(ValidationProblem) as error:
        ledger.earn(member, points, reference=ref(), description="x", now=T0)
    assert list(error.value.errors) == ["points"]
    assert journal_size() == (0, 0)


def test_earn_for_an_unknown_member_is_not_found(app_context):
    with pytest.raises(NotFound):
        ledger.earn(999_999, 10, reference=ref(), description="x", now=T0)


def test_erased_member_cannot_earn(app_context, new_member):
    member = new_member("erased")
    with pytest.raises(Conflict) as error:
        ledger.earn(member, 10, reference=ref(), description="x", now=T0)
    assert error.value.code == "member_erased"


# --- holds, capture and release -------------------------------------------------------------------

def test_hold_moves_available_to_held_and_takes_soonest_expiring_lots_first(app_context, member):
    earn(member, 100)  # never expires
    earn(member, 100, expires_at=T0 + 90 * DAY)
    earn(member, 100, expires_at=T0 + 30 * DAY)
    held = hold(member, 150)
    assert ledger.balances(member) == Balances(available=150, held=150, lifetime_earned=300)
    assert [(lot.remaining, lot.status) for lot in lots(member)] == [(100, "active"), (50, "active"),
                                                                      (0, "spent")]
    assert (held.amount, held.status, held.expires_at) == (150, "held", T0 + timedelta(minutes=30))
    assert_ledger_consistent()


def test_hold_more_than_available_is_refused_and_moves_nothing(app_context, member):
    earn(member, 100)
    before = journal_size()
    with pytest.raises(InsufficientPoints):
        ledger.hold(member, 101, reference=ref(), expires_at=T0 + DAY, now=T0, description="x")
    db.session.rollback()
    assert journal_size() == before
    assert ledger.balances(member).available == 100


def test_pending_points_cannot_be_held(app_context, member):
    earn(member, 100, pending_until=T0 + DAY)
    with pytest.raises(InsufficientPoints):
        ledger.hold(member, 1, reference=ref(), expires_at=T0 + DAY, now=T0, description="x")


def test_hold_activates_due_points_first_so_they_can_be_spent(app_context, member):
    earn(member, 100, pending_until=T0 + DAY)
    hold(member, 100, now=T0 + DAY)
    assert ledger.balances(member) == Balances(held=100, lifetime_earned=100)


def test_hold_expires_due_points_first_so_expired_points_are_never_spent(app_context, member):
    earn(member, 100, expires_at=T0 + DAY)
    with pytest.raises(InsufficientPoints):
        ledger.hold(member, 1, reference=ref(), expires_at=T0 + 2 * DAY, now=T0 + DAY, description="x")


def test_hold_for_a_suspended_member_is_refused(app_context, new_member):
    member = new_member()
    earn(member, 100)
    db.session.execute(update(Member).where(Member.id == member).values(status="suspended"))
    db.session.commit()
    with pytest.raises(MemberSuspended):
        ledger.hold(member, 10, reference=ref(), expires_at=T0 + DAY, now=T0, description="x")


def test_hold_needs_a_future_expiry(app_context, member):
    earn(member, 100)
    with pytest.raises(ValidationProblem) as error:
        ledger.hold(member, 10, reference=ref(), expires_at=T0, now=T0, description="x")
    assert list(error.value.errors) == ["expires_at"]


def test_capture_redeems_held_points(app_context, member):
    earn(member, 100)
    held = hold(member, 40)
    txn = ledger.capture(held, now=T0)
    db.session.commit()
    assert (txn.kind, txn.points, held.status) == ("redeem", -40, "captured")
    assert ledger.balances(member) == Balances(available=60, lifetime_earned=100)
    assert_ledger_consistent()


def test_capturing_twice_answers_the_first_capture(app_context, member):
    earn(member, 100)
    held = hold(member, 40)
    first = ledger.capture(held, now=T0)
    db.session.commit()
    before = journal_size()
    assert ledger.capture(held, now=T0 + timedelta(minutes=1)).id == first.id
    assert journal_size() == before


def test_capture_after_the_hold_expired_is_refused(app_context, member):
    earn(member, 100)
    held = hold(member, 40, ttl=timedelta(minutes=30))
    with pytest.raises(HoldExpired):
        ledger.capture(held, now=T0 + timedelta(minutes=30))


def test_capture_of_a_released_hold_is_refused(app_context, member):
    earn(member, 100)
    held = hold(member, 40)
    ledger.release(held, now=T0)
    db.session.commit()
    with pytest.raises(RedemptionNotHeld):
        ledger.capture(held, now=T0)


def test_release_of_a_captured_hold_is_refused(app_context, member):
    earn(member, 100)
    held = hold(member, 40)
    ledger.capture(held, now=T0)
    db.session.commit()
    with pytest.raises(RedemptionNotHeld):
        ledger.release(held, now=T0)


def test_release_gives_points_back_to_the_lots_they_came_from(app_context, member):
    earn(member, 100, expires_at=T0 + 30 * DAY)
    earn(member, 100, expires_at=T0 + 60 * DAY)
    held = hold(member, 150)
    txn = ledger.release(held, now=T0)
    db.session.commit()
    assert (txn.kind, txn.points, held.status) == ("release", 0, "released")
    assert [(lot.remaining, lot.status) for lot in lots(member)] == [(100, "active"), (100, "active")]
    assert ledger.balances(member) == Balances(available=200, lifetime_earned=200)
    assert_ledger_consistent()


def test_releasing_twice_answers_the_first_release(app_context, member):
    earn(member, 100)
    held = hold(member, 40)
    first = ledger.release(held, now=T0)
    db.session.commit()
    assert ledger.release(held, now=T0).id == first.id


def test_points_released_after_their_lot_expired_expire_instead_of_returning(app_context, member):
    earn(member, 100, expires_at=T0 + DAY)
    held = hold(member, 60, ttl=2 * DAY)
    txn = ledger.release(held, now=T0 + DAY)
    db.session.commit()
    assert txn.points == -60
    accounts = dict(db.session.execute(select(Account.kind, Account.balance).where(Account.member_id == member)).all())
    assert (accounts["expired"], accounts["available"], accounts["held"]) == (60, 40, 0)
    assert_ledger_consistent()


def test_expired_holds_are_released_by_the_worker_call(app_context, member):
    earn(member, 100)
    hold(member, 30, ttl=timedelta(minutes=30))
    kept = hold(member, 20, ttl=timedelta(hours=2))
    released = ledger.release_expired_holds(member, T0 + timedelta(minutes=30))
    db.session.commit()
    assert len(released) == 1
    assert kept.status == "held"
    assert ledger.balances(member) == Balances(available=80, held=20, lifetime_earned=100)


# --- expiry ---------------------------------------------------------------------------------------

def test_points_expire_at_their_expiry_not_a_second_before(app_context, member):
    earn(member, 100, expires_at=T0 + 30 * DAY)
    assert ledger.settle(member, T0 + 30 * DAY - timedelta(seconds=1)) == []
    [txn] = ledger.settle(member, T0 + 30 * DAY)
    db.session.commit()
    assert (txn.kind, txn.points, txn.available_after) == ("expire", -100, 0)
    [lot] = lots(member)
    assert (lot.status, lot.remaining) == ("expired", 0)
    assert_ledger_consistent()


def test_a_lot_expires_once_however_often_settle_runs(app_context, member):
    earn(member, 100, expires_at=T0 + DAY)
    ledger.settle(member, T0 + DAY)
    db.session.commit()
    assert ledger.settle(member, T0 + 2 * DAY) == []


def test_only_the_unspent_part_of_a_lot_expires(app_context, member):
    earn(member, 100, expires_at=T0 + DAY)
    ledger.capture(hold(member, 70), now=T0)
    [txn] = ledger.settle(member, T0 + DAY)
    assert txn.points == -30


def test_expiring_lists_points_due_soon_soonest_first(app_context, member):
    earn(member, 10, expires_at=T0 + 5 * DAY)
    earn(member, 20, expires_at=T0 + 5 * DAY)
    earn(member, 30, expires_at=T0 + 20 * DAY)
    earn(member, 40, expires_at=T0 + 90 * DAY)
    soon = [(e.points, e.expires_at) for e in ledger.expiring(member, T0, T0 + 30 * DAY)]
    assert soon == [(30, T0 + 5 * DAY), (30, T0 + 20 * DAY)]


# --- adjustments --------------------------------------------------------------------------------

def test_positive_adjustment_adds_an_available_lot(app_context, member):
    txn = ledger.adjust(member, 25, reason="Goodwill", reference=ref(), now=T0)
    db.session.commit()
    assert (txn.kind, txn.points, txn.description) == ("adjust", 25, "Adjustment: Goodwill")
    assert ledger.balances(member) == Balances(available=25, lifetime_earned=0)
    assert_ledger_consistent()


def test_negative_adjustment_spends_lots(app_context, member):
    earn(member, 100)
    txn = ledger.adjust(member, -30, reason="Duplicate order", reference=ref(), now=T0)
    db.session.commit()
    assert (txn.points, txn.available_after) == (-30, 70)
    assert_ledger_consistent()


def test_negative_adjustment_never_takes_a_member_below_zero(app_context, member):
    earn(member, 100)
    with pytest.raises(InsufficientPoints):
        ledger.adjust(member, -101, reason="x", reference=ref(), now=T0)


@pytest.mark.parametrize(("points", "reason", "field"), [(0, "x", "points"), (5, "", "reason"),
                                                        (5, "   ", "reason")])
def test_adjustment_needs_points_and_a_reason(app_context, member, points, reason, field):
    with pytest.raises(ValidationProblem) as error:
        ledger.adjust(member, points, reason=reason, reference=ref(), now=T0)
    assert list(error.value.errors) == [field]


# --- refunds: clawback and restore ----------------------------------------------------------------

def test_clawback_takes_from_the_orders_pending_lot_first(app_context, member):
    earn(member, 200)
    order = earn(member, 100, pending_until=T0 + 14 * DAY)
    txn = ledger.clawback(order, 40, reference=ref(), now=T0, description="Refund of order #1")
    db.session.commit()
    assert (txn.kind, txn.points, txn.shortfall) == ("clawback", -40, 0)
    assert txn.description == "Refund of order #1: 40 points taken back"
    assert ledger.balances(member) == Balances(available=200, pending=60, lifetime_earned=260)
    assert_ledger_consistent()


def test_clawback_of_spent_points_goes_to_zero_and_records_the_shortfall(app_context, member):
    order = earn(member, 100)
    ledger.capture(hold(member, 80), now=T0)
    txn = ledger.clawback(order, 100, reference=ref(), now=T0, description="Refund")
    db.session.commit()
    assert (txn.points, txn.shortfall) == (-20, 80)
    assert txn.description == "Refund: 20 points taken back; 80 of the 100 were already spent (shortfall)"
    assert ledger.balances(member).available == 0
    assert_ledger_consistent()


def test_clawback_takes_other_available_points_before_recording_a_shortfall(app_context, member):
    order = earn(member, 100)
    ledger.capture(hold(member, 100), now=T0)
    earn(member, 30)
    txn = ledger.clawback(order, 50, reference=ref(), now=T0, description="Refund")
    assert (txn.points, txn.shortfall) == (-30, 20)


def test_partial_clawbacks_add_up_to_the_earn_and_never_more(app_context, member):
    order = earn(member, 100)
    for piece in (33, 33, 34):
        ledger.clawback(order, piece, reference=ref(), now=T0, description="Partial refund")
    db.session.commit()
    with pytest.raises(Conflict) as error:
        ledger.clawback(order, 1, reference=ref(), now=T0, description="One too many")
    assert error.value.code == "clawback_exceeds_earned"
    assert ledger.balances(member) == Balances()


def test_restore_gives_redeemed_points_back_to_their_lots(app_context, member):
    earn(member, 100, expires_at=T0 + 60 * DAY)
    held = hold(member, 80)
    ledger.capture(held, now=T0)
    txn = ledger.restore(held, 50, reference=ref(), now=T0, description="Refund of order #2")
    db.session.commit()
    assert (txn.kind, txn.points) == ("restore", 50)
    assert [lot.remaining for lot in lots(member)] == [70]
    assert ledger.balances(member).available == 70
    assert_ledger_consistent()


def test_partial_restores_never_return_more_than_was_redeemed(app_context, member):
    earn(member, 100)
    held = hold(member, 80)
    ledger.capture(held, now=T0)
    ledger.restore(held, 50, reference=ref(), now=T0, description="Refund 1")
    ledger.restore(held, 30, reference=ref(), now=T0, description="Refund 2")
    db.session.commit()
    with pytest.raises(Conflict) as error:
        ledger.restore(held, 1, reference=ref(), now=T0, description="Refund 3")
    assert error.value.code == "restore_exceeds_redeemed"
    assert ledger.balances(member).available == 100


def test_restored_points_whose_lot_expired_expire(app_context, member):
    earn(member, 100, expires_at=T0 + DAY)
    held = hold(member, 100)
    ledger.capture(held, now=T0)
    txn = ledger.restore(held, 100, reference=ref(), now=T0 + 2 * DAY, description="Late refund")
    db.session.commit()
    assert txn.points == 0
    assert ledger.balances(member).available == 0
    assert_ledger_consistent()


def test_restore_of_an_uncaptured_hold_is_refused(app_context, member):
    earn(member, 100)
    held = hold(member, 80)
    with pytest.raises(RedemptionNotHeld):
        ledger.restore(held, 10, reference=ref(), now=T0, description="x")


# --- reversal -------------------------------------------------------------------------------------

def test_reversing_an_earn_takes_its_points_back(app_context, member):
    original = earn(member, 100, pending_until=T0 + DAY)
    txn = ledger.reverse(original, reference=ref(), now=T0, reason="Test order")
    db.session.commit()
    assert (txn.kind, txn.points, txn.reverses_id) == ("adjust", -100, original.id)
    assert ledger.balances(member) == Balances()
    assert_ledger_consistent()


def test_a_transaction_is_reversed_at_most_once(app_context, member):
    original = earn(member, 100)
    ledger.reverse(original, reference=ref(), now=T0, reason="Mistake")
    db.session.commit()
    with pytest.raises(Conflict) as error:
        ledger.reverse(original, reference=ref(), now=T0, reason="Again")
    assert error.value.code == "already_reversed"


def test_reversing_spent_points_is_refused(app_context, member):
    original = earn(member, 100)
    hold(member, 10)
    with pytest.raises(InsufficientPoints):
        ledger.reverse(original, reference=ref(), now=T0, reason="Mistake")


def test_holds_cannot_be_reversed(app_context, member):
    earn(member, 100)
    held = hold(member, 10)
    with pytest.raises(Conflict) as error:
        ledger.reverse(db.session.get(JournalTransaction, held.hold_transaction_id), reference=ref(), now=T0,
                       reason="x")
    assert error.value.code == "not_reversible"


# --- idempotency ----------------------------------------------------------------------------------

def test_the_same_reference_and_fields_replay_the_first_movement(app_context, member):
    first = earn(member, 100, reference="order:ord_9:earn", order_id="ord_9")
    before = journal_size()
    again = earn(member, 100, reference="order:ord_9:earn", order_id="ord_9")
    assert again.id == first.id
    assert journal_size() == before
    assert ledger.balances(member).available == 100


def test_the_same_reference_with_other_fields_is_refused(app_context, member):
    earn(member, 100, reference="order:ord_9:earn")
    with pytest.raises(IdempotencyKeyReused):
        ledger.earn(member, 999, reference="order:ord_9:earn", description="x", now=T0)


def test_a_retried_hold_answers_the_same_hold(app_context, member):
    earn(member, 100)
    first = hold(member, 30, reference="hold:key-1")
    assert hold(member, 30, reference="hold:key-1").id == first.id
    assert ledger.balances(member).held == 30


def test_a_reference_used_by_another_member_is_refused(app_context, new_member):
    one, other = new_member(), new_member()
    earn(one, 10, reference="shared-ref")
    with pytest.raises(IdempotencyKeyReused):
        ledger.earn(other, 10, reference="shared-ref", description="Order #1", now=T0)


# --- the journal is insert-only -----------------------------------------------------------------

def test_code_cannot_edit_a_journal_transaction(app_context, member):
    txn = earn(member, 100)
    txn.points = 1_000_000
    with pytest.raises(JournalIsAppendOnly):
        db.session.flush()


def test_code_cannot_delete_a_journal_transaction(app_context, member):
    txn = earn(member, 100)
    db.session.delete(txn)
    with pytest.raises(JournalIsAppendOnly):
        db.session.flush()


@pytest.mark.parametrize("statement", [
    "UPDATE ledger_postings SET amount = amount * 2",
    "DELETE FROM ledger_postings",
    "UPDATE ledger_transactions SET points = 0",
    "DELETE FROM ledger_lot_movements",
])
def test_the_database_refuses_edits_to_the_journal(app_context, member, statement):
    earn(member, 100)
    with pytest.raises(Exception, match="insert-only"):
        db.session.execute(text(statement))
    db.session.rollback()
    assert journal_size() == (1, 2)


def test_balances_are_read_from_cached_rows_even_when_history_is_long(app_context, member):
    for _ in range(50):
        earn(member, 2)
    db.session.commit()
    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        assert ledger.balances(member).available == 100
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    statements = [s for s in statements if not s.startswith(("BEGIN", "SAVEPOINT"))]
    assert len(statements) == 1
    assert "ledger_accounts" in statements[0] and "ledger_postings" not in statements[0]
