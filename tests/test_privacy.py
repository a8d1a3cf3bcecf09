"""Privacy: consent per purpose with its history, consent in outbound events, the export of everything held on a
member, and erasure.

The story most tests share (`story`): Ada enrols with her name, birthday, the shop's customer id and a yes to
marketing email, and gets 1000 points from support. She pays a $50 order (50 points, pending for 14 days, which
takes her to silver), redeems 200 points and the public code SAVE10 on another order (captured), holds 100 points
on a third checkout (left held), claims a 300-point reward, and the shop refunds $10 of the $50 order (10 points
clawed back). So she has 400 points available, 40 pending and 100 held. Bob, a bystander, has a history of his own.
The clock stands at T0 unless a test moves it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from loyalty.checkout.models import Redemption
from loyalty.extensions import db
from loyalty.jobs import service as jobs
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Account, JournalTransaction, Lot
from loyalty.ledger.service import Balances
from loyalty.ledger.verify import program_totals, verify
from loyalty.members import service as members
from loyalty.members.models import Member
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.orders.models import Order
from loyalty.tiers import service as tiers
from loyalty.webhooks import delivery, outbound
from loyalty.webhooks.models import OutboxEvent, StripeEvent
from loyalty.writes import StoredResponse
from tests import stripe_events as se
from tests.conftest import PASSWORD, StoppedClock, assert_problem, bearer, change_settings, publish_rules
from tests.queries import counting_queries

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
AFTER = T0 + 12 * HOUR  # the clock once the story is told
RULES = {"earn": {"rates": {"usd": "1"}, "pending_days": 14},
         "redeem": {"point_values": {"usd": "1"}, "max_share_percent": 50}}
LADDER = [
    {"code": "member", "name": "Member", "rank": 0, "threshold": 0, "basis": "points", "window_days": 365},
    {"code": "silver", "name": "Silver", "rank": 1, "threshold": 40, "basis": "points", "window_days": 365},
]
ADA = {"email": "ada.lovelace@example.test", "name": "Ada Lovelace", "birthday": date(1990, 12, 10),
       "external_id": "shop-customer-1815"}
LINES = [{"sku": "TEE-1", "quantity": 2, "unit_amount": 2500}]  # $50.00
NEVER_ANSWERED = {"granted": False, "source": None, "recorded_at": None}
STRIPE_SECRET = "whsec_privacy"


@pytest.fixture(autouse=True)
def clock(stop_clock) -> StoppedClock:
    return stop_clock(T0)


@pytest.fixture(autouse=True)
def program(in_app):
    with in_app():
        publish_rules(RULES, at=T0 - HOUR)
        for fields in LADDER:
            tiers.create_tier({**fields, "earn_multiplier": Decimal("1")})
        offers.create_offer({"name": "Ten percent", "kind": "percent_off", "percent": 10, "code": "SAVE10"})
        db.session.commit()


class Caller:
    """A test client that sends the same headers with every request."""

    def __init__(self, client: FlaskClient, headers: dict[str, str] | None = None) -> None:
        self.client, self.headers = client, headers or {}

    def get(self, path: str):
        return self.client.get(path, headers=self.headers)

    def post(self, path: str, body: dict | None = None, **headers: str):
        return self.client.post(path, json=body, headers={**self.headers, **headers})

    def delete(self, path: str, body: dict | None = None):
        return self.client.delete(path, json=body, headers=self.headers)


@pytest.fixture
def shop(client, make_api_key) -> Caller:
    return Caller(client, bearer(make_api_key("checkout", "members:read", "members:write")))


@pytest.fixture
def admin_key(app: Flask, make_api_key) -> Caller:
    return Caller(app.test_client(), bearer(make_api_key("admin")))


@pytest.fixture
def support(staff_client) -> Caller:
    return Caller(staff_client("support"))


@pytest.fixture
def sign_in(app: Flask) -> Callable[[str], Caller]:
    def signed_in(email: str) -> Caller:
        client = app.test_client()
        response = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert response.status_code == 200, response.get_data(as_text=True)
        return Caller(client)

    return signed_in


@pytest.fixture
def member(make_member, sign_in) -> Callable[..., tuple[Caller, str]]:
    """A new member, signed in; answers the session and the member's id."""

    def make(**fields: Any) -> tuple[Caller, str]:
        made = make_member(**fields)
        return sign_in(made["email"]), made["id"]

    return make


def _internal(public_id: str) -> int:
    return members.get_member(public_id).id


# --- The story ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Story:
    ada: Caller  # Ada's session
    id: str
    captured: str  # the redemption paid for
    held: str  # the redemption still held
    reward: str
    coupon: str  # the code the reward gave her
    bystander: str


def _redeem(shop: Caller, member_id: str, order_id: str, **fields: Any) -> str:
    response = shop.post("/v1/redemptions", {"member_id": member_id, "order_id": order_id, "currency": "usd",
                                             "amount": 5000, **fields}, **{"Idempotency-Key": f"key-{order_id}"})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


