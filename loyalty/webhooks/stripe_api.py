"""The optional Stripe API client: only for what a webhook payload lacks (a Checkout Session's line items).

Without `LOYALTY_STRIPE_API_KEY` nothing is fetched and events are applied from their payload alone. A
failed fetch falls back to the payload too: a payment is never left unrecorded for want of its lines.
"""

from __future__ import annotations

import logging
from typing import Any

import stripe

from loyalty.settings import Settings

log = logging.getLogger(__name__)


def _client(settings: Settings) -> stripe.StripeClient | None:
    key = settings.stripe_api_key
    if not key:
        return None
    base = settings.stripe_api_base
    return stripe.StripeClient(key, base_addresses={"api": base} if base else None, max_network_retries=1)


def session_lines(session_id: str, settings: Settings) -> list[dict[str, Any]] | None:
    """The session's line items as order lines (sku = the product, amounts before tax), or None."""
    client = _client(settings)
    if client is None:
        return None
    try:
        items = client.v1.checkout.sessions.line_items.list(session_id, params={"limit": 100})
    except stripe.StripeError as error:
        log.warning("could not fetch the line items of %s: %s", session_id, error)
        return None
    lines = []
    for item in items.data:
        price = item.price
        product = price.product if price and isinstance(price.product, str) else None
        quantity = item.quantity or 1
        unit_amount = -(-item.amount_subtotal // quantity)  # rounded up; the cents over go to the discount
        lines.append({"sku": product or (price.id if price else item.id), "quantity": quantity,
                      "unit_amount": unit_amount,
                      "discount_amount": unit_amount * quantity - item.amount_subtotal + (item.amount_discount or 0)})
    return lines or None
