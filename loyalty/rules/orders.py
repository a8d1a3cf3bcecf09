"""The order as the rules engine sees it, built from the API's fields or from a stored order.

Beside the engine, so everything that evaluates an order (checkout, the rules' simulation and impact, the
console's simulator) builds it the same way without importing checkout. Pure, as the engine is: a stored order
is read through the attributes below, never through the database.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from loyalty.rules.engine import Line, Order


class StoredOrder(Protocol):
    """What the engine reads of a paid order as stored (`loyalty.orders.models.Order`)."""

    currency: str
    lines: Sequence[Mapping[str, Any]]
    shipping_amount: int
    discount_amount: int


def engine_order_from(data: Mapping[str, Any]) -> Order:
    """The rules engine's view of an order given as the API's fields."""
    lines = tuple(Line(sku=line["sku"], quantity=line["quantity"], unit_amount=line["unit_amount"],
                       category=line.get("category"), discount_amount=line.get("discount_amount") or 0)
                  for line in data["lines"])
    return Order(currency=data["currency"], lines=lines, shipping_amount=data.get("shipping_amount") or 0,
                 discount_amount=data.get("discount_amount") or 0)


def engine_order(order: StoredOrder) -> Order:
    return engine_order_from({"currency": order.currency, "lines": order.lines,
                              "shipping_amount": order.shipping_amount, "discount_amount": order.discount_amount})