def _live_a_little(shop: Caller, session: Caller, member_id: str, prefix: str, reward: str, in_app,
                   clock: StoppedClock) -> tuple[str, str, str]:
    """Support's 1000 points, then an hour apart: a $50 order, a captured and a held redemption, a reward, a $10
    refund."""
    with in_app():
        ledger.adjust(_internal(member_id), 1000, reason="Welcome", reference=f"welcome:{member_id}",
                      now=clock())
        db.session.commit()
    clock.travel(HOUR)
    paid = shop.post("/v1/orders", {"order_id": f"{prefix}-ord-1", "member_id": member_id, "currency": "usd",
                                    "lines": LINES, "total_amount": 5000})
    assert paid.status_code == 201, paid.get_data(as_text=True)
    clock.travel(HOUR)
    captured = _redeem(shop, member_id, f"{prefix}-ord-2", points=200, coupon_code="SAVE10")
    assert shop.post(f"/v1/redemptions/{captured}/capture").status_code == 200
    clock.travel(HOUR)
    held = _redeem(shop, member_id, f"{prefix}-ord-3", points=100)
    clock.travel(HOUR)
    claimed = session.post(f"/v1/me/rewards/{reward}/claim", {})
    assert claimed.status_code == 201, claimed.get_data(as_text=True)
    clock.travel(HOUR)
    refunded = shop.post(f"/v1/orders/{prefix}-ord-1/refunds", {"refund_id": "re-1", "amount": 1000})
    assert refunded.status_code == 201, refunded.get_data(as_text=True)
    return captured, held, claimed.get_json()["code"]


@pytest.fixture
def story(in_app, shop, member, clock) -> Story:
    with in_app():
        offer = offers.create_offer({"name": "Free shipping", "kind": "free_shipping"})
        reward = catalog.create_reward({"offer_id": offer.public_id, "name": "Free shipping",
                                        "points_cost": 300}).public_id
        db.session.commit()
    bob, bob_id = member(email="bob@example.test", name="Bob Bystander", marketing_consent=False)
    ada, ada_id = member(**ADA, marketing_consent=True)
    captured, held, coupon = _live_a_little(shop, ada, ada_id, "ada", reward, in_app, clock)
    clock.travel(HOUR)
    _live_a_little(shop, bob, bob_id, "bob", reward, in_app, clock)
    clock.set(AFTER)
    return Story(ada, ada_id, captured, held, reward, coupon, bob_id)


def balances(member_id: str) -> Balances:
    return ledger.balances(_internal(member_id))


def accounts(member_id: str) -> dict[str, int]:
    return dict(db.session.execute(select(Account.kind, Account.balance)
                                   .where(Account.member_id == _internal(member_id))).all())


def test_the_story_leaves_ada_400_available_40_pending_and_100_held(story, in_app):
    with in_app():
        assert balances(story.id) == Balances(available=400, pending=40, held=100, lifetime_earned=40)


# --- Consent ------------------------------------------------------------------------------------------------------

def test_a_member_who_never_answered_has_no_consent_and_no_history(member):
    session, member_id = member()

    response = session.get("/v1/me/consents")

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json() == {"member_id": member_id, "history": [],
                                   "current": {"marketing_email": NEVER_ANSWERED, "sms": NEVER_ANSWERED,
                                               "personalised_offers": NEVER_ANSWERED}}


def test_a_grant_is_kept_with_its_time_and_source_member(member):
    session, _ = member()

    response = session.post("/v1/me/consents", {"purpose": "sms", "granted": True})

    assert response.status_code == 200, response.get_data(as_text=True)
    state = response.get_json()
    assert state["current"]["sms"] == {"granted": True, "source": "member", "recorded_at": T0.isoformat()}
    assert state["history"] == [{"purpose": "sms", "granted": True, "source": "member",
                                 "recorded_at": T0.isoformat()}]
    assert session.get("/v1/me/consents").get_json() == state


def test_a_withdrawal_is_in_force_and_the_grant_stays_in_the_history_newest_first(member, clock):
    session, _ = member()
    session.post("/v1/me/consents", {"purpose": "marketing_email", "granted": True})
    clock.travel(timedelta(days=3))

    state = session.post("/v1/me/consents", {"purpose": "marketing_email", "granted": False}).get_json()

    withdrawn_at = (T0 + timedelta(days=3)).isoformat()
    assert state["current"]["marketing_email"] == {"granted": False, "source": "member", "recorded_at": withdrawn_at}
    assert [(h["granted"], h["recorded_at"]) for h in state["history"]] == [(False, withdrawn_at),
                                                                           (True, T0.isoformat())]
    assert state["current"]["sms"] == state["current"]["personalised_offers"] == NEVER_ANSWERED


def test_giving_the_answer_in_force_again_records_nothing(member, clock, row_counts):
    session, _ = member()
    first = session.post("/v1/me/consents", {"purpose": "personalised_offers", "granted": True}).get_json()
    clock.travel(HOUR)
    before = row_counts()

    again = session.post("/v1/me/consents", {"purpose": "personalised_offers", "granted": True})

    assert again.status_code == 200
    assert again.get_json() == first
    assert row_counts() == before


def test_a_first_no_is_recorded_so_the_refusal_has_a_time_and_source(member):
    session, _ = member()

    state = session.post("/v1/me/consents", {"purpose": "sms", "granted": False}).get_json()

    assert state["current"]["sms"] == {"granted": False, "source": "member", "recorded_at": T0.isoformat()}
    assert len(state["history"]) == 1


def test_the_answer_given_at_signup_is_the_current_marketing_email_consent(client):
    client.post("/v1/signup", json={"email": "new@example.test", "password": PASSWORD, "marketing_consent": True})

    state = client.get("/v1/me/consents").get_json()

    assert state["current"]["marketing_email"] == {"granted": True, "source": "signup",
                                                   "recorded_at": T0.isoformat()}


