"""`POST /v1/webhooks/stripe`: Stripe's events, verified, stored by id and applied exactly once; those that cannot
be applied kept failed with the reason, listed and retried by admins (`/v1/admin/stripe-events`).

Payloads come from `tests/stripe_events.py`, shaped as Stripe sends them. Stripe created every event at
`T0` unless a test says otherwise; the app's clock stands at `T0` and moves only when a test moves it.

The program: one point per dollar paid, pending for 14 days; a point pays one cent. A member starts with
1000 available points; a typical order is $100.00, of which 500 points pay $5.00, so $95.00 is paid by card
and earns 95 points.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from loyalty import clock
from loyalty.checkout import service as checkout
from loyalty.checkout.models import Redemption
from loyalty.extensions import db
from loyalty.jobs import service as jobs
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Account, JournalTransaction
from loyalty.ledger.service import Balances
from loyalty.ledger.verify import verify
from loyalty.members import service as members
from loyalty.offers import service as offers
from loyalty.offers.models import CouponUse
from loyalty.orders.models import Order, Refund
from loyalty.webhooks import inbound
from loyalty.webhooks.models import StripeEvent
from tests import stripe_events as se
from tests.conftest import StoppedClock, assert_problem, bearer, change_settings, publish_rules, unique_email

URL = "/v1/webhooks/stripe"
SECRET = "whsec_test_loyalty_webhooks"
TOLERANCE = 300
T0 = datetime.fromtimestamp(se.CREATED, UTC)  # when Stripe created the events, unless said otherwise
HOLD_FOR = timedelta(minutes=30)
RULES = {"earn": {"rates": {"usd": "1"}, "pending_days": 14}, "redeem": {"point_values": {"usd": "1"}}}
PENDING_UNTIL = T0 + timedelta(days=14)
START = 1000  # the member's available points
AMOUNT, POINTS, PAID, EARNED = 10_000, 500, 9_500, 95  # a $100 order, 500 points off, $95 paid, 95 points


# --- the world around the endpoint -------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def now(stop_clock) -> StoppedClock:
    return stop_clock(T0)


def configure(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    change_settings(monkeypatch, app, STRIPE_WEBHOOK_SECRET=SECRET)
    change_settings(monkeypatch, app, STRIPE_WEBHOOK_TOLERANCE_SECONDS=TOLERANCE)
    change_settings(monkeypatch, app, STRIPE_API_KEY="")  # no line items fetched: payloads alone


def publish_program(app: Flask) -> None:
    with app.app_context():
        publish_rules(RULES, at=T0 - timedelta(days=1))


@pytest.fixture(autouse=True)
def program(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(app, monkeypatch)
    publish_program(app)


@dataclass(frozen=True)
class Shopper:
    id: int
    public_id: str


def enrol(app: Flask, points: int = START) -> Shopper:
    """A member with `points` available points (no return window, no expiry)."""
    with app.app_context():
        member = members.enrol(members.NewMember(email=unique_email()), source="test")
        if points:
            ledger.earn(member.id, points, reference=f"seed:{member.public_id}",
                        description="Welcome points", now=clock.now())
        db.session.commit()
        return Shopper(member.id, member.public_id)


def arrive_late(app: Flask, public_id: str) -> Shopper:
    """The member an event named turns up (imported after the payment, say): the cause of its failure fixed."""
    shopper = enrol(app, points=0)
    with app.app_context():
        members.get_member(shopper.public_id).public_id = public_id
        db.session.commit()
    return Shopper(shopper.id, public_id)


@pytest.fixture
def member(app: Flask) -> Callable[..., Shopper]:
    return lambda points=START: enrol(app, points)


@pytest.fixture
def coupon(app: Flask) -> str:
    with app.app_context():
        offers.create_offer({"name": "Ten percent", "kind": "percent_off", "percent": 10, "code": "SAVE-TEN"})
        db.session.commit()
    return "SAVETEN"


def hold(app: Flask, shopper: Shopper, order_id: str, *, points: int = POINTS, amount: int = AMOUNT,
         coupon_code: str | None = None) -> str:
    """A redemption held for the order at the clock's time; answers its id."""
    with app.app_context():
        redemption = checkout.create_redemption(
            {"member_id": shopper.public_id, "order_id": order_id, "currency": "usd", "amount": amount,
             "points": points, "coupon_code": coupon_code}, now=clock.now(), hold_for=HOLD_FOR)
        db.session.commit()
        return redemption.public_id


# --- events as Stripe sends them ---------------------------------------------------------------------------

def metadata(shopper: Shopper | str, order_id: str, redemption_id: str | None = None) -> dict[str, str]:
    data = {"loyalty_member_id": shopper if isinstance(shopper, str) else shopper.public_id, "order_id": order_id}
    return data | ({"loyalty_redemption_id": redemption_id} if redemption_id else {})


def intent_succeeded(shopper: Shopper | str, order_id: str, *, amount: int = PAID, intent_id: str | None = None,
                     redemption_id: str | None = None, created: datetime = T0) -> dict[str, Any]:
    stamp = int(created.timestamp())
    return se.event("payment_intent.succeeded", se.payment_intent(
        amount=amount, metadata=metadata(shopper, order_id, redemption_id), intent_id=intent_id, created=stamp),
        created=stamp)


def charge_refunded(intent_id: str, charge_id: str, *, refunded: int, before: int = 0, amount: int = PAID,
                    created: datetime = T0 + timedelta(days=1)) -> dict[str, Any]:
    """`refunded` is cumulative, as Stripe's `amount_refunded`."""
    return se.event("charge.refunded", se.charge(amount=amount, amount_refunded=refunded, payment_intent=intent_id,
                                                 charge_id=charge_id),
                    created=int(created.timestamp()),
                    previous_attributes={"amount_refunded": before, "refunded": False})


def dispute_event(kind: str, intent_id: str, charge_id: str, dispute_id: str, *, status: str, amount: int,
                  created: datetime) -> dict[str, Any]:
    stamp = int(created.timestamp())
    return se.event(kind, se.dispute(amount=amount, charge=charge_id, payment_intent=intent_id, status=status,
                                     dispute_id=dispute_id, created=stamp), created=stamp)


def post(client: FlaskClient, event: dict[str, Any], **signing: Any):
    payload = se.body(event)
    return client.post(URL, data=payload, headers={"Content-Type": "application/json",
                                                   "Stripe-Signature": se.sign(payload, SECRET, **signing)})


