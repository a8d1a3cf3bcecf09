"""The Stripe payload builders in tests/stripe_events.py: payloads the stripe library accepts, signed the way
it verifies, with only the fields its resource classes declare for this API version."""

from __future__ import annotations

import importlib
import json
import time
import types
import typing
from typing import Any

import pytest
import stripe
from stripe._object_classes import OBJECT_CLASSES

from tests import stripe_events as se

SECRET = "whsec_test_loyalty_webhooks"


@pytest.fixture
def _clean_database() -> None:
    """Overrides conftest's autouse fixture of that name: these tests touch neither app nor database."""


def _construct(event_dict: dict[str, Any], secret: str = SECRET) -> stripe.Event:
    payload = se.body(event_dict)
    return stripe.Webhook.construct_event(payload, se.sign(payload, secret), secret)


def _fields(cls: type) -> dict[str, Any]:
    return {name: kind for name, kind in cls.__annotations__.items() if name != "OBJECT_NAME"}


def _optional(kind: Any) -> bool:
    return typing.get_origin(kind) in {typing.Union, types.UnionType} and type(None) in typing.get_args(kind)


def _resource_class(object_name: str) -> type:
    module, name = OBJECT_CLASSES[object_name]
    return getattr(importlib.import_module(module), name)


def _undeclared(cls: type, data: dict[str, Any], path: str) -> list[str]:
    """Keys of ``data`` (and of the objects nested in it) that ``cls`` does not declare."""
    declared = _fields(cls)
    problems = [f"{path}.{key}" for key in data if key not in declared]
    inner = getattr(cls, "_inner_class_types", {})
    for key, value in data.items():
        items = value if isinstance(value, list) else [value]
        for index, item in enumerate(items):
            if not isinstance(item, dict) or key not in declared:
                continue
            where = f"{path}.{key}" + (f"[{index}]" if isinstance(value, list) else "")
            kind = item.get("object")
            if isinstance(kind, str) and kind in OBJECT_CLASSES:
                problems += _undeclared(_resource_class(item["object"]), item, where)
            elif key in inner:
                problems += _undeclared(inner[key], item, where)
    return problems


def _assert_shape(cls: type, obj: dict[str, Any]) -> None:
    assert _undeclared(cls, obj, cls.OBJECT_NAME) == []
    required = {name for name, kind in _fields(cls).items() if not _optional(kind)}
    assert required - obj.keys() == set(), f"{cls.OBJECT_NAME} lacks required fields"


def _session(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "amount_subtotal": 5000,
        "amount_total": 4500,
        "metadata": {"order_id": "42", "member_id": "7"},
        "payment_intent": "pi_3TestCheckoutIntent0001",
        "amount_discount": 500,
    }
    return se.checkout_session(**(values | overrides))


def _intent(status: str = "succeeded", **overrides: Any) -> dict[str, Any]:
    return se.payment_intent(amount=4500, metadata={"order_id": "42"}, status=status, **overrides)


def _charge(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"amount": 4500, "amount_refunded": 1500, "payment_intent": "pi_3TestChargeIntent00001"}
    return se.charge(**(values | overrides))


def _dispute(status: str = "needs_response") -> dict[str, Any]:
    return se.dispute(amount=4500, charge="ch_3TestDisputedCharge0001", payment_intent="pi_3TestDisputed0001",
                      status=status)


# --- Signing --------------------------------------------------------------------------------------


def test_the_library_can_sign_test_payloads_itself() -> None:
    assert callable(getattr(stripe.WebhookSignature, "generate_signature_header", None))


def test_sign_is_stripes_header_format() -> None:
    payload = se.body(se.event("payment_intent.succeeded", _intent()))
    header = se.sign(payload, SECRET, timestamp=1_800_000_000)
    stamp, signature = header.split(",")
    assert stamp == "t=1800000000"
    assert signature == "v1=" + stripe.WebhookSignature._compute_signature(f"1800000000.{payload}", SECRET)
    assert se.sign(payload.encode("utf-8"), SECRET, timestamp=1_800_000_000) == header


def test_sign_defaults_to_now() -> None:
    before = int(time.time())
    stamp = int(se.sign("{}", SECRET).split(",")[0].removeprefix("t="))
    assert before <= stamp <= int(time.time())