def test_the_shop_records_an_answer_with_source_api_and_reads_it_back(shop, make_member):
    member_id = make_member()["id"]

    response = shop.post(f"/v1/members/{member_id}/consents", {"purpose": "sms", "granted": True})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["current"]["sms"]["source"] == "api"
    assert shop.get(f"/v1/members/{member_id}/consents").get_json() == response.get_json()


def test_support_records_an_answer_with_source_staff(support, make_member):
    member_id = make_member()["id"]

    response = support.post(f"/v1/members/{member_id}/consents", {"purpose": "marketing_email", "granted": False})

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["history"][0]["source"] == "staff"


def test_a_change_of_consent_is_an_event_for_the_shops_tools(member, in_app):
    session, member_id = member()

    session.post("/v1/me/consents", {"purpose": "sms", "granted": True})

    with in_app():
        [event] = db.session.scalars(select(OutboxEvent).where(OutboxEvent.type == "consent.changed")).all()
        assert event.member_id == _internal(member_id)
        assert event.data == {"purpose": "sms", "granted": True, "source": "member", "recorded_at": T0.isoformat()}


def test_consents_of_answers_each_members_latest_answer_per_purpose_in_one_query(make_member, in_app):
    first, second, silent = (make_member()["id"] for _ in range(3))
    with in_app():
        one, two, three = (members.get_member(m) for m in (first, second, silent))
        members.record_consent(one, "sms", True, source="test")
        members.record_consent(one, "sms", False, source="test")
        members.record_consent(one, "marketing_email", True, source="test")
        members.record_consent(two, "personalised_offers", True, source="test")
        ids = [one.id, two.id, three.id]
        db.session.flush()

        with counting_queries() as statements:
            states = members.consents_of(ids)

    assert len(statements) == 1
    assert states == {ids[0]: {"marketing_email": True, "sms": False, "personalised_offers": False},
                      ids[1]: {"marketing_email": False, "sms": False, "personalised_offers": True},
                      ids[2]: {"marketing_email": False, "sms": False, "personalised_offers": False}}


def test_an_erased_members_consent_cannot_be_recorded(shop, make_member, admin_key, row_counts):
    member_id = make_member()["id"]
    admin_key.post(f"/v1/admin/members/{member_id}/erase")
    before = row_counts()

    response = shop.post(f"/v1/members/{member_id}/consents", {"purpose": "sms", "granted": True})

    assert_problem(response, 409, "member_erased")
    assert row_counts() == before


# --- Consent in outbound events -----------------------------------------------------------------------------------

@pytest.fixture
def sent(app: Flask, in_app, monkeypatch) -> Callable[[], list[dict[str, Any]]]:
    """A shop's tool listening to every event; `sent()` runs the worker once and answers the bodies it sent."""
    bodies: list[bytes] = []

    def receive(url: str, body: bytes, headers: dict[str, str], *, timeout: float, allow_private: bool):
        bodies.append(body)
        return delivery.Attempt(200, None, 1.0)

    monkeypatch.setattr(delivery, "post", receive)
    with in_app():
        outbound.create_endpoint({"url": "https://crm.example.test/hooks"}, allow_private=True)
        db.session.commit()

    def run() -> list[dict[str, Any]]:
        with in_app():
            jobs.dispatch_events(T0)
            jobs.deliver_due(T0)
        delivered = [json.loads(body) for body in bodies]
        bodies.clear()
        return delivered

    return run


def test_every_event_about_a_member_carries_their_consent_per_purpose(sent, member):
    session, member_id = member(marketing_consent=True)
    session.post("/v1/me/consents", {"purpose": "sms", "granted": True})

    events = sent()

    assert sorted(event["type"] for event in events) == ["consent.changed", "consent.changed", "member.created"]
    assert all(event["data"]["member_id"] == member_id for event in events)
    assert [event["consent"] for event in events] == [
        {"marketing_email": True, "sms": True, "personalised_offers": False}] * 3


def test_the_consent_sent_is_the_one_in_force_when_the_event_is_sent_not_when_it_was_written(sent, member):
    session, _ = member(marketing_consent=True)  # member.created is written while marketing email is granted
    session.post("/v1/me/consents", {"purpose": "marketing_email", "granted": False})

    events = sent()

    assert {event["consent"]["marketing_email"] for event in events} == {False}


def test_a_member_who_never_answered_is_sent_as_consenting_to_nothing(sent, make_member):
    make_member()

    [event] = sent()

    assert event["consent"] == {"marketing_email": False, "sms": False, "personalised_offers": False}


def test_events_name_the_member_by_id_and_carry_no_personal_data(sent, story):
    events = sent()

    assert {"member.created", "points.earned", "tier.changed", "coupon.issued", "redemption.captured",
            "order.refunded", "points.redeemed"} <= {event["type"] for event in events}
    dump = json.dumps(events)
    for value in (ADA["email"], ADA["name"], "Lovelace", ADA["birthday"].isoformat(), ADA["external_id"]):
        assert value not in dump


# --- Export -------------------------------------------------------------------------------------------------------