def deliver(client: FlaskClient, event: dict[str, Any]) -> str:
    """Deliver a correctly signed event; answers the status the endpoint gives it."""
    response = post(client, event)
    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["received"], body["event_id"]) == (True, event["id"])
    return body["status"]


# --- reading the outcome -----------------------------------------------------------------------------------

def balances(app: Flask, shopper: Shopper) -> Balances:
    with app.app_context():
        return ledger.balances(shopper.id)


def redeemed(app: Flask, shopper: Shopper) -> int:
    with app.app_context():
        return db.session.scalar(select(Account.balance).where(Account.member_id == shopper.id,
                                                               Account.kind == "redeemed"))


def redemption_of(app: Flask, redemption_id: str) -> dict[str, Any]:
    with app.app_context():
        redemption = db.session.scalar(select(Redemption).where(Redemption.public_id == redemption_id))
        use = db.session.scalar(select(CouponUse.status).where(CouponUse.reference == redemption.coupon_reference))
        return {"status": redemption.status, "release_reason": redemption.release_reason,
                "problem": redemption.problem, "coupon_use": use}


def order_of(app: Flask, order_id: str) -> dict[str, Any] | None:
    with app.app_context():
        order = checkout.find_order(order_id)
        if order is None:
            return None
        return {"total_amount": order.total_amount, "points_earned": order.points_earned,
                "pending_until": order.pending_until, "paid_at": order.paid_at,
                "payment_intent_id": order.payment_intent_id, "status": order.status,
                "refunded_amount": order.refunded_amount, "points_clawed_back": order.points_clawed_back,
                "points_restored": order.points_restored, "dispute_status": order.dispute_status,
                "redemption_id": order.redemption_id is not None}


def refunds_of(app: Flask, order_id: str) -> list[tuple[str, int, int, int]]:
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            select(Refund.source, Refund.amount, Refund.points_clawed_back, Refund.points_restored)
            .join(Order, Order.id == Refund.order_id).where(Order.order_id == order_id).order_by(Refund.id))]


def journal_kinds(app: Flask, shopper: Shopper) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(select(JournalTransaction.kind).where(JournalTransaction.member_id == shopper.id)
                                       .order_by(JournalTransaction.id)))


def stored(app: Flask, event: dict[str, Any]) -> tuple[str, str | None]:
    with app.app_context():
        row = db.session.scalar(select(StripeEvent).where(StripeEvent.event_id == event["id"]))
        return row.status, row.detail


def settle(app: Flask, shopper: Shopper) -> None:
    with app.app_context():
        ledger.settle(shopper.id, clock.now())
        db.session.commit()


def no_breaches(app: Flask) -> None:
    with app.app_context():
        assert [(r.check.name, r.examples) for r in verify(db.session) if not r.ok] == []