def test_a_wrong_secret_or_an_old_signature_is_rejected() -> None:
    payload = se.body(se.event("checkout.session.completed", _session()))
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, se.sign(payload, "whsec_someone_else"), SECRET)
    stale = se.sign(payload, SECRET, timestamp=int(time.time()) - 3600)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, stale, SECRET)


def test_a_changed_body_is_rejected() -> None:
    payload = se.body(se.event("charge.refunded", _charge()))
    header = se.sign(payload, SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload.replace("4500", "9999", 1), header, SECRET)


def test_body_is_indented_utf8_json_of_the_event() -> None:
    evt = se.event("checkout.session.completed", _session(metadata={"note": "café"}))
    text = se.body(evt)
    assert json.loads(text) == evt
    assert '\n  "id": ' in text
    assert "café" in text


# --- Event envelope -------------------------------------------------------------------------------


def test_the_envelope_is_a_v1_event_for_the_pinned_api_version() -> None:
    obj = _intent()
    evt = se.event("payment_intent.succeeded", obj, event_id="evt_1TestEnvelope", created=1_793_700_000,
                   request_id="req_Test123", idempotency_key="key-1")
    assert list(evt) == ["id", "object", "api_version", "created", "data", "livemode", "pending_webhooks",
                         "request", "type"]
    assert evt["api_version"] == stripe.api_version == se.API_VERSION
    assert evt["data"] == {"object": obj}  # no previous_attributes unless given
    _assert_shape(stripe.Event, evt)
    assert set(evt["request"]) == set(_fields(stripe.Event.Request))
    assert set(evt["data"]) <= set(_fields(stripe.Event.Data))

    constructed = _construct(evt)
    assert isinstance(constructed, stripe.Event)
    assert constructed.id == "evt_1TestEnvelope"
    assert constructed.created == 1_793_700_000
    assert constructed.api_version == stripe.api_version
    assert constructed.livemode is False
    assert constructed.request.id == "req_Test123"
    assert constructed.request.idempotency_key == "key-1"


def test_event_ids_are_unique_and_previous_attributes_travel() -> None:
    obj = _charge(amount_refunded=4500)
    first = se.event("charge.refunded", obj, previous_attributes={"amount_refunded": 1500, "refunded": False})
    second = se.event("charge.refunded", obj)
    assert first["id"].startswith("evt_") and first["id"] != second["id"]
    assert "previous_attributes" not in second["data"]
    constructed = _construct(first)
    assert constructed.data.previous_attributes.to_dict() == {"amount_refunded": 1500, "refunded": False}
    assert constructed.request.id is None


def test_every_event_type_used_here_is_one_the_library_knows() -> None:
    known = set(typing.get_args(stripe.Event.__annotations__["type"]))
    used = {
        "checkout.session.completed",
        "checkout.session.expired",
        "checkout.session.async_payment_succeeded",
        "payment_intent.succeeded",
        "payment_intent.payment_failed",
        "payment_intent.requires_action",
        "payment_intent.canceled",
        "charge.refunded",
        "charge.dispute.created",
        "charge.dispute.closed",
    }
    assert used <= known


# --- Checkout Session -----------------------------------------------------------------------------


def test_checkout_session_completed_round_trips() -> None:
    obj = _session(session_id="cs_test_a1Round")
    constructed = _construct(se.event("checkout.session.completed", obj))
    assert constructed.type == "checkout.session.completed"
    session = constructed.data.object
    assert isinstance(session, stripe.checkout.Session)
    assert session.object == "checkout.session"
    assert session.id == "cs_test_a1Round"
    assert (session.amount_subtotal, session.amount_total, session.currency) == (5000, 4500, "usd")
    assert session.metadata.to_dict() == {"order_id": "42", "member_id": "7"}
    assert session.payment_intent == "pi_3TestCheckoutIntent0001"
    assert (session.payment_status, session.status, session.mode) == ("paid", "complete", "payment")
    assert session.total_details.to_dict() == {"amount_discount": 500, "amount_shipping": 0, "amount_tax": 0}
    assert session.customer_details.email == "member@example.com"


@pytest.mark.parametrize(("status", "payment_status"), [("complete", "paid"), ("complete", "unpaid"),
                                                        ("open", "unpaid"), ("expired", "unpaid")])