@pytest.fixture
def export(story) -> dict[str, Any]:
    response = story.ada.get("/v1/me/export")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def test_the_export_is_a_json_download_named_after_the_member_and_never_cached(story):
    response = story.ada.get("/v1/me/export")

    assert response.mimetype == "application/json"
    assert response.headers["Content-Disposition"] == f'attachment; filename="loyalty-export-{story.id}-20260302.json"'
    assert response.headers["Cache-Control"] == "no-store"


def test_the_export_has_every_section(export, clock):
    assert set(export) == {"exported_at", "member", "consents", "transactions", "lots", "coupons", "coupon_uses",
                           "redemptions", "orders", "reward_claims", "tier_history", "events"}
    assert export["exported_at"] == clock().isoformat()


def test_the_export_holds_the_profile(export, story):
    profile = export["member"]

    assert {name: profile[name] for name in ("id", "email", "name", "birthday", "external_id", "status",
                                             "referred_by", "erased_at")} == {
        "id": story.id, "email": ADA["email"], "name": ADA["name"], "birthday": "1990-12-10",
        "external_id": ADA["external_id"], "status": "active", "referred_by": None, "erased_at": None}
    assert profile["points"] == {"available": 400, "pending": 40, "held": 100, "lifetime_earned": 40}
    assert profile["tier"] == {"code": "silver", "name": "Silver"}
    assert profile["last_login_at"] is not None


def test_the_export_holds_the_consent_history(export, story):
    assert export["consents"]["history"] == [{"purpose": "marketing_email", "granted": True, "source": "test",
                                              "recorded_at": T0.isoformat()}]
    assert export["consents"]["current"]["marketing_email"]["granted"] is True


def test_the_export_holds_the_whole_journal_newest_first(export, story, in_app):
    assert [(t["kind"], t["points"], t["balance_after"]) for t in export["transactions"]] == [
        ("clawback", -10, 540), ("reward", -300, 550), ("hold", 0, 850), ("redeem", -200, 850), ("hold", 0, 1050),
        ("earn", 50, 1050), ("adjust", 1000, 1000)]
    with in_app():
        ids = db.session.scalars(select(JournalTransaction.public_id).where(
            JournalTransaction.member_id == _internal(story.id)).order_by(JournalTransaction.id.desc())).all()
    assert [t["id"] for t in export["transactions"]] == ids


def test_the_export_holds_the_lots(export, story, in_app):
    with in_app():
        expected = {lot.public_id: (lot.amount, lot.remaining, lot.status) for lot in db.session.scalars(
            select(Lot).where(Lot.member_id == _internal(story.id)))}
    assert [(lot["amount"], lot["remaining"], lot["status"]) for lot in export["lots"]] == [
        (50, 40, "pending"), (1000, 400, "active")]
    assert {lot["id"]: (lot["amount"], lot["remaining"], lot["status"]) for lot in export["lots"]} == expected
    assert export["lots"][0]["transaction_id"] == export["transactions"][5]["id"]  # the order's earn
    assert export["lots"][0]["activates_at"] == (T0 + HOUR + timedelta(days=14)).isoformat()


def test_the_export_holds_the_coupons_assigned_and_the_codes_used(export, story):
    [coupon] = export["coupons"]
    assert (coupon["code"], coupon["offer_name"], coupon["active"]) == (story.coupon, "Free shipping", True)
    assert export["coupon_uses"] == [{
        "code": "SAVE10", "offer_id": export["coupon_uses"][0]["offer_id"], "status": "consumed",
        "redemption_id": story.captured, "created_at": (T0 + 2 * HOUR).isoformat(),
        "resolved_at": (T0 + 2 * HOUR).isoformat()}]


def test_the_export_holds_the_redemptions(export, story):
    assert [(r["id"], r["status"], r["points"], r["coupon_code"]) for r in export["redemptions"]] == [
        (story.held, "held", 100, None), (story.captured, "captured", 200, "SAVE10")]


def test_the_export_holds_the_orders_with_their_refunds(export):
    [order] = export["orders"]
    assert {name: order[name] for name in ("order_id", "total_amount", "refunded_amount", "status", "points_earned",
                                           "points_clawed_back")} == {
        "order_id": "ada-ord-1", "total_amount": 5000, "refunded_amount": 1000, "status": "partially_refunded",
        "points_earned": 50, "points_clawed_back": 10}
    assert order["lines"] == [{**LINES[0], "discount_amount": 0}]
    assert [(r["refund_id"], r["amount"], r["points_clawed_back"]) for r in order["refunds"]] == [("re-1", 1000, 10)]


def test_the_export_holds_the_reward_claims(export, story):
    [claim] = export["reward_claims"]
    assert (claim["reward_id"], claim["reward_name"], claim["coupon_code"]) == (story.reward, "Free shipping",
                                                                                 story.coupon)
    assert claim["transaction_id"] == export["transactions"][1]["id"]


def test_the_export_holds_the_tier_history(export):
    assert export["tier_history"] == [{"from": "member", "to": "silver", "at": (T0 + HOUR).isoformat(),
                                       "reason": "Upgraded: 50 points earned in 365 days; Silver needs 40"}]


def test_the_export_holds_the_events_about_the_member(export, story, in_app):
    with in_app():
        expected = db.session.scalars(select(OutboxEvent.public_id).where(
            OutboxEvent.member_id == _internal(story.id)).order_by(OutboxEvent.id.desc())).all()
    assert [event["id"] for event in export["events"]] == expected
    assert {"member.created", "consent.changed", "points.earned", "tier.changed", "redemption.captured",
            "coupon.issued", "order.refunded"} <= {event["type"] for event in export["events"]}


