"""Paid orders: record them once and earn by the rules in force when they were paid.
Adds and flushes; never commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from loyalty.checkout.models import Order
from loyalty.errors import Conflict, ValidationProblem
from loyalty.extensions import db
from loyalty.idempotency import fingerprint
from loyalty.ledger.models import JournalTransaction
from loyalty.ledger.service import Ledger
from loyalty.members.models import Member
from loyalty.rules import engine
from loyalty.rules import service as rules
from loyalty.tiers import service as tiers


@dataclass(frozen=True)
class OrderResult:
    order: Order
    breakdown: tuple[engine.BreakdownItem, ...]
    transaction_public_id: str | None


def engine_order_from(data: dict[str, Any]) -> engine.Order:
    """The engine's view of an order given as the API's fields."""
    lines = tuple(engine.Line(sku=line["sku"], quantity=line["quantity"], unit_amount=line["unit_amount"],
                              category=line.get("category"), discount_amount=line.get("discount_amount") or 0)
                  for line in data["lines"])
    return engine.Order(currency=data["currency"], lines=lines, shipping_amount=data.get("shipping_amount") or 0,
                        discount_amount=data.get("discount_amount") or 0)


def engine_order(order: Order) -> engine.Order:
    return engine_order_from({"currency": order.currency, "lines": order.lines,
                              "shipping_amount": order.shipping_amount, "discount_amount": order.discount_amount})


def _member(public_id: str) -> Member:
    member = db.session.scalar(select(Member).where(Member.public_id == public_id))
    if member is None:
        raise ValidationProblem(errors={"member_id": ["No member has this id."]})
    return member


def record_paid_order(payload: dict[str, Any], *, now: datetime) -> OrderResult:
    """Record a paid order and earn its points. The same order_id with the same details answers the
    first result; with other details it is a conflict."""
    request_hash = fingerprint(payload)
    existing = db.session.scalar(select(Order).where(Order.order_id == payload["order_id"]))
    if existing is not None:
        return _replay(existing, request_hash)
    member = _member(payload["member_id"])
    paid_at = payload.get("paid_at") or now
    if paid_at > now:
        raise ValidationProblem(errors={"paid_at": ["Cannot be in the future."]})
    order = Order(order_id=payload["order_id"], member_id=member.id, channel=payload.get("channel", "web"),
                  currency=payload["currency"], total_amount=payload["total_amount"],
                  shipping_amount=payload.get("shipping_amount", 0), discount_amount=payload.get("discount_amount", 0),
                  lines=[{k: v for k, v in line.items() if v is not None} for line in payload["lines"]],
                  paid_at=paid_at, request_hash=request_hash)
    try:
        with db.session.begin_nested():
            db.session.add(order)
    except IntegrityError:  # the same order arrived twice at once: the first one decides
        return _replay(db.session.scalar(select(Order).where(Order.order_id == payload["order_id"])), request_hash)
    first_order = not _has_earlier_orders(member, order)
    if first_order and member.referred_by_id:
        Ledger(db.session).lock_members([member.id, member.referred_by_id])
    result, version = rules.evaluate_order(member, engine_order(order), paid_at, exclude_order=order.id)
    txn = rules.earn(member, result, kind="earn", reference=f"order:{order.order_id}:earn", now=now,
                     version=version, order_id=order.order_id,
                     description=f"Order {order.order_id}: {result.points} points")
    order.points_earned, order.rule_version = result.points, version.version if version else None
    order.breakdown = [{"rule": i.rule, "points": i.points, "detail": i.detail} for i in result.breakdown]
    order.pending_until = result.pending_until if txn else None
    order.earn_transaction_id = txn.id if txn else None
    if first_order and member.referred_by_id:
        _pay_referral(member, order, now)
    tiers.upgrade_if_qualified(member, now)
    db.session.flush()
    return OrderResult(order, _breakdown_of(order), txn.public_id if txn else None)


def _has_earlier_orders(member: Member, order: Order) -> bool:
    return db.session.scalar(select(Order.id).where(Order.member_id == member.id, Order.id != order.id).limit(1)) \
        is not None


def _pay_referral(member: Member, order: Order, now: datetime) -> None:
    """Both sides of a referral are paid when the referred member's first order is paid."""
    referrer = db.session.get(Member, member.referred_by_id)
    rules.award_event(member, "referral_referred", now=now, reference=f"referral:{member.public_id}:referred")
    if referrer.status != "erased":
        rules.award_event(referrer, "referral_referrer", now=now,
                          reference=f"referral:{member.public_id}:referrer")


def _replay(order: Order, request_hash: str) -> OrderResult:
    if order.request_hash != request_hash:
        raise Conflict("This order_id was already recorded with other details.", code="order_conflict")
    txn = db.session.get(JournalTransaction, order.earn_transaction_id) if order.earn_transaction_id else None
    return OrderResult(order, _breakdown_of(order), txn.public_id if txn else None)


def _breakdown_of(order: Order) -> tuple[engine.BreakdownItem, ...]:
    return tuple(engine.BreakdownItem(**item) for item in order.breakdown)