def test_checkout_session_fields_are_the_declared_ones(status: str, payment_status: str) -> None:
    obj = _session(status=status, payment_status=payment_status, amount_shipping=700)
    _assert_shape(stripe.checkout.Session, obj)
    assert "line_items" not in obj  # webhooks never include them
    assert obj["id"].startswith("cs_test_")
    assert (obj["url"] is None) == (status != "open")
    assert (obj["customer_details"] is None) == (status != "complete")
    assert obj["total_details"]["amount_shipping"] == 700
    assert len(obj["discounts"]) == 1
    assert _session(amount_discount=0)["discounts"] == []


def test_checkout_session_rejects_unknown_statuses() -> None:
    with pytest.raises(ValueError, match="status"):
        _session(status="paid")
    with pytest.raises(ValueError, match="payment_status"):
        _session(payment_status="complete")


def test_checkout_sessions_are_deterministic_but_for_ids() -> None:
    first = _session(session_id="cs_test_a1Same", payment_intent="pi_same")
    second = _session(session_id="cs_test_a1Same", payment_intent="pi_same")
    for obj in (first, second):
        obj["discounts"][0]["coupon"] = "coupon"
    assert first == second
    assert first["created"] == se.CREATED and first["expires_at"] == se.CREATED + se.DAY


# --- PaymentIntent --------------------------------------------------------------------------------

_INTENT_EVENTS = {
    "succeeded": "payment_intent.succeeded",
    "requires_payment_method": "payment_intent.payment_failed",
    "requires_action": "payment_intent.requires_action",
    "canceled": "payment_intent.canceled",
}


@pytest.mark.parametrize(("status", "event_type"), _INTENT_EVENTS.items())
def test_payment_intent_round_trips(status: str, event_type: str) -> None:
    obj = _intent(status, intent_id="pi_3TestRoundTrip0001")
    _assert_shape(stripe.PaymentIntent, obj)
    constructed = _construct(se.event(event_type, obj))
    assert constructed.type == event_type
    intent = constructed.data.object
    assert isinstance(intent, stripe.PaymentIntent)
    assert intent.object == "payment_intent"
    assert (intent.id, intent.amount, intent.currency, intent.status) == ("pi_3TestRoundTrip0001", 4500, "usd", status)
    assert intent.metadata.to_dict() == {"order_id": "42"}


def test_a_succeeded_payment_intent_received_its_amount_through_a_charge() -> None:
    obj = _intent("succeeded", latest_charge="ch_3TestLatest00001")
    assert obj["amount_received"] == 4500
    assert obj["latest_charge"] == "ch_3TestLatest00001"
    assert obj["last_payment_error"] is None and obj["next_action"] is None
    assert _intent("succeeded", amount_received=4000)["amount_received"] == 4000
    assert _intent("succeeded")["latest_charge"].startswith("ch_")


def test_a_failed_payment_intent_carries_a_card_decline() -> None:
    obj = _intent("requires_payment_method")
    error = obj["last_payment_error"]
    assert obj["amount_received"] == 0
    assert obj["payment_method"] is None
    assert error["type"] == "card_error"
    assert error["code"] == "card_declined"
    assert error["decline_code"] == "generic_decline"
    assert error["message"] == "Your card was declined."
    assert error["charge"] == obj["latest_charge"]
    assert error["payment_method"]["object"] == "payment_method"
    assert error["payment_method"]["card"]["last4"] == "0002"

    constructed = _construct(se.event("payment_intent.payment_failed", obj)).data.object
    assert constructed.last_payment_error.code == "card_declined"
    assert constructed.last_payment_error.decline_code == "generic_decline"
    assert isinstance(constructed.last_payment_error.payment_method, stripe.PaymentMethod)


def test_a_failed_payment_intent_takes_a_given_error() -> None:
    error = se.card_declined_error(charge="ch_3TestGiven000001", decline_code="insufficient_funds")
    obj = _intent("requires_payment_method", latest_charge="ch_3TestGiven000001", last_payment_error=error)
    assert obj["last_payment_error"] is error
    assert error["message"] == "Your card has insufficient funds."
    _assert_shape(stripe.PaymentIntent, obj)


def test_requires_action_and_canceled_payment_intents() -> None:
    pending = _intent("requires_action")
    assert pending["next_action"]["type"] == "use_stripe_sdk"
    assert pending["latest_charge"] is None and pending["amount_received"] == 0
    canceled = _intent("canceled", cancellation_reason="abandoned")
    assert canceled["cancellation_reason"] == "abandoned"
    assert canceled["canceled_at"] > canceled["created"]
    assert _intent("succeeded")["canceled_at"] is None