def test_the_export_holds_nothing_of_another_member(export, story, in_app):
    with in_app():
        bob = members.get_member(story.bystander)
        theirs = {bob.public_id, "bob@example.test", "Bob Bystander", "bob-ord-1", "bob-ord-2", "bob-ord-3"}
        theirs |= set(db.session.scalars(select(JournalTransaction.public_id).where(
            JournalTransaction.member_id == bob.id)))
    dump = json.dumps(export)
    assert [value for value in theirs if value in dump] == []


def test_support_exports_a_member_as_the_member_does(story, support, clock):
    mine = story.ada.get("/v1/me/export").get_json()

    response = support.get(f"/v1/admin/members/{story.id}/export")

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.headers["Content-Disposition"].startswith("attachment;")
    theirs = response.get_json()
    assert {**theirs, "member": None} == {**mine, "member": None}
    assert {**theirs["member"], "last_login_at": None} == {**mine["member"], "last_login_at": None}


def test_the_export_reads_each_section_in_one_query_whatever_the_history(story, in_app, clock):
    from loyalty.privacy import service as privacy

    with in_app():
        ada = members.get_member(story.id)
        with counting_queries() as first:
            privacy.export(ada, clock())
        for n in range(5):  # five more rows in the journal and the lots cost no more queries
            ledger.adjust(ada.id, 1, reason="More", reference=f"more:{n}", now=clock())
        db.session.commit()
        db.session.refresh(ada)
        with counting_queries() as second:
            privacy.export(ada, clock())
    assert len(second) == len(first)


# --- Erasure ------------------------------------------------------------------------------------------------------

def test_a_member_erases_their_account_and_is_signed_out(story):
    response = story.ada.delete("/v1/me", {"password": PASSWORD})

    assert response.status_code == 204, response.get_data(as_text=True)
    assert response.get_data() == b""
    assert_problem(story.ada.get("/v1/me"), 401, "unauthenticated")


@pytest.mark.parametrize("body", [None, {}, {"password": "not the password"}, {"password": ""}])
def test_erasing_oneself_needs_the_password_again_and_without_it_changes_nothing(story, body, row_counts):
    before = row_counts()

    response = story.ada.delete("/v1/me", body)

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {"password"}
    assert row_counts() == before
    assert story.ada.get("/v1/me").get_json()["email"] == ADA["email"]


def test_wrong_passwords_for_erasure_draw_on_the_accounts_login_budget(story, client, tight_login_limits):
    """A stolen session cannot guess the password faster than the login form allows."""
    for _ in range(2):
        assert_problem(story.ada.delete("/v1/me", {"password": "guess"}), 422, "validation_error")
    assert_problem(client.post("/v1/auth/login", json={"email": ADA["email"], "password": "guess"}), 401,
                   "invalid_credentials")

    response = story.ada.delete("/v1/me", {"password": PASSWORD})

    assert_problem(response, 429, "rate_limited")
    assert story.ada.get("/v1/me").get_json()["status"] == "active"


def test_an_erased_member_cannot_sign_in_again(story, client):
    story.ada.delete("/v1/me", {"password": PASSWORD})

    response = client.post("/v1/auth/login", json={"email": ADA["email"], "password": PASSWORD})

    assert_problem(response, 401, "invalid_credentials")


def test_an_erased_members_other_open_sessions_end(story, sign_in, support):
    phone = sign_in(ADA["email"])

    support.post(f"/v1/admin/members/{story.id}/erase")

    assert_problem(phone.get("/v1/me"), 401, "unauthenticated")
    assert_problem(story.ada.get("/v1/me/export"), 401, "unauthenticated")


def test_support_erases_a_member_and_is_answered_the_anonymised_summary(story, support):
    response = support.post(f"/v1/admin/members/{story.id}/erase")

    assert response.status_code == 200, response.get_data(as_text=True)
    erasure = response.get_json()
    assert {name: erasure[name] for name in ("id", "status", "erased_at", "points_forfeited",
                                             "redemptions_released")} == {
        "id": story.id, "status": "erased", "erased_at": AFTER.isoformat(), "points_forfeited": 540,
        "redemptions_released": [story.held]}
    summary = erasure["member"]
    assert (summary["email"], summary["name"], summary["birthday"], summary["external_id"]) == (None,) * 4
    assert summary["points"] == {"available": 0, "pending": 0, "held": 0, "lifetime_earned": 40}


def test_the_export_of_an_erased_member_holds_no_personal_data(story, support):
    support.post(f"/v1/admin/members/{story.id}/erase")

    response = support.get(f"/v1/admin/members/{story.id}/export")

    assert response.status_code == 200, response.get_data(as_text=True)
    dump = response.get_data(as_text=True)
    for value in (ADA["email"], ADA["name"], "Lovelace", ADA["birthday"].isoformat(), ADA["external_id"]):
        assert value not in dump
    profile = response.get_json()["member"]
    assert (profile["email"], profile["name"], profile["birthday"], profile["external_id"]) == (None,) * 4
    assert (profile["status"], profile["erased_at"]) == ("erased", AFTER.isoformat())