def changes(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Rows added per table between two `row_counts()`."""
    return {table: after[table] - before[table] for table in after if after[table] != before[table]}


# --- 1. only Stripe, signing with this endpoint's secret, is heard -----------------------------------------

def _wrong_secret(payload: str) -> tuple[str, dict[str, str]]:
    return payload, {"Stripe-Signature": se.sign(payload, "whsec_someone_elses_endpoint")}


def _stale(payload: str) -> tuple[str, dict[str, str]]:
    return payload, {"Stripe-Signature": se.sign(payload, SECRET, timestamp=int(time.time()) - TOLERANCE - 60)}


def _tampered(payload: str) -> tuple[str, dict[str, str]]:
    altered = payload.replace(f'"amount_received": {PAID}', f'"amount_received": {PAID * 100}')
    assert altered != payload
    return altered, {"Stripe-Signature": se.sign(payload, SECRET)}


def _unsigned(payload: str) -> tuple[str, dict[str, str]]:
    return payload, {}


@pytest.mark.parametrize("forge", [_wrong_secret, _stale, _tampered, _unsigned],
                         ids=["wrong_secret", "stale_timestamp", "tampered_body", "missing_header"])
def test_a_delivery_that_does_not_verify_is_refused_and_changes_nothing(forge, client, app, member, row_counts):
    shopper = member()
    payload, headers = forge(se.body(intent_succeeded(shopper, "ord_forged")))
    before = row_counts()
    response = client.post(URL, data=payload, headers={"Content-Type": "application/json", **headers})
    assert_problem(response, 400, "signature_invalid")
    assert row_counts() == before
    assert balances(app, shopper) == Balances(available=START, lifetime_earned=START)


def test_without_a_configured_secret_nothing_is_accepted(client, app, member, row_counts, monkeypatch):
    shopper = member()
    change_settings(monkeypatch, app, STRIPE_WEBHOOK_SECRET="")
    before = row_counts()
    assert_problem(post(client, intent_succeeded(shopper, "ord_1")), 503, "webhook_not_configured")
    assert row_counts() == before


# --- 2. a Checkout Session paid ----------------------------------------------------------------------------

def test_a_paid_checkout_session_earns_pending_points_on_its_total_and_records_the_order(client, app, member):
    shopper = member(points=0)
    intent_id = se.new_id("pi")
    session = se.checkout_session(amount_subtotal=5000, amount_discount=500, amount_total=4500,
                                  metadata=metadata(shopper, "ord_cs"), payment_intent=intent_id)
    assert deliver(client, se.event("checkout.session.completed", session)) == "applied"
    assert balances(app, shopper) == Balances(pending=45, lifetime_earned=45)
    order = order_of(app, "ord_cs")
    assert (order["total_amount"], order["points_earned"], order["payment_intent_id"], order["status"]) == (
        4500, 45, intent_id, "paid")
    assert (order["paid_at"], order["pending_until"]) == (T0, PENDING_UNTIL)


def test_a_redelivered_checkout_session_answers_duplicate_and_changes_nothing(client, app, member, row_counts):
    shopper = member(points=0)
    event = se.event("checkout.session.completed", se.checkout_session(
        amount_subtotal=5000, amount_total=5000, metadata=metadata(shopper, "ord_cs"), payment_intent=se.new_id("pi")))
    deliver(client, event)
    before = row_counts()
    assert deliver(client, event) == "duplicate"
    assert row_counts() == before
    assert balances(app, shopper) == Balances(pending=50, lifetime_earned=50)


def test_the_payment_intent_of_a_recorded_checkout_session_does_not_earn_again(client, app, member, row_counts):
    shopper = member(points=0)
    intent_id = se.new_id("pi")
    deliver(client, se.event("checkout.session.completed", se.checkout_session(
        amount_subtotal=5000, amount_total=5000, metadata=metadata(shopper, "ord_cs"), payment_intent=intent_id)))
    before = row_counts()
    assert deliver(client, intent_succeeded(shopper, "ord_cs", amount=5000, intent_id=intent_id)) == "applied"
    assert changes(before, row_counts()) == {"stripe_events": 1}
    assert balances(app, shopper) == Balances(pending=50, lifetime_earned=50)
    assert order_of(app, "ord_cs")["points_earned"] == 50


def _session_naming_the_order(shopper: Shopper, intent_id: str) -> dict[str, Any]:
    return se.event("checkout.session.completed", se.checkout_session(
        amount_subtotal=5000, amount_total=5000, metadata=metadata(shopper, "ord_cs"), payment_intent=intent_id))


def _intent_naming_only_the_member(shopper: Shopper, intent_id: str) -> dict[str, Any]:
    return se.event("payment_intent.succeeded", se.payment_intent(
        amount=5000, intent_id=intent_id, metadata={"loyalty_member_id": shopper.public_id}))


@pytest.mark.parametrize("session_first", [True, False], ids=["session_first", "intent_first"])
def test_a_purchase_whose_intent_names_no_order_is_recorded_once_whichever_event_comes_first(
        session_first, client, app, member, row_counts):
    shopper = member(points=0)
    intent_id = se.new_id("pi")
    events = [_session_naming_the_order(shopper, intent_id), _intent_naming_only_the_member(shopper, intent_id)]
    first, second = events if session_first else events[::-1]
    assert deliver(client, first) == "applied"
    before = row_counts()
    assert deliver(client, second) == "applied"
    assert changes(before, row_counts()) == {"stripe_events": 1}
    assert balances(app, shopper) == Balances(pending=50, lifetime_earned=50)


def test_a_redemption_named_only_on_the_intent_is_captured_and_given_back_by_a_refund(client, app, member):
    shopper = member()
    redemption_id = hold(app, shopper, "ord_cs")
    intent_id = se.new_id("pi")
    deliver(client, se.event("checkout.session.completed", se.checkout_session(
        amount_subtotal=AMOUNT, amount_total=PAID, metadata=metadata(shopper, "ord_cs"), payment_intent=intent_id)))
    assert deliver(client, intent_succeeded(shopper, "ord_cs", intent_id=intent_id,
                                            redemption_id=redemption_id)) == "applied"
    assert redemption_of(app, redemption_id)["status"] == "captured"
    assert order_of(app, "ord_cs")["redemption_id"] is True
    assert deliver(client, charge_refunded(intent_id, se.new_id("ch"), refunded=PAID)) == "applied"
    assert balances(app, shopper) == Balances(available=START, lifetime_earned=START)
    assert redeemed(app, shopper) == 0


# --- 3. a PaymentIntent paid -------------------------------------------------------------------------------

def test_a_succeeded_payment_intent_earns_pending_points_on_the_amount_received(client, app, member):
    shopper = member(points=0)
    intent_id = se.new_id("pi")
    assert deliver(client, intent_succeeded(shopper, "ord_pi", amount=5000, intent_id=intent_id)) == "applied"
    assert balances(app, shopper) == Balances(pending=50, lifetime_earned=50)
    order = order_of(app, "ord_pi")
    assert (order["points_earned"], order["payment_intent_id"], order["pending_until"]) == (
        50, intent_id, PENDING_UNTIL)


def test_a_succeeded_payment_intent_captures_its_redemption_and_earns_on_what_was_paid(client, app, member):
    shopper = member()
    redemption_id = hold(app, shopper, "ord_pi")
    assert balances(app, shopper) == Balances(available=START - POINTS, held=POINTS, lifetime_earned=START)
    assert deliver(client, intent_succeeded(shopper, "ord_pi", redemption_id=redemption_id)) == "applied"
    assert redemption_of(app, redemption_id)["status"] == "captured"
    assert balances(app, shopper) == Balances(available=START - POINTS, pending=EARNED,
                                              lifetime_earned=START + EARNED)
    assert redeemed(app, shopper) == POINTS
    assert order_of(app, "ord_pi")["redemption_id"] is True


# --- 4. a failed attempt, then the retry succeeds ----------------------------------------------------------

def test_a_failed_payment_attempt_keeps_the_hold_and_the_retry_captures_once(client, app, member, coupon,
                                                                             row_counts):
    shopper = member()
    redemption_id = hold(app, shopper, "ord_retry", coupon_code=coupon)  # 10% and 500 points off $100
    intent_id = se.new_id("pi")
    failed = se.event("payment_intent.payment_failed", se.payment_intent(
        amount=8500, status="requires_payment_method", intent_id=intent_id,
        metadata=metadata(shopper, "ord_retry", redemption_id)))
    before = row_counts()
    assert deliver(client, failed) == "ignored"
    assert changes(before, row_counts()) == {"stripe_events": 1}
    assert redemption_of(app, redemption_id) == {"status": "held", "release_reason": None, "problem": None,
                                                 "coupon_use": "reserved"}
    assert balances(app, shopper) == Balances(available=START - POINTS, held=POINTS, lifetime_earned=START)

    succeeded = intent_succeeded(shopper, "ord_retry", amount=8500, intent_id=intent_id,
                                 redemption_id=redemption_id, created=T0 + timedelta(minutes=2))
    assert deliver(client, succeeded) == "applied"
    assert deliver(client, succeeded) == "duplicate"
    assert redemption_of(app, redemption_id) == {"status": "captured", "release_reason": None, "problem": None,
                                                 "coupon_use": "consumed"}
    assert balances(app, shopper) == Balances(available=START - POINTS, pending=85, lifetime_earned=START + 85)
    assert redeemed(app, shopper) == POINTS
    assert journal_kinds(app, shopper).count("redeem") == 1


# --- 5. canceled or expired: released ----------------------------------------------------------------------

def _canceled(shopper: Shopper, order_id: str, redemption_id: str) -> dict[str, Any]:
    return se.event("payment_intent.canceled", se.payment_intent(
        amount=8500, status="canceled", metadata=metadata(shopper, order_id, redemption_id)))


def _expired(shopper: Shopper, order_id: str, redemption_id: str) -> dict[str, Any]:
    return se.event("checkout.session.expired", se.checkout_session(
        amount_subtotal=AMOUNT, amount_total=8500, status="expired", payment_status="unpaid", payment_intent=None,
        metadata=metadata(shopper, order_id, redemption_id)))


@pytest.mark.parametrize(("event_of", "reason"), [(_canceled, "payment_canceled"), (_expired, "session_expired")],
                         ids=["payment_intent.canceled", "checkout.session.expired"])
def test_an_abandoned_payment_releases_the_redemption(event_of, reason, client, app, member, coupon):
    shopper = member()
    redemption_id = hold(app, shopper, "ord_gone", coupon_code=coupon)
    assert deliver(client, event_of(shopper, "ord_gone", redemption_id)) == "applied"
    assert redemption_of(app, redemption_id) == {"status": "released", "release_reason": reason, "problem": None,
                                                 "coupon_use": "released"}
    assert balances(app, shopper) == Balances(available=START, lifetime_earned=START)
    assert order_of(app, "ord_gone") is None


# --- 6. refunds, cumulative --------------------------------------------------------------------------------

@pytest.fixture
def paid_order(client, app, member) -> Callable[[], tuple[Shopper, str, str]]:
    """A $100 order paid $95 by card and 500 points; answers (member, PaymentIntent id, charge id)."""

    def pay(order_id: str = "ord_r") -> tuple[Shopper, str, str]:
        shopper = member()
        redemption_id = hold(app, shopper, order_id)
        intent_id = se.new_id("pi")
        assert deliver(client, intent_succeeded(shopper, order_id, intent_id=intent_id,
                                                redemption_id=redemption_id)) == "applied"
        return shopper, intent_id, se.new_id("ch")

    return pay


def test_partial_refunds_claw_back_and_restore_in_proportion_and_add_up_to_the_full_refund(
        client, app, paid_order):
    shopper, intent_id, charge_id = paid_order()
    thirty = PAID * 30 // 100  # 2850

    assert deliver(client, charge_refunded(intent_id, charge_id, refunded=thirty)) == "applied"
    # 30% of 95 earned is 28.5: 28 clawed back (rounded down); 30% of 500 redeemed is 150 restored.
    assert balances(app, shopper) == Balances(available=START - POINTS + 150, pending=EARNED - 28,
                                              lifetime_earned=START + EARNED - 28)
    assert redeemed(app, shopper) == POINTS - 150

    assert deliver(client, charge_refunded(intent_id, charge_id, refunded=PAID, before=thirty,
                                           created=T0 + timedelta(days=2))) == "applied"
    assert balances(app, shopper) == Balances(available=START, lifetime_earned=START)
    assert redeemed(app, shopper) == 0
    assert refunds_of(app, "ord_r") == [("stripe", thirty, 28, 150), ("stripe", PAID - thirty, 67, 350)]
    order = order_of(app, "ord_r")
    assert (order["status"], order["refunded_amount"], order["points_clawed_back"], order["points_restored"]) == (
        "refunded", PAID, EARNED, POINTS)


def test_an_older_refund_event_arriving_late_changes_nothing(client, app, paid_order, row_counts):
    shopper, intent_id, charge_id = paid_order()
    thirty, sixty = PAID * 30 // 100, PAID * 60 // 100
    first = charge_refunded(intent_id, charge_id, refunded=thirty, created=T0 + timedelta(days=1))
    second = charge_refunded(intent_id, charge_id, refunded=sixty, before=thirty, created=T0 + timedelta(days=2))
    assert deliver(client, second) == "applied"
    after_second = balances(app, shopper)
    assert after_second == Balances(available=START - POINTS + 300, pending=EARNED - 57,
                                    lifetime_earned=START + EARNED - 57)
    before = row_counts()
    assert deliver(client, first) == "applied"
    assert changes(before, row_counts()) == {"stripe_events": 1}
    assert balances(app, shopper) == after_second
    assert refunds_of(app, "ord_r") == [("stripe", sixty, 57, 300)]


# --- 7. out of order ---------------------------------------------------------------------------------------

def test_a_refund_before_its_payment_waits_and_is_applied_when_the_payment_arrives(client, app, paid_order,
                                                                                   member):
    thirty = PAID * 30 // 100
    in_order, intent_id, charge_id = paid_order("ord_in_order")
    deliver(client, charge_refunded(intent_id, charge_id, refunded=thirty))

    late = member()
    redemption_id = hold(app, late, "ord_late")
    late_intent, late_charge = se.new_id("pi"), se.new_id("ch")
    refund = charge_refunded(late_intent, late_charge, refunded=thirty)
    assert deliver(client, refund) == "waiting"
    assert balances(app, late) == Balances(available=START - POINTS, held=POINTS, lifetime_earned=START)
    assert order_of(app, "ord_late") is None

    assert deliver(client, intent_succeeded(late, "ord_late", intent_id=late_intent,
                                            redemption_id=redemption_id)) == "applied"
    assert stored(app, refund)[0] == "applied"
    assert balances(app, late) == balances(app, in_order) == Balances(
        available=START - POINTS + 150, pending=EARNED - 28, lifetime_earned=START + EARNED - 28)
    assert redeemed(app, late) == redeemed(app, in_order) == POINTS - 150
    assert refunds_of(app, "ord_late") == refunds_of(app, "ord_in_order") == [("stripe", thirty, 28, 150)]


# --- 8. disputes -------------------------------------------------------------------------------------------

@pytest.fixture
def disputed(client, app, member) -> tuple[Shopper, str, str]:
    """A $50 order paid by card (50 pending points), disputed a day later; answers (member, intent, charge)."""
    shopper = member(points=0)
    intent_id, charge_id = se.new_id("pi"), se.new_id("ch")
    deliver(client, intent_succeeded(shopper, "ord_d", amount=5000, intent_id=intent_id))
    assert deliver(client, dispute_event("charge.dispute.created", intent_id, charge_id, "du_1",
                                         status="needs_response", amount=5000,
                                         created=T0 + timedelta(days=1))) == "applied"
    assert order_of(app, "ord_d")["dispute_status"] == "open"
    return shopper, intent_id, charge_id


def test_a_dispute_freezes_pending_points_past_their_return_window(app, disputed, now):
    shopper, _, _ = disputed
    now.set(PENDING_UNTIL + timedelta(days=1))
    settle(app, shopper)
    assert balances(app, shopper) == Balances(pending=50, lifetime_earned=50)


def test_a_dispute_won_lets_the_frozen_points_activate(client, app, disputed, now):
    shopper, intent_id, charge_id = disputed
    now.set(PENDING_UNTIL + timedelta(days=1))
    assert deliver(client, dispute_event("charge.dispute.closed", intent_id, charge_id, "du_1", status="won",
                                         amount=5000, created=PENDING_UNTIL)) == "applied"
    settle(app, shopper)
    assert balances(app, shopper) == Balances(available=50, lifetime_earned=50)
    assert order_of(app, "ord_d")["dispute_status"] == "won"


def test_a_dispute_lost_claws_the_points_back(client, app, disputed, now):
    shopper, intent_id, charge_id = disputed
    now.set(PENDING_UNTIL + timedelta(days=1))
    assert deliver(client, dispute_event("charge.dispute.closed", intent_id, charge_id, "du_1", status="lost",
                                         amount=5000, created=PENDING_UNTIL)) == "applied"
    settle(app, shopper)
    assert balances(app, shopper) == Balances()
    order = order_of(app, "ord_d")
    assert (order["dispute_status"], order["status"], order["refunded_amount"]) == ("lost", "refunded", 5000)
    assert refunds_of(app, "ord_d") == [("dispute", 5000, 50, 0)]


def test_a_dispute_opening_that_arrives_after_its_closing_freezes_nothing(client, app, member, now):
    shopper = member(points=0)
    intent_id, charge_id = se.new_id("pi"), se.new_id("ch")
    deliver(client, intent_succeeded(shopper, "ord_d", amount=5000, intent_id=intent_id))
    assert deliver(client, dispute_event("charge.dispute.closed", intent_id, charge_id, "du_1", status="won",
                                         amount=5000, created=T0 + timedelta(days=10))) == "applied"
    deliver(client, dispute_event("charge.dispute.created", intent_id, charge_id, "du_1", status="needs_response",
                                  amount=5000, created=T0 + timedelta(days=1)))
    now.set(PENDING_UNTIL + timedelta(days=1))
    settle(app, shopper)
    assert balances(app, shopper) == Balances(available=50, lifetime_earned=50)
    assert order_of(app, "ord_d")["dispute_status"] == "won"


# --- 9. what the program does not act on -------------------------------------------------------------------

def _charge_succeeded(shopper: Shopper) -> dict[str, Any]:
    return se.event("charge.succeeded", se.charge(amount=5000, payment_intent=se.new_id("pi"),
                                                  metadata=metadata(shopper, "ord_x")))


def _requires_action(shopper: Shopper) -> dict[str, Any]:
    return se.event("payment_intent.requires_action", se.payment_intent(
        amount=5000, status="requires_action", metadata=metadata(shopper, "ord_x")))


@pytest.mark.parametrize("event_of", [_charge_succeeded, _requires_action],
                         ids=["charge.succeeded", "payment_intent.requires_action"])
def test_events_of_other_types_are_stored_and_ignored(event_of, client, app, member, row_counts):
    shopper = member()
    event = event_of(shopper)
    before = row_counts()
    assert deliver(client, event) == "ignored"
    assert changes(before, row_counts()) == {"stripe_events": 1}
    assert stored(app, event)[0] == "ignored"
    assert balances(app, shopper) == Balances(available=START, lifetime_earned=START)


def test_a_payment_for_an_unknown_member_is_answered_failed_and_moves_no_points(client, app, row_counts):
    event = intent_succeeded("mem_nobody", "ord_unknown")
    before = row_counts()
    assert deliver(client, event) == "failed"
    assert changes(before, row_counts()) == {"stripe_events": 1}
    status, detail = stored(app, event)
    assert status == "failed" and detail.startswith("validation_error")


# --- 10. a hold lapsing while the customer pays ------------------------------------------------------------

def test_a_payment_made_before_the_hold_expired_captures_it_however_late_it_is_heard(client, app, member, now):
    shopper = member()
    now.set(T0 - timedelta(minutes=20))
    redemption_id = hold(app, shopper, "ord_slow")  # expires at T0 + 10 minutes
    now.set(T0 + timedelta(minutes=45))
    assert deliver(client, intent_succeeded(shopper, "ord_slow", redemption_id=redemption_id,
                                            created=T0)) == "applied"
    assert redemption_of(app, redemption_id)["status"] == "captured"
    assert balances(app, shopper) == Balances(available=START - POINTS, pending=EARNED,
                                              lifetime_earned=START + EARNED)
    assert redeemed(app, shopper) == POINTS
    assert order_of(app, "ord_slow")["paid_at"] == T0


def _lapse(app: Flask, shopper: Shopper, now: StoppedClock, order_id: str) -> str:
    """A redemption whose hold expired and was released by the worker before the payment was made."""
    now.set(T0 - timedelta(minutes=40))
    redemption_id = hold(app, shopper, order_id)  # expires at T0 - 10 minutes
    now.set(T0 - timedelta(minutes=5))
    with app.app_context():
        assert jobs.release_expired_holds(clock.now()) == {"released": 1}
    assert redemption_of(app, redemption_id)["release_reason"] == "expired"
    assert balances(app, shopper) == Balances(available=START, lifetime_earned=START)
    now.set(T0 + timedelta(minutes=1))
    return redemption_id


def test_a_payment_after_the_hold_was_released_takes_the_points_again(client, app, member, now):
    shopper = member()
    redemption_id = _lapse(app, shopper, now, "ord_lapsed")
    assert deliver(client, intent_succeeded(shopper, "ord_lapsed", redemption_id=redemption_id)) == "applied"
    assert redemption_of(app, redemption_id) == {"status": "captured", "release_reason": None, "problem": None,
                                                 "coupon_use": None}
    assert balances(app, shopper) == Balances(available=START - POINTS, pending=EARNED,
                                              lifetime_earned=START + EARNED)
    assert redeemed(app, shopper) == POINTS


@pytest.mark.real_commits  # threads, each with a connection of its own
def test_a_payment_after_the_hold_was_released_records_a_problem_when_the_points_are_gone(client, app, member,
                                                                                          now):
    shopper = member()
    redemption_id = _lapse(app, shopper, now, "ord_lapsed")
    now.set(T0 - timedelta(minutes=2))
    hold(app, shopper, "ord_other", points=800)  # the points go to another checkout meanwhile
    now.set(T0 + timedelta(minutes=1))
    assert deliver(client, intent_succeeded(shopper, "ord_lapsed", redemption_id=redemption_id)) == "applied"
    redemption = redemption_of(app, redemption_id)
    assert (redemption["status"], redemption["release_reason"]) == ("released", "expired")
    assert redemption["problem"].startswith("Paid after the hold lapsed; the 500 points could not be taken again")
    assert balances(app, shopper) == Balances(available=START - 800, pending=EARNED, held=800,
                                              lifetime_earned=START + EARNED)
    assert redeemed(app, shopper) == 0
    assert order_of(app, "ord_lapsed")["points_earned"] == EARNED


# --- 11. redeliveries racing each other, on PostgreSQL -----------------------------------------------------

def deliver_at_once(app, payload: str, times: int) -> list[tuple[int, str]]:
    """The signed `payload` delivered `times` times at once, each on a connection of its own; answers each
    delivery's (status code, event status)."""
    headers = {"Content-Type": "application/json", "Stripe-Signature": se.sign(payload, SECRET)}
    barrier = threading.Barrier(times)

    def send(_: int) -> tuple[int, str]:
        client = app.test_client()
        barrier.wait()
        response = client.post(URL, data=payload, headers=headers)
        return response.status_code, response.get_json().get("status")

    with ThreadPoolExecutor(max_workers=times) as pool:
        return list(pool.map(send, range(times)))


def test_the_same_payment_delivered_five_times_at_once_applies_once(pg, monkeypatch):
    configure(pg, monkeypatch)
    publish_program(pg)
    shopper = enrol(pg, points=0)
    event = intent_succeeded(shopper, "ord_race", amount=5000)
    payload = se.body(event)
    results = deliver_at_once(pg, payload, 5)
    assert sorted(results) == [(200, "applied")] + [(200, "duplicate")] * 4
    with pg.app_context():
        assert db.session.scalar(select(func.count()).select_from(Order)) == 1
        assert db.session.scalar(select(func.count()).select_from(StripeEvent)) == 1
        assert db.session.scalars(select(JournalTransaction.kind)
                                  .where(JournalTransaction.member_id == shopper.id)).all() == ["earn"]
    assert balances(pg, shopper) == Balances(pending=50, lifetime_earned=50)
    no_breaches(pg)


def test_a_failed_event_delivered_five_times_at_once_after_its_cause_is_fixed_applies_once(pg, monkeypatch):
    configure(pg, monkeypatch)
    publish_program(pg)
    event = intent_succeeded("mem_imported_later", "ord_race", amount=5000)
    payload = se.body(event)
    assert deliver_at_once(pg, payload, 1) == [(200, "failed")]
    shopper = arrive_late(pg, "mem_imported_later")

    results = deliver_at_once(pg, payload, 5)
    assert sorted(results) == [(200, "applied")] + [(200, "duplicate")] * 4
    assert journal_kinds(pg, shopper) == ["earn"]
    assert balances(pg, shopper) == Balances(pending=50, lifetime_earned=50)
    no_breaches(pg)


# --- 12. the whole journey ---------------------------------------------------------------------------------

def test_quote_redeem_pay_and_refund_through_http_leave_the_ledger_whole(client, app, member, make_api_key):
    shopper = member()
    shop = bearer(make_api_key("checkout"))
    lines = [{"sku": "TEE-1", "category": "apparel", "quantity": 2, "unit_amount": AMOUNT // 2}]

    quote = client.post("/v1/checkout/quote", headers=shop, json={
        "member_id": shopper.public_id, "currency": "usd", "lines": lines, "points": POINTS})
    assert quote.status_code == 200, quote.get_data(as_text=True)
    body = quote.get_json()
    assert (body["redeem"]["discount_amount"], body["total_amount"], body["earn"]["points"]) == (
        POINTS, PAID, EARNED)

    request = {"member_id": shopper.public_id, "order_id": "ord_journey", "currency": "usd", "amount": AMOUNT,
               "points": POINTS}
    created = client.post("/v1/redemptions", headers={**shop, "Idempotency-Key": "journey-1"}, json=request)
    assert created.status_code == 201, created.get_data(as_text=True)
    redemption = created.get_json()
    assert (redemption["status"], redemption["points"], redemption["discount_amount"]) == ("held", POINTS, POINTS)
    replay = client.post("/v1/redemptions", headers={**shop, "Idempotency-Key": "journey-1"}, json=request)
    assert (replay.status_code, replay.get_json()) == (201, redemption)

    intent_id, charge_id = se.new_id("pi"), se.new_id("ch")
    assert deliver(client, intent_succeeded(shopper, "ord_journey", amount=body["total_amount"],
                                            intent_id=intent_id, redemption_id=redemption["id"])) == "applied"
    assert client.get(f"/v1/redemptions/{redemption['id']}", headers=shop).get_json()["status"] == "captured"
    assert balances(app, shopper) == Balances(available=START - POINTS, pending=EARNED,
                                              lifetime_earned=START + EARNED)

    half = PAID // 2
    assert deliver(client, charge_refunded(intent_id, charge_id, refunded=half)) == "applied"
    assert balances(app, shopper) == Balances(available=START - POINTS + 250, pending=EARNED - 47,
                                              lifetime_earned=START + EARNED - 47)
    assert deliver(client, charge_refunded(intent_id, charge_id, refunded=PAID, before=half,
                                           created=T0 + timedelta(days=2))) == "applied"

    summary = client.get(f"/v1/members/{shopper.public_id}", headers=bearer(make_api_key("members:read")))
    assert summary.get_json()["points"] == {"available": START, "pending": 0, "held": 0, "lifetime_earned": START}
    assert journal_kinds(app, shopper) == ["earn", "hold", "redeem", "earn", "clawback", "restore", "clawback",
                                           "restore"]
    no_breaches(app)


# --- 13. a signed event that cannot be applied: kept failed with the reason, answered 200 ------------------

def _intent_with(change: Callable[[dict[str, Any]], None]) -> Callable[[Shopper, str], dict[str, Any]]:
    """A payment_intent.succeeded paying the held redemption, with its object changed by `change`."""
    def build(shopper: Shopper, redemption_id: str) -> dict[str, Any]:
        event = intent_succeeded(shopper, "ord_bad", redemption_id=redemption_id)
        change(event["data"]["object"])
        return event
    return build


def _session_with(change: Callable[[dict[str, Any]], None]) -> Callable[[Shopper, str], dict[str, Any]]:
    def build(shopper: Shopper, redemption_id: str) -> dict[str, Any]:
        session = se.checkout_session(amount_subtotal=AMOUNT, amount_total=PAID, payment_intent=se.new_id("pi"),
                                      metadata=metadata(shopper, "ord_bad", redemption_id))
        change(session)
        return se.event("checkout.session.completed", session)
    return build


def _refund_with(change: Callable[[dict[str, Any]], None]) -> Callable[[Shopper, str], dict[str, Any]]:
    def build(shopper: Shopper, redemption_id: str) -> dict[str, Any]:
        event = charge_refunded(se.new_id("pi"), se.new_id("ch"), refunded=PAID)
        change(event["data"]["object"])
        return event
    return build


def _set(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda obj: obj.update(values)


def _drop(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda obj: obj.pop(name)


def _set_metadata(**values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda obj: obj["metadata"].update(values)


ORDER_ID_TOO_LONG = "At most 128 characters: the program keeps order ids of up to 128."
MALFORMED = [
    pytest.param(_intent_with(_set(amount_received=str(PAID))), "amount_received: Not a valid integer.",
                 id="amount_received a string"),
    pytest.param(_intent_with(_drop("currency")), "currency: Missing data for required field.",
                 id="currency missing"),
    pytest.param(_intent_with(_set(metadata=[["order_id", "ord_bad"]])),
                 "metadata: Must be an object of keys and values.", id="metadata a list"),
    pytest.param(_intent_with(_set_metadata(order_id="o" * 300)), f"metadata.order_id: {ORDER_ID_TOO_LONG}",
                 id="metadata.order_id of 300 characters"),
    pytest.param(_intent_with(_set(amount_received=-1)), "amount_received: Must be greater than or equal to 0 and "
                 "less than or equal to 1000000000000.", id="amount_received negative"),
    pytest.param(_intent_with(_set_metadata(loyalty_member_id="mem_\x00")),
                 "metadata.loyalty_member_id: Must not contain NUL characters or lone surrogates.",
                 id="a NUL in the member id"),
    pytest.param(_session_with(_set(currency=None)), "currency: A paid session has a currency.",
                 id="a paid session without currency"),
    pytest.param(_session_with(_set(amount_total="9500")), "amount_total: Not a valid integer.",
                 id="a session's amount_total a string"),
    pytest.param(_refund_with(_set(amount_refunded=1.5)), "amount_refunded: Not a valid integer.",
                 id="a refund's amount_refunded a float"),
]


@pytest.mark.parametrize(("event_of", "reason"), MALFORMED)
def test_a_signed_event_that_does_not_fit_its_schema_is_kept_failed_with_the_reason_and_changes_nothing_else(
        event_of, reason, client, app, member, row_counts):
    shopper = member()
    redemption_id = hold(app, shopper, "ord_bad")
    event = event_of(shopper, redemption_id)
    before = row_counts()
    assert deliver(client, event) == "failed"
    assert changes(before, row_counts()) == {"stripe_events": 1}
    assert stored(app, event) == ("failed", f"invalid_payload: {reason}")
    assert redemption_of(app, redemption_id)["status"] == "held"
    assert balances(app, shopper) == Balances(available=START - POINTS, held=POINTS, lifetime_earned=START)


def test_every_reason_an_event_fails_is_kept(client, app, member):
    event = intent_succeeded(member(), "ord_bad")
    event["data"]["object"].pop("currency")
    event["data"]["object"]["amount_received"] = "lots"
    deliver(client, event)
    assert stored(app, event)[1] == ("invalid_payload: amount_received: Not a valid integer.; "
                                     "currency: Missing data for required field.")


def test_a_setup_session_takes_no_payment_and_is_ignored(client, app, member):
    session = se.checkout_session(amount_subtotal=0, amount_total=0, payment_status="no_payment_required",
                                  payment_intent=None, metadata=metadata(member(), "ord_setup"))
    session.update(mode="setup", currency=None, amount_subtotal=None, amount_total=None)
    assert deliver(client, se.event("checkout.session.completed", session)) == "ignored"
    assert order_of(app, "ord_setup") is None


def test_a_type_the_program_does_not_handle_is_stored_ignored_whatever_its_object(client, app, row_counts):
    event = se.event("customer.created", {"id": "cus_1", "object": "customer", "metadata": ["not", "a", "dict"]})
    before = row_counts()
    assert deliver(client, event) == "ignored"
    assert changes(before, row_counts()) == {"stripe_events": 1}


def test_a_failed_event_delivered_again_is_tried_again_and_still_changes_nothing_while_it_fails(
        client, app, row_counts):
    event = intent_succeeded("mem_nobody", "ord_unknown")
    assert deliver(client, event) == "failed"
    before = row_counts()
    assert deliver(client, event) == "failed"
    assert row_counts() == before
    assert stored(app, event) == ("failed", "validation_error: Invalid input (member_id: No member has this id.)")


def _then(error: Exception) -> Callable[..., Any]:
    """The payment's handler as it is, then `error`: a bug, or the database going away, after real work."""
    schema, handler = inbound.HANDLERS["payment_intent.succeeded"]

    def failing(*args: Any) -> Any:
        handler(*args)
        raise error
    return schema, failing


def test_a_bug_while_applying_an_event_rolls_its_effects_back_and_keeps_it_failed_for_a_retry(
        client, app, member, row_counts, monkeypatch):
    shopper = member(points=0)
    monkeypatch.setitem(inbound.HANDLERS, "payment_intent.succeeded", _then(KeyError("amount")))
    event = intent_succeeded(shopper, "ord_bug", amount=5000)
    before = row_counts()
    assert deliver(client, event) == "failed"
    assert changes(before, row_counts()) == {"stripe_events": 1}
    assert stored(app, event) == ("failed", "internal_error: KeyError while applying it; see the logs.")
    monkeypatch.undo()  # the fix, deployed
    configure(app, monkeypatch)
    assert deliver(client, event) == "applied"
    assert balances(app, shopper) == Balances(pending=50, lifetime_earned=50)


def test_an_event_met_by_a_database_outage_is_not_stored_so_stripe_delivers_it_again(client, app, member,
                                                                                     row_counts, monkeypatch):
    monkeypatch.setitem(inbound.HANDLERS, "payment_intent.succeeded",
                        _then(OperationalError("SELECT 1", {}, Exception("server closed the connection"))))
    event = intent_succeeded(member(points=0), "ord_outage", amount=5000)
    before = row_counts()
    response = post(client, event)
    assert response.status_code >= 500 and response.mimetype == "application/problem+json"
    assert row_counts() == before


# --- 14. staff: waiting and failed events, retried ---------------------------------------------------------

ADMIN_EVENTS = "/v1/admin/stripe-events"


@pytest.fixture
def admin_api(client, make_api_key) -> Callable[..., Any]:
    """Call the admin API with a key of scope admin: `admin_api("get", path)`."""
    headers = bearer(make_api_key("admin"))
    return lambda method, path, **options: client.open(path, method=method.upper(), headers=headers, **options)


def test_a_failed_event_retried_after_its_cause_is_fixed_is_applied_once(client, app, admin_api, row_counts):
    event = intent_succeeded("mem_imported_later", "ord_late_member", amount=5000)
    assert deliver(client, event) == "failed"
    shopper = arrive_late(app, "mem_imported_later")

    response = admin_api("post", f"{ADMIN_EVENTS}/{event['id']}/retry")

    assert response.status_code == 200, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["id"], body["status"], body["detail"], body["overdue"]) == (
        event["id"], "applied", "Order ord_late_member earned 50 points.", False)
    assert body["applied_at"] == T0.isoformat()
    assert balances(app, shopper) == Balances(pending=50, lifetime_earned=50)
    before = row_counts()
    assert_problem(admin_api("post", f"{ADMIN_EVENTS}/{event['id']}/retry"), 409, "stripe_event_settled")
    assert deliver(client, event) == "duplicate"
    assert row_counts() == before
    assert journal_kinds(app, shopper) == ["earn"]


def test_a_failed_event_delivered_again_after_its_cause_is_fixed_is_applied(client, app):
    event = intent_succeeded("mem_imported_later", "ord_late_member", amount=5000)
    deliver(client, event)
    shopper = arrive_late(app, "mem_imported_later")
    assert deliver(client, event) == "applied"
    assert deliver(client, event) == "duplicate"
    assert balances(app, shopper) == Balances(pending=50, lifetime_earned=50)


def test_a_waiting_event_retried_before_its_payment_still_waits_and_changes_nothing(client, app, admin_api,
                                                                                    row_counts):
    refund = charge_refunded(se.new_id("pi"), se.new_id("ch"), refunded=PAID)
    assert deliver(client, refund) == "waiting"
    before = row_counts()
    response = admin_api("post", f"{ADMIN_EVENTS}/{refund['id']}/retry")
    assert (response.status_code, response.get_json()["status"]) == (200, "waiting")
    assert changes(before, row_counts()) == {"audit_log": 1}


def test_retrying_an_unknown_event_is_404(admin_api):
    assert_problem(admin_api("post", f"{ADMIN_EVENTS}/evt_never_sent/retry"), 404, "not_found")


@pytest.fixture
def one_of_each(client, app, member) -> dict[str, str]:
    """Four events, one per status, received in this order; answers their ids by status."""
    shopper = member(points=0)
    events = {"applied": intent_succeeded(shopper, "ord_ok", amount=5000),
              "failed": intent_succeeded("mem_nobody", "ord_unknown"),
              "waiting": charge_refunded(se.new_id("pi"), se.new_id("ch"), refunded=PAID),
              "ignored": _charge_succeeded(shopper)}
    for status, event in events.items():
        assert deliver(client, event) == status
    return {status: event["id"] for status, event in events.items()}


def listed(admin_api, query: str = "") -> list[tuple[str, str]]:
    response = admin_api("get", f"{ADMIN_EVENTS}{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return [(event["id"], event["status"]) for event in response.get_json()["data"]]


@pytest.mark.parametrize("status", ["failed", "waiting", "applied", "ignored"])
def test_the_admin_list_filters_by_status(status, one_of_each, admin_api):
    assert listed(admin_api, f"?status={status}") == [(one_of_each[status], status)]


def test_the_admin_list_is_newest_first_and_paginated(one_of_each, admin_api):
    everything = [(one_of_each[status], status) for status in ("ignored", "waiting", "failed", "applied")]
    assert listed(admin_api) == everything
    first = admin_api("get", f"{ADMIN_EVENTS}?limit=3").get_json()
    assert ([event["id"] for event in first["data"]], first["has_more"]) == ([i for i, _ in everything[:3]], True)
    rest = admin_api("get", f"{ADMIN_EVENTS}?limit=3&starting_after={everything[2][0]}").get_json()
    assert ([event["id"] for event in rest["data"]], rest["has_more"]) == ([everything[3][0]], False)


def test_a_failed_event_is_listed_with_its_reason(one_of_each, admin_api):
    [event] = admin_api("get", f"{ADMIN_EVENTS}?status=failed").get_json()["data"]
    assert event == {"id": one_of_each["failed"], "type": "payment_intent.succeeded", "object_id": event["object_id"],
                     "livemode": False, "created": T0.isoformat(), "status": "failed",
                     "detail": "validation_error: Invalid input (member_id: No member has this id.)",
                     "waiting_for": None, "overdue": False, "received_at": T0.isoformat(), "applied_at": None}
    assert event["object_id"].startswith("pi_")


@pytest.mark.parametrize("query", ["?status=refunded", "?overdue=maybe", "?limit=0", "?starting_after=evt_nope"])
def test_a_bad_list_query_is_422(query, admin_api):
    assert_problem(admin_api("get", f"{ADMIN_EVENTS}{query}"), 422, "validation_error")


def test_a_waiting_event_is_overdue_once_it_has_waited_the_configured_hours(one_of_each, admin_api, now, app,
                                                                          monkeypatch):
    waiting = one_of_each["waiting"]
    now.set(T0 + timedelta(hours=24) - timedelta(seconds=1))
    assert listed(admin_api, "?overdue=true") == []
    now.set(T0 + timedelta(hours=24))
    assert listed(admin_api, "?overdue=true") == [(waiting, "waiting")]
    assert [e["overdue"] for e in admin_api("get", ADMIN_EVENTS).get_json()["data"]] == [False, True, False, False]
    assert waiting not in [event_id for event_id, _ in listed(admin_api, "?overdue=false")]
    change_settings(monkeypatch, app, STRIPE_WAITING_OVERDUE_HOURS=48)
    assert listed(admin_api, "?overdue=true") == []


@pytest.mark.parametrize("role", ["manager", "support", "analyst"])
def test_only_admins_see_and_retry_stripe_events(role, one_of_each, staff_client, make_api_key, row_counts):
    session = staff_client(role)
    checkout_key = bearer(make_api_key("checkout"))
    before = row_counts()
    assert_problem(session.get(ADMIN_EVENTS), 403, "forbidden")
    assert_problem(session.post(f"{ADMIN_EVENTS}/{one_of_each['failed']}/retry"), 403, "forbidden")
    assert_problem(session.get(ADMIN_EVENTS, headers=checkout_key), 403, "forbidden")
    assert row_counts() == before