def test_payment_intent_rejects_unknown_statuses() -> None:
    with pytest.raises(ValueError, match="status"):
        _intent("failed")


# --- Charge ---------------------------------------------------------------------------------------


def test_charge_refunded_round_trips() -> None:
    obj = _charge(amount_refunded=4500, charge_id="ch_3TestRefunded00001", metadata={"order_id": "42"})
    evt = se.event("charge.refunded", obj, previous_attributes={"amount_refunded": 1500, "refunded": False})
    constructed = _construct(evt)
    assert constructed.type == "charge.refunded"
    refunded = constructed.data.object
    assert isinstance(refunded, stripe.Charge)
    assert refunded.object == "charge"
    assert (refunded.id, refunded.amount, refunded.amount_refunded) == ("ch_3TestRefunded00001", 4500, 4500)
    assert refunded.refunded is True
    assert refunded.payment_intent == "pi_3TestChargeIntent00001"
    assert refunded.metadata.to_dict() == {"order_id": "42"}


@pytest.mark.parametrize(("amount_refunded", "refunded"), [(0, False), (1500, False), (4499, False), (4500, True)])
def test_refunded_means_fully_refunded(amount_refunded: int, refunded: bool) -> None:
    obj = _charge(amount_refunded=amount_refunded)
    _assert_shape(stripe.Charge, obj)
    assert obj["amount_refunded"] == amount_refunded
    assert obj["refunded"] is refunded
    assert obj["amount_captured"] == obj["amount"]


def test_charges_do_not_embed_refunds_at_this_api_version() -> None:
    assert "refunds" in _fields(stripe.Charge)  # declared, but only present when expanded
    assert "refunds" not in _charge(amount_refunded=4500)


def test_charge_checks_the_refunded_amount() -> None:
    assert _charge(amount_refunded=1500, refunded=True)["refunded"] is True
    assert _charge(metadata=None)["metadata"] == {}
    for wrong in (-1, 4501):
        with pytest.raises(ValueError, match="amount_refunded"):
            _charge(amount_refunded=wrong)


# --- Dispute --------------------------------------------------------------------------------------

_DISPUTE_STATUSES = ["needs_response", "under_review", "won", "lost", "warning_needs_response",
                     "warning_under_review", "warning_closed", "prevented"]


@pytest.mark.parametrize("status", _DISPUTE_STATUSES)
def test_dispute_round_trips(status: str) -> None:
    obj = _dispute(status)
    _assert_shape(stripe.Dispute, obj)
    event_type = "charge.dispute.closed" if status in {"won", "lost", "warning_closed"} else "charge.dispute.created"
    constructed = _construct(se.event(event_type, obj))
    assert constructed.type == event_type
    disputed = constructed.data.object
    assert isinstance(disputed, stripe.Dispute)
    assert disputed.object == "dispute"
    assert (disputed.id, disputed.amount, disputed.status, disputed.reason) == (obj["id"], 4500, status, "fraudulent")
    assert disputed.charge == "ch_3TestDisputedCharge0001"
    assert disputed.payment_intent == "pi_3TestDisputed0001"
    assert disputed.evidence_details.submission_method in {"manual", "not_submitted"}


def test_dispute_money_movements() -> None:
    opened = _dispute("needs_response")
    [withdrawal] = opened["balance_transactions"]
    assert (withdrawal["amount"], withdrawal["fee"], withdrawal["net"]) == (-4500, 1500, -6000)
    assert withdrawal["source"] == opened["id"]
    assert opened["is_charge_refundable"] is False
    assert opened["payment_method_details"]["card"]["network_reason_code"] == "10.4"

    won = _dispute("won")
    assert [txn["amount"] for txn in won["balance_transactions"]] == [-4500, 4500]
    assert [txn["amount"] for txn in _dispute("lost")["balance_transactions"]] == [-4500]

    inquiry = _dispute("warning_closed")
    assert inquiry["balance_transactions"] == []
    assert inquiry["payment_method_details"]["card"]["case_type"] == "inquiry"
    assert inquiry["evidence_details"]["submission_method"] == "not_submitted"
    assert won["evidence_details"]["submission_count"] == 1


def test_dispute_rejects_unknown_statuses() -> None:
    with pytest.raises(ValueError, match="status"):
        _dispute("closed")