def test_erasure_replaces_the_referral_code_and_keeps_referral_links_as_ids(make_member, admin_key, in_app):
    referrer = make_member()
    referred = make_member(referral_code=referrer["referral_code"])

    admin_key.post(f"/v1/admin/members/{referrer['id']}/erase")

    with in_app():
        erased = members.get_member(referrer["id"])
        assert erased.referral_code != referrer["referral_code"] and len(erased.referral_code) == 8
        assert members.find_by_referral_code(referrer["referral_code"]) is None
        assert members.get_member(referred["id"]).referred_by_id == erased.id
        assert erased.password_hash is None and erased.last_login_at is None


def test_erasure_forfeits_available_and_pending_points_into_expired(story, support, in_app):
    support.post(f"/v1/admin/members/{story.id}/erase")

    with in_app():
        assert accounts(story.id) == {"available": 0, "pending": 0, "held": 0, "issued": -40, "redeemed": 500,
                                      "expired": 540, "adjusted": -1000}
        forfeit = db.session.scalar(select(JournalTransaction).where(
            JournalTransaction.reference == f"erase:{story.id}"))
        assert (forfeit.kind, forfeit.points, forfeit.balance_after) == ("expire", -540, 0)
        lots = db.session.scalars(select(Lot).where(Lot.member_id == _internal(story.id))).all()
        assert {(lot.status, lot.remaining) for lot in lots} == {("expired", 0)}


def test_after_erasure_every_ledger_invariant_holds(story, support, in_app):
    support.post(f"/v1/admin/members/{story.id}/erase")

    with in_app():
        assert [(r.check.name, r.examples) for r in verify(db.session) if not r.ok] == []


def test_erasure_releases_the_held_redemption_and_leaves_the_captured_one(story, support, in_app):
    support.post(f"/v1/admin/members/{story.id}/erase")

    with in_app():
        statuses = dict(db.session.execute(select(Redemption.public_id, Redemption.status).where(
            Redemption.member_id == _internal(story.id))).all())
        held = db.session.scalar(select(Redemption).where(Redemption.public_id == story.held))
        assert (held.release_reason, held.resolved_at) == ("erased", AFTER)
    assert statuses == {story.captured: "captured", story.held: "released"}


def test_erasure_withdraws_every_consent_and_tells_the_shops_tools(story, support, sent):
    sent()

    support.post(f"/v1/admin/members/{story.id}/erase")

    events = {event["type"]: event for event in sent()}
    assert events["member.erased"]["data"]["member_id"] == story.id
    assert events["member.erased"]["consent"] == {"marketing_email": False, "sms": False,
                                                  "personalised_offers": False}
    assert events["points.expired"]["data"]["points"] == 540
    state = support.get(f"/v1/members/{story.id}/consents").get_json()
    assert state["current"]["marketing_email"]["source"] == "erasure"


def test_erasure_keeps_orders_and_the_journal_so_report_figures_stay(story, support, in_app):
    with in_app():
        orders_before = db.session.scalar(select(func.count()).select_from(Order))
        journal_before = db.session.scalar(select(func.count()).select_from(JournalTransaction))
        issued_before = program_totals(db.session)["issued"]

    support.post(f"/v1/admin/members/{story.id}/erase")

    with in_app():
        assert db.session.scalar(select(func.count()).select_from(Order)) == orders_before
        # the held redemption's release and the forfeit are added; nothing is taken away
        assert db.session.scalar(select(func.count()).select_from(JournalTransaction)) == journal_before + 2
        assert program_totals(db.session)["issued"] == issued_before


def test_erasing_twice_changes_nothing_the_second_time_and_answers_the_same(story, support, admin_key, row_counts,
                                                                             in_app, clock):
    first = support.post(f"/v1/admin/members/{story.id}/erase")
    clock.travel(timedelta(days=1))
    before = row_counts()
    with in_app():
        member_before = _columns(members.get_member(story.id))

    again = admin_key.post(f"/v1/admin/members/{story.id}/erase")

    assert again.status_code == 200
    assert again.get_json() == first.get_json()
    assert _without_audit(row_counts()) == _without_audit(before)
    with in_app():
        assert _columns(members.get_member(story.id)) == member_before


def _without_audit(counts: dict[str, int]) -> dict[str, int]:
    """Row counts but the audit log's, which keeps every staff and API write, even one that changed nothing."""
    return {table: count for table, count in counts.items() if table != "audit_log"}


def _columns(member: Member) -> dict[str, Any]:
    return {column.key: getattr(member, column.key) for column in Member.__table__.columns}


def test_erasing_a_member_who_already_erased_themselves_answers_their_erasure(story, support):
    story.ada.delete("/v1/me", {"password": PASSWORD})

    response = support.post(f"/v1/admin/members/{story.id}/erase")

    assert response.status_code == 200
    assert (response.get_json()["points_forfeited"], response.get_json()["redemptions_released"]) == (540, [story.held])


