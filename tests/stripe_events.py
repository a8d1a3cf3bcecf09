"""Stripe webhook payloads for tests, shaped as Stripe renders them for the API version the installed
stripe library is pinned to (``stripe.api_version``).

Where the shapes come from:

* the field lists of the installed library's resource classes (``stripe.checkout.Session``,
  ``stripe.PaymentIntent``, ``stripe.Charge``, ``stripe.Dispute``, ``stripe.Event`` and their inner
  classes), which are generated for exactly this API version;
* Stripe's published OpenAPI spec (``stripe/openapi``, ``latest/openapi.spec3.json``, 2026-09-30.endive)
  for which fields are required, nullable or only present in some cases;
* Stripe's changelog for what changed in endive (``payment_record`` on PaymentIntents,
  ``allowed_payment_method_types``, ``evidence_details.submission_method`` and
  ``intended_submission_method`` on Disputes) and for charges no longer embedding ``refunds``
  (2022-11-15: the list is only there when expanded, and webhooks never expand it);
* recorded webhook deliveries from 2025-2026 for which optional keys Stripe actually sends.

Fields Stripe always sends are present (``null`` when empty); fields Stripe only includes when
expanded or when they apply (``line_items``, ``refunds``, ``presentment_details``, ...) are left out.

Everything is deterministic except object ids, which are random like Stripe's. Times are int unix
seconds; objects default to ``CREATED``. ``sign`` is the one exception to determinism: with no
``timestamp`` it signs with the current time, since ``stripe.Webhook.construct_event`` rejects
signatures older than five minutes.

    obj = checkout_session(amount_subtotal=5000, amount_total=5000, metadata={"order": "42"},
                           payment_intent=new_id("pi"))
    payload = body(event("checkout.session.completed", obj))
    response = client.post(WEBHOOK_URL, data=payload,
                           headers={"Stripe-Signature": sign(payload, WEBHOOK_SECRET)})
"""

from __future__ import annotations

import json
import secrets
import string
import time
from typing import Any

import stripe

__all__ = [
    "API_VERSION",
    "CREATED",
    "body",
    "card_declined_error",
    "charge",
    "checkout_session",
    "dispute",
    "event",
    "new_id",
    "payment_intent",
    "sign",
]

API_VERSION: str = stripe.api_version
CREATED = 1793620800  # 2026-11-02T12:00:00Z, after this API version was released
DAY = 86_400

_ALPHANUMERIC = string.ascii_letters + string.digits
_PMC_ID = "pmc_1TestLoyaltyPmcConfig01"  # the account's default payment method configuration
_DISPUTE_FEE = 1500  # US dispute fee, in cents
_VISA_REASON_CODES = {
    "fraudulent": "10.4",
    "duplicate": "12.6.1",
    "product_not_received": "13.1",
    "subscription_canceled": "13.2",
    "product_unacceptable": "13.3",
    "credit_not_processed": "13.6",
}


def _token(length: int) -> str:
    return "".join(secrets.choice(_ALPHANUMERIC) for _ in range(length))


def new_id(prefix: str, length: int = 24) -> str:
    """A random id in Stripe's format: ``new_id("pi")`` gives ``pi_`` and 24 letters or digits."""
    return f"{prefix}_{_token(length)}"


def _checkout_session_id() -> str:
    return f"cs_test_a1{_token(56)}"


# --- Event envelope -------------------------------------------------------------------------------