@pytest.mark.real_commits  # threads, each with a connection of its own
def test_erasures_at_once_forfeit_once_and_answer_alike(app, story, make_api_key, in_app):
    headers = bearer(make_api_key("admin"))
    racers = 4
    barrier = threading.Barrier(racers)
    responses = []

    def erase() -> None:
        client = app.test_client()
        barrier.wait()
        responses.append(client.post(f"/v1/admin/members/{story.id}/erase", headers=headers))

    threads = [threading.Thread(target=erase) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [r.status_code for r in responses] == [200] * racers
    assert all(r.get_json() == responses[0].get_json() for r in responses)
    assert responses[0].get_json()["points_forfeited"] == 540
    with in_app():
        events = db.session.scalars(select(OutboxEvent.type).where(
            OutboxEvent.member_id == _internal(story.id), OutboxEvent.type.in_(("member.erased", "points.expired"))))
        assert sorted(events) == ["member.erased", "points.expired"]
        assert [r.check.name for r in verify(db.session) if not r.ok] == []


def test_a_member_with_nothing_outstanding_is_erased_without_a_forfeit(make_member, admin_key, in_app):
    member_id = make_member()["id"]

    response = admin_key.post(f"/v1/admin/members/{member_id}/erase")

    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["points_forfeited"] == 0
    with in_app():
        assert db.session.scalar(select(func.count()).select_from(JournalTransaction)) == 0
        assert [r.check.name for r in verify(db.session) if not r.ok] == []


def test_erasure_scrubs_the_buyers_details_from_the_members_stripe_events(app, make_member, admin_key, client,
                                                                        monkeypatch, in_app):
    change_settings(monkeypatch, app, STRIPE_WEBHOOK_SECRET=STRIPE_SECRET)
    change_settings(monkeypatch, app, STRIPE_API_KEY="")
    member_id = make_member(email="jenny@example.test")["id"]
    session = se.checkout_session(amount_subtotal=5000, amount_total=5000, payment_intent=se.new_id("pi"),
                                  metadata={"loyalty_member_id": member_id, "order_id": "ord-stripe"})
    payload = se.body(se.event("checkout.session.completed", session))
    paid = client.post("/v1/webhooks/stripe", data=payload, content_type="application/json",
                       headers={"Stripe-Signature": se.sign(payload, STRIPE_SECRET)})
    assert paid.status_code == 200, paid.get_data(as_text=True)
    other = se.body(se.event("checkout.session.completed", se.checkout_session(
        amount_subtotal=100, amount_total=100, payment_intent=se.new_id("pi"), metadata={})))
    client.post("/v1/webhooks/stripe", data=other, content_type="application/json",
                headers={"Stripe-Signature": se.sign(other, STRIPE_SECRET)})

    admin_key.post(f"/v1/admin/members/{member_id}/erase")

    with in_app():
        mine, theirs = db.session.scalars(select(StripeEvent).order_by(StripeEvent.id)).all()
        stored = json.dumps(mine.payload)
        assert mine.payload["data"]["object"]["customer_details"] is None
        assert mine.payload["data"]["object"]["metadata"] == {"loyalty_member_id": member_id, "order_id": "ord-stripe"}
        assert mine.payload["data"]["object"]["amount_total"] == 5000
        assert theirs.payload["data"]["object"]["customer_details"]["name"] == "Jenny Rosen"
    for value in ("Jenny Rosen", "member@example.com", "Oyster Point", "jenny@example.test"):
        assert value not in stored


def test_erasure_redacts_stored_answers_that_name_the_member(shop, admin_key, in_app):
    enrolled = shop.post("/v1/members", {"email": "grace@example.test", "name": "Grace Hopper",
                                         "external_id": "cust-7"}, **{"Idempotency-Key": "enrol-grace"})
    member_id = enrolled.get_json()["id"]

    admin_key.post(f"/v1/admin/members/{member_id}/erase")

    with in_app():
        stored = db.session.scalar(select(StoredResponse).where(StoredResponse.key == "enrol-grace"))
        body = json.loads(stored.body)
    assert (body["id"], body["email"], body["name"], body["external_id"]) == (member_id, None, None, None)
    replay = shop.post("/v1/members", {"email": "grace@example.test", "name": "Grace Hopper",
                                       "external_id": "cust-7"}, **{"Idempotency-Key": "enrol-grace"})
    assert replay.status_code == 201 and replay.get_json()["email"] is None


def test_an_erased_member_can_earn_no_more_points(story, support, shop, row_counts):
    support.post(f"/v1/admin/members/{story.id}/erase")
    before = row_counts()

    response = shop.post("/v1/orders", {"order_id": "after", "member_id": story.id, "currency": "usd",
                                        "lines": LINES, "total_amount": 5000})

    assert response.status_code in (409, 422), response.get_data(as_text=True)
    assert row_counts() == before


# --- Who may erase and export -------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["analyst", "manager"])
def test_staff_without_the_support_role_may_not_erase(role, staff_client, make_member, row_counts):
    member_id = make_member()["id"]
    staff = staff_client(role)
    before = row_counts()

    response = staff.post(f"/v1/admin/members/{member_id}/erase")

    assert_problem(response, 403, "forbidden")
    assert row_counts() == before


@pytest.mark.parametrize("scope", ["members:read", "members:write"])
def test_an_api_key_without_the_admin_scope_may_not_erase_or_export(scope, make_api_key, make_member, client,
                                                                     row_counts):
    member_id = make_member()["id"]
    headers = bearer(make_api_key(scope))
    before = row_counts()

    assert_problem(client.post(f"/v1/admin/members/{member_id}/erase", headers=headers), 403, "forbidden")
    assert_problem(client.get(f"/v1/admin/members/{member_id}/export", headers=headers), 403, "forbidden")
    assert row_counts() == before


def test_a_member_may_not_erase_or_export_another_member(member, make_member, row_counts):
    session, _ = member()
    other = make_member()["id"]
    before = row_counts()

    assert_problem(session.post(f"/v1/admin/members/{other}/erase"), 403, "forbidden")
    assert_problem(session.get(f"/v1/admin/members/{other}/export"), 403, "forbidden")
    assert_problem(session.get(f"/v1/members/{other}/consents"), 403, "forbidden")
    assert row_counts() == before


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/v1/me/consents"), ("POST", "/v1/me/consents"), ("GET", "/v1/me/export"), ("DELETE", "/v1/me")])
def test_the_members_own_privacy_routes_need_a_member_session(method, path, client, support, row_counts):
    before = row_counts()

    assert_problem(client.open(path, method=method, json={"purpose": "sms", "granted": True} if method == "POST"
                               else None), 401, "unauthenticated")
    assert_problem(support.client.open(path, method=method), 403, "forbidden")
    assert row_counts() == before


BY_ID = [("GET", "/v1/members/{id}/consents", "members:read"), ("POST", "/v1/members/{id}/consents", "members:write"),
         ("GET", "/v1/admin/members/{id}/export", "admin"), ("POST", "/v1/admin/members/{id}/erase", "admin")]


@pytest.mark.parametrize(("method", "path", "scope"), BY_ID, ids=[f"{m} {p}" for m, p, _ in BY_ID])
@pytest.mark.parametrize("member_id", ["mem_doesnotexist", "x" * 10_000, "%27%20OR%201%3D1%20--", "mem_%00"],
                         ids=["unknown", "10000 characters", "SQL", "with a NUL"])
def test_an_id_no_member_has_is_404_not_found(method, path, scope, member_id, client, make_api_key, make_member,
                                              row_counts):
    make_member()
    headers = bearer(make_api_key(scope))
    before = row_counts()

    response = client.open(path.replace("{id}", member_id), method=method, headers=headers,
                           json={"purpose": "sms", "granted": True} if path.endswith("consents") and method == "POST"
                           else None)

    assert_problem(response, 404, "not_found")
    assert row_counts() == before


# --- Bad input to the member's own consent route --------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    pytest.param({"granted": True}, "purpose", id="no purpose"),
    pytest.param({"purpose": "sms"}, "granted", id="no granted"),
    pytest.param({"purpose": "newsletter", "granted": True}, "purpose", id="an unknown purpose"),
    pytest.param({"purpose": 42, "granted": True}, "purpose", id="a purpose that is not a string"),
    pytest.param({"purpose": "sms", "granted": "yes"}, "granted", id="granted as a string"),
    pytest.param({"purpose": "sms", "granted": 1}, "granted", id="granted as a number"),
    pytest.param({"purpose": "sms", "granted": None}, "granted", id="granted null"),
    pytest.param({"purpose": "x" * 10_000, "granted": True}, "purpose", id="an oversized purpose"),
    pytest.param({"purpose": "sms\u0000", "granted": True}, "purpose", id="a purpose with a NUL"),
    pytest.param({"purpose": "sms", "granted": True, "source": "checkout"}, "source", id="an unknown field"),
])
def test_a_bad_consent_answer_is_422_naming_the_field_and_records_nothing(body, field, member, row_counts):
    session, _ = member()
    before = row_counts()

    response = session.post("/v1/me/consents", body)

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {field}
    assert row_counts() == before


@pytest.mark.parametrize(("data", "content_type", "status", "code"), [
    pytest.param('{"purpose": "sms",', "application/json", 400, "invalid_json", id="malformed JSON"),
    pytest.param('{"purpose": "sms", "granted": true}', "text/plain", 415, "unsupported_media_type", id="text/plain"),
    pytest.param("purpose=sms&granted=true", "application/x-www-form-urlencoded", 415, "unsupported_media_type",
                 id="a form"),
    pytest.param("[]", "application/json", 422, "validation_error", id="an array"),
    pytest.param('"sms"', "application/json", 422, "validation_error", id="a string"),
    pytest.param('{"purpose": "' + "x" * (1024 * 1024) + '", "granted": true}', "application/json", 413,
                 "payload_too_large", id="over one MiB"),
])
def test_a_consent_body_that_is_not_a_json_object_is_refused_and_records_nothing(data, content_type, status, code,
                                                                                member, row_counts):
    session, _ = member()
    before = row_counts()

    response = session.client.post("/v1/me/consents", data=data, content_type=content_type)

    assert_problem(response, status, code)
    assert row_counts() == before



def test_a_refund_after_erasure_restores_nothing_spendable_and_the_ledger_still_verifies(make_member, in_app, clock):
    from loyalty.privacy import service as privacy

    member = make_member()
    with in_app():
        internal = _internal(member["id"])
        ledger.adjust(internal, 1000, reason="Welcome", reference="gift:erased-refund", now=clock())
        hold = ledger.hold(internal, 600, reference="hold:erased-refund", expires_at=clock() + timedelta(minutes=30),
                           now=clock(), description="Checkout")
        ledger.capture(hold, now=clock())
        privacy.erase(db.session.get(Member, internal), clock(), by="test")
        ledger.restore(hold, 300, reference="restore:erased-refund", now=clock(), description="Refund")
        db.session.commit()
        assert (ledger.balances(internal).available, ledger.balances(internal).pending) == (0, 0)
        assert accounts(member["id"])["expired"] == 400 + 300
        assert all(result.ok for result in verify(db.session))