def event(
    type: str,
    obj: dict[str, Any],
    *,
    event_id: str | None = None,
    created: int | None = None,
    previous_attributes: dict[str, Any] | None = None,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """The Event as Stripe POSTs it to a webhook endpoint.

    ``previous_attributes`` (for ``*.updated`` style events, e.g. ``charge.refunded``) holds the old
    values of the fields that changed; Stripe leaves the key out when there are none.
    ``request`` names the API request that caused the event; both ids are null for events Stripe
    raises on its own (a Checkout Session completing, a dispute opening).
    """
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    return {
        "id": event_id or new_id("evt"),
        "object": "event",
        "api_version": API_VERSION,
        "created": CREATED if created is None else created,
        "data": data,
        "livemode": bool(obj.get("livemode", False)),
        "pending_webhooks": 1,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": type,
    }


def body(event_dict: dict[str, Any]) -> str:
    """The request body: JSON with two-space indents and raw UTF-8, as Stripe sends it."""
    return json.dumps(event_dict, indent=2, ensure_ascii=False)


def sign(payload: str | bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The ``Stripe-Signature`` header for ``payload``: ``t=<timestamp>,v1=<hex HMAC-SHA256>``.

    Computed by the stripe library itself. ``timestamp`` defaults to now; pass an old one to test
    the endpoint's replay tolerance.
    """
    text = payload.decode("utf-8") if isinstance(payload, bytes | bytearray) else payload
    generate = getattr(stripe.WebhookSignature, "generate_signature_header", None)
    if generate is not None:
        return generate(text, secret, timestamp=timestamp)
    # Older libraries: the same scheme verify_header checks, by hand.
    stamp = int(time.time()) if timestamp is None else timestamp
    digest = stripe.WebhookSignature._compute_signature(f"{stamp}.{text}", secret)
    return f"t={stamp},{stripe.WebhookSignature.EXPECTED_SCHEME}={digest}"


# --- Shared pieces --------------------------------------------------------------------------------


def _address() -> dict[str, Any]:
    return {
        "city": "South San Francisco",
        "country": "US",
        "line1": "354 Oyster Point Blvd",
        "line2": None,
        "postal_code": "94080",
        "state": "CA",
    }


def _billing_details() -> dict[str, Any]:
    return {
        "address": _address(),
        "email": "member@example.com",
        "name": "Jenny Rosen",
        "phone": None,
        "tax_id": None,
    }


def _card_checks() -> dict[str, Any]:
    return {"address_line1_check": "pass", "address_postal_code_check": "pass", "cvc_check": "pass"}


def _payment_method_card(last4: str) -> dict[str, Any]:
    """A card PaymentMethod object, as embedded in ``last_payment_error.payment_method``."""
    return {
        "id": new_id("pm"),
        "object": "payment_method",
        "allow_redisplay": "unspecified",
        "billing_details": _billing_details(),
        "card": {
            "brand": "visa",
            "checks": _card_checks(),
            "country": "US",
            "display_brand": "visa",
            "exp_month": 12,
            "exp_year": 2034,
            "fingerprint": _token(16),
            "funding": "credit",
            "generated_from": None,
            "last4": last4,
            "networks": {"available": ["visa"], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        "created": CREATED,
        "customer": None,
        "customer_account": None,
        "livemode": False,
        "metadata": {},
        "type": "card",
    }


# --- Checkout Session -----------------------------------------------------------------------------


def checkout_session(
    *,
    amount_subtotal: int,
    amount_total: int,
    currency: str = "usd",
    metadata: dict[str, str],
    payment_status: str = "paid",
    status: str = "complete",
    payment_intent: str | None,
    amount_discount: int = 0,
    amount_shipping: int = 0,
    session_id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A hosted ``checkout.session`` in ``payment`` mode, as in ``checkout.session.*`` events.

    ``status`` is ``complete``, ``open`` or ``expired``; ``payment_status`` is ``paid``, ``unpaid`` or
    ``no_payment_required``. Webhooks never carry ``line_items``. Customer details are only known
    once the customer has completed the page.
    """
    if status not in {"complete", "open", "expired"}:
        raise ValueError(f"unknown Checkout Session status {status!r}")
    if payment_status not in {"paid", "unpaid", "no_payment_required"}:
        raise ValueError(f"unknown Checkout Session payment_status {payment_status!r}")
    created = CREATED if created is None else created
    session_id = session_id or _checkout_session_id()
    discounts = [{"coupon": _token(8), "promotion_code": None}] if amount_discount else []
    return {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": None,
        "allowed_payment_method_types": None,
        "amount_subtotal": amount_subtotal,
        "amount_total": amount_total,
        "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
        "billing_address_collection": None,
        "branding_settings": {
            "background_color": "#ffffff",
            "border_style": "rounded",
            "button_color": "#0074d4",
            "display_name": "Loyalty test",
            "font_family": "default",
            "icon": None,
            "logo": None,
        },
        "cancel_url": "https://example.com/checkout/cancel",
        "client_reference_id": None,
        "client_secret": None,
        "collected_information": None,
        "consent": None,
        "consent_collection": None,
        "created": created,
        "currency": currency,
        "currency_conversion": None,
        "custom_fields": [],
        "custom_text": {
            "after_submit": None,
            "shipping_address": None,
            "submit": None,
            "terms_of_service_acceptance": None,
        },
        "customer": None,
        "customer_account": None,
        "customer_creation": "if_required",
        "customer_details": (
            {
                "address": _address(),
                "business_name": None,
                "email": "member@example.com",
                "individual_name": None,
                "name": "Jenny Rosen",
                "phone": None,
                "tax_exempt": "none",
                "tax_ids": [],
            }
            if status == "complete"
            else None
        ),
        "customer_email": None,
        "discounts": discounts,
        "expires_at": created + DAY,
        "integration_identifier": None,
        "invoice": None,
        "invoice_creation": {
            "enabled": False,
            "invoice_data": {
                "account_tax_ids": None,
                "custom_fields": None,
                "description": None,
                "footer": None,
                "issuer": None,
                "metadata": {},
                "rendering_options": None,
            },
        },
        "livemode": False,
        "locale": None,
        "managed_payments": {"enabled": False},
        "metadata": dict(metadata),
        "mode": "payment",
        "origin_context": None,
        "payment_intent": payment_intent,
        "payment_link": None,
        "payment_method_collection": "if_required",
        "payment_method_configuration_details": {"id": _PMC_ID, "parent": None},
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card", "link"],
        "payment_status": payment_status,
        "permissions": None,
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "saved_payment_method_options": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": status,
        "submit_type": None,
        "subscription": None,
        "success_url": "https://example.com/checkout/success?session_id={CHECKOUT_SESSION_ID}",
        "total_details": {
            "amount_discount": amount_discount,
            "amount_shipping": amount_shipping,
            "amount_tax": 0,
        },
        "ui_mode": "hosted_page",
        "url": f"https://checkout.stripe.com/c/pay/{session_id}" if status == "open" else None,
        "wallet_options": None,
    }


# --- PaymentIntent --------------------------------------------------------------------------------


def card_declined_error(*, charge: str | None, decline_code: str = "generic_decline") -> dict[str, Any]:
    """``last_payment_error`` after a card decline (test card 4000 0000 0000 0002)."""
    messages = {
        "generic_decline": "Your card was declined.",
        "insufficient_funds": "Your card has insufficient funds.",
        "lost_card": "Your card was declined.",
        "stolen_card": "Your card was declined.",
    }
    return {
        "advice_code": "try_again_later" if decline_code in {"generic_decline", "insufficient_funds"} else None,
        "charge": charge,
        "code": "card_declined",
        "decline_code": decline_code,
        "doc_url": "https://stripe.com/docs/error-codes/card-declined",
        "message": messages.get(decline_code, "Your card was declined."),
        "network_decline_code": "51" if decline_code == "insufficient_funds" else "01",
        "payment_method": _payment_method_card("0002"),
        "type": "card_error",
    }


def _three_d_secure_action() -> dict[str, Any]:
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {
            "directory_server_name": "visa",
            "merchant": new_id("acct", 16),
            "server_transaction_id": "3b9f1a5e-2c4d-4e8f-9a6b-7c1d2e3f4a5b",
            "three_d_secure_2_source": new_id("payatt"),
            "three_ds_method_url": "",
            "type": "stripe_3ds2_fingerprint",
        },
    }


def payment_intent(
    *,
    amount: int,
    currency: str = "usd",
    metadata: dict[str, str],
    status: str = "succeeded",
    intent_id: str | None = None,
    latest_charge: str | None = None,
    amount_received: int | None = None,
    last_payment_error: dict[str, Any] | None = None,
    cancellation_reason: str = "requested_by_customer",
    created: int | None = None,
) -> dict[str, Any]:
    """A ``payment_intent`` with dynamic payment methods and card payment, in one of its statuses.

    * ``succeeded`` (``payment_intent.succeeded``): ``amount_received`` defaults to ``amount`` and a
      charge id is generated when ``latest_charge`` is not given.
    * ``requires_payment_method`` (``payment_intent.payment_failed``): the declined charge is
      ``latest_charge`` and ``last_payment_error`` defaults to ``card_declined_error`` for it.
    * ``requires_action`` (``payment_intent.requires_action``): 3D Secure pending, no charge yet.
    * ``canceled`` (``payment_intent.canceled``): ``canceled_at`` and ``cancellation_reason`` set.
    """
    known = {
        "canceled",
        "processing",
        "requires_action",
        "requires_capture",
        "requires_confirmation",
        "requires_payment_method",
        "succeeded",
    }
    if status not in known:
        raise ValueError(f"unknown PaymentIntent status {status!r}")
    created = CREATED if created is None else created
    intent_id = intent_id or new_id("pi")
    payment_method: str | None = new_id("pm")
    next_action = None
    if status in {"succeeded", "requires_capture"}:
        latest_charge = latest_charge or new_id("ch")
    if status == "succeeded":
        received = amount if amount_received is None else amount_received
    else:
        received = 0 if amount_received is None else amount_received
    if status == "requires_payment_method":
        latest_charge = latest_charge or new_id("ch")
        if last_payment_error is None:
            last_payment_error = card_declined_error(charge=latest_charge)
        payment_method = None  # a declined payment method is detached from the intent
    elif status == "requires_action":
        next_action = _three_d_secure_action()
    elif status in {"canceled", "requires_confirmation"}:
        payment_method = None
    return {
        "id": intent_id,
        "object": "payment_intent",
        "allowed_payment_method_types": None,
        "amount": amount,
        "amount_capturable": amount if status == "requires_capture" else 0,
        "amount_details": {"tip": {}},
        "amount_received": received,
        "application": None,
        "application_fee_amount": None,
        "automatic_payment_methods": {"allow_redirects": "always", "enabled": True},
        "canceled_at": created + 600 if status == "canceled" else None,
        "cancellation_reason": cancellation_reason if status == "canceled" else None,
        "capture_method": "automatic_async",
        "client_secret": f"{intent_id}_secret_{_token(25)}",
        "confirmation_method": "automatic",
        "created": created,
        "currency": currency,
        "customer": None,
        "customer_account": None,
        "description": None,
        "excluded_payment_method_types": None,
        "last_payment_error": last_payment_error,
        "latest_charge": latest_charge,
        "livemode": False,
        "managed_payments": {"enabled": False},
        "metadata": dict(metadata),
        "next_action": next_action,
        "on_behalf_of": None,
        "payment_method": payment_method,
        "payment_method_configuration_details": {"id": _PMC_ID, "parent": None},
        "payment_method_options": {
            "card": {
                "installments": None,
                "mandate_options": None,
                "network": None,
                "request_three_d_secure": "automatic",
            },
            "link": {"persistent_token": None},
        },
        "payment_method_types": ["card", "link"],
        "payment_record": None,
        "processing": None,
        "receipt_email": None,
        "review": None,
        "setup_future_usage": None,
        "shipping": None,
        "source": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": status,
        "transfer_data": None,
        "transfer_group": None,
    }


# --- Charge ---------------------------------------------------------------------------------------


def charge(
    *,
    amount: int,
    amount_refunded: int = 0,
    currency: str = "usd",
    payment_intent: str,
    metadata: dict[str, str] | None = None,
    charge_id: str | None = None,
    refunded: bool | None = None,
    disputed: bool = False,
    created: int | None = None,
) -> dict[str, Any]:
    """A captured, succeeded card ``charge``, as in ``charge.refunded`` / ``charge.succeeded``.

    ``amount_refunded`` is the running total of all refunds so far; ``refunded`` is true only once
    the whole amount is refunded (derived unless given). At this API version a charge does not
    carry its ``refunds`` list (only when expanded, which webhooks never are): read refunds from
    ``refund.*`` events or the API. For ``charge.refunded``, pass
    ``previous_attributes={"amount_refunded": <before>, "refunded": <before>}`` to ``event``.
    """
    if not 0 <= amount_refunded <= amount:
        raise ValueError(f"amount_refunded must be between 0 and amount ({amount}), not {amount_refunded}")
    created = CREATED if created is None else created
    charge_id = charge_id or new_id("ch")
    return {
        "id": charge_id,
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "application": None,
        "application_fee": None,
        "application_fee_amount": None,
        "balance_transaction": new_id("txn"),
        "billing_details": _billing_details(),
        "calculated_statement_descriptor": "LOYALTY TEST",
        "captured": True,
        "created": created,
        "currency": currency,
        "customer": None,
        "description": None,
        "disputed": disputed,
        "failure_balance_transaction": None,
        "failure_code": None,
        "failure_message": None,
        "fraud_details": {},
        "livemode": False,
        "metadata": dict(metadata or {}),
        "on_behalf_of": None,
        "outcome": {
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "normal",
            "risk_score": 32,
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        "paid": True,
        "payment_intent": payment_intent,
        "payment_method": new_id("pm"),
        "payment_method_details": {
            "card": {
                "amount_authorized": amount,
                "authorization_code": "123456",
                "brand": "visa",
                "checks": _card_checks(),
                "country": "US",
                "exp_month": 12,
                "exp_year": 2034,
                "extended_authorization": {"status": "disabled"},
                "fingerprint": _token(16),
                "funding": "credit",
                "incremental_authorization": {"status": "unavailable"},
                "installments": None,
                "last4": "4242",
                "mandate": None,
                "multicapture": {"status": "unavailable"},
                "network": "visa",
                "network_token": {"used": False},
                "network_transaction_id": "104557651805572",
                "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                "regulated_status": "unregulated",
                "three_d_secure": None,
                "wallet": None,
            },
            "type": "card",
        },
        "radar_options": {},
        "receipt_email": None,
        "receipt_number": None,
        "receipt_url": f"https://pay.stripe.com/receipts/payment/CAcaFwoV{_token(88)}",
        "refunded": amount_refunded == amount if refunded is None else refunded,
        "review": None,
        "shipping": None,
        "source": None,
        "source_transfer": None,
        "statement_descriptor": None,
        "statement_descriptor_suffix": None,
        "status": "succeeded",
        "transfer_data": None,
        "transfer_group": None,
    }


# --- Dispute --------------------------------------------------------------------------------------

_DISPUTE_STATUSES = {
    "needs_response",
    "under_review",
    "won",
    "lost",
    "prevented",
    "warning_needs_response",
    "warning_under_review",
    "warning_closed",
}


def _dispute_balance_transaction(
    *, dispute_id: str, charge_id: str, amount: int, currency: str, created: int, reinstated: bool
) -> dict[str, Any]:
    fee_details: list[dict[str, Any]] = []
    if reinstated:  # the disputed amount comes back; the fee does not
        money, fee, category = amount, 0, "dispute_reversal"
        description = f"Chargeback reversal for {charge_id}"
    else:
        money, fee, category = -amount, _DISPUTE_FEE, "dispute"
        description = f"Chargeback withdrawal for {charge_id}"
        fee_details.append({
            "amount": fee,
            "application": None,
            "currency": currency,
            "description": "Dispute fee",
            "type": "stripe_fee",
        })
    return {
        "id": new_id("txn"),
        "object": "balance_transaction",
        "amount": money,
        "available_on": (created // DAY + 2) * DAY,
        "balance_type": "payments",
        "created": created,
        "currency": currency,
        "description": description,
        "exchange_rate": None,
        "fee": fee,
        "fee_details": fee_details,
        "net": money - fee,
        "reporting_category": category,
        "source": dispute_id,
        "status": "pending",
        "type": "adjustment",
    }


def _empty_evidence() -> dict[str, Any]:
    fields = [
        "access_activity_log",
        "billing_address",
        "cancellation_policy",
        "cancellation_policy_disclosure",
        "cancellation_rebuttal",
        "customer_communication",
        "customer_email_address",
        "customer_name",
        "customer_purchase_ip",
        "customer_signature",
        "duplicate_charge_documentation",
        "duplicate_charge_explanation",
        "duplicate_charge_id",
        "enhanced_evidence",
        "product_description",
        "receipt",
        "refund_policy",
        "refund_policy_disclosure",
        "refund_refusal_explanation",
        "service_date",
        "service_documentation",
        "shipping_address",
        "shipping_carrier",
        "shipping_date",
        "shipping_documentation",
        "shipping_tracking_number",
        "uncategorized_file",
        "uncategorized_text",
    ]
    evidence: dict[str, Any] = dict.fromkeys(fields)
    evidence["enhanced_evidence"] = {}
    return evidence


def dispute(
    *,
    amount: int,
    charge: str,
    payment_intent: str,
    status: str = "needs_response",
    reason: str = "fraudulent",
    currency: str = "usd",
    dispute_id: str | None = None,
    created: int | None = None,
) -> dict[str, Any]:
    """A card ``dispute``, as in ``charge.dispute.*`` events.

    Chargebacks (``needs_response``, ``under_review``, ``won``, ``lost``) carry the balance
    transaction that withdrew the amount plus the dispute fee; ``won`` adds the one that
    reinstated the amount. Inquiries (``warning_*``) move no money. ``under_review``, ``won`` and
    ``lost`` count one manual evidence submission.
    """
    if status not in _DISPUTE_STATUSES:
        raise ValueError(f"unknown dispute status {status!r}")
    created = CREATED if created is None else created
    dispute_id = dispute_id or new_id("du")
    inquiry = status.startswith("warning_")
    submitted = status in {"under_review", "won", "lost", "warning_under_review"}
    transactions: list[dict[str, Any]] = []
    if not inquiry and status != "prevented":
        common = {"dispute_id": dispute_id, "charge_id": charge, "amount": amount, "currency": currency}
        transactions.append(_dispute_balance_transaction(**common, created=created, reinstated=False))
        if status == "won":
            transactions.append(_dispute_balance_transaction(**common, created=created + 30 * DAY, reinstated=True))
    return {
        "id": dispute_id,
        "object": "dispute",
        "amount": amount,
        "balance_transactions": transactions,
        "charge": charge,
        "created": created,
        "currency": currency,
        "enhanced_eligibility_types": [],
        "evidence": _empty_evidence(),
        "evidence_details": {
            "due_by": (created // DAY + 9) * DAY - 1,  # end of the day, eight days on
            "enhanced_eligibility": {},
            "has_evidence": submitted,
            "past_due": False,
            "submission_count": 1 if submitted else 0,
            "submission_method": "manual" if submitted else "not_submitted",
        },
        "intended_submission_method": None,  # null unless the account has Smart Disputes
        "is_charge_refundable": inquiry or status == "prevented",
        "livemode": False,
        "metadata": {},
        "payment_intent": payment_intent,
        "payment_method_details": {
            "card": {
                "brand": "visa",
                "case_type": "inquiry" if inquiry else "chargeback",
                "network": "visa",
                "network_reason_code": _VISA_REASON_CODES.get(reason),
            },
            "type": "card",
        },
        "reason": reason,
        "status": status,
    }
