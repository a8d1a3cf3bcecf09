"""Paid orders and their refunds: written by checkout (and the Stripe webhooks through it), read by the tiers
(spend over a window), the rules (orders paid so far) and the reports. Their own package, below every service
that reads them, so reading an order never means importing checkout."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loyalty.clock import now
from loyalty.db import UTCDateTime, new_public_id
from loyalty.extensions import db

CHANNELS = ("web", "app", "store")
DISPUTE_STATUSES = ("open", "won", "lost")


class Order(db.Model):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("channel IN ('web', 'app', 'store')", name="channel"),
        CheckConstraint("status IN ('paid', 'partially_refunded', 'refunded')", name="status"),
        CheckConstraint("refunded_amount >= 0 AND refunded_amount <= total_amount", name="refunded_within_total"),
        CheckConstraint("dispute_status IS NULL OR dispute_status IN ('open', 'won', 'lost')", name="dispute_status"),
        Index("ix_orders_member_id_paid_at", "member_id", "paid_at"),
        Index("ix_orders_paid_at", "paid_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # The shop's own order id: unique, so the same order earns once.
    order_id: Mapped[str] = mapped_column(String(128), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    channel: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[int] = mapped_column(BigInteger)
    shipping_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    discount_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="paid")
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    # The engine's explanation, kept so a replay answers exactly what the first call did.
    breakdown: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    pending_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    rule_version: Mapped[int | None]
    earn_transaction_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"))
    request_hash: Mapped[str] = mapped_column(String(64))
    # The redemption the order was paid with, captured when the order was recorded.
    redemption_id: Mapped[int | None] = mapped_column(ForeignKey("redemptions.id"), unique=True)
    # Stripe's PaymentIntent, so charge and dispute events find their order.
    payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    refunded_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    points_clawed_back: Mapped[int] = mapped_column(BigInteger, default=0)
    points_restored: Mapped[int] = mapped_column(BigInteger, default=0)
    dispute_status: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class Refund(db.Model):
    """Money given back on an order, and the points that followed it: refunds add up to the order's total."""

    __tablename__ = "refunds"
    __table_args__ = (
        UniqueConstraint("order_id", "refund_id", name="uq_refunds_order_id_refund_id"),
        CheckConstraint("amount > 0", name="amount_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("rfd"))
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    # The shop's refund id; for Stripe, derived from the charge and its cumulative amount refunded.
    refund_id: Mapped[str] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(8), default="api")  # api, stripe, dispute
    amount: Mapped[int] = mapped_column(BigInteger)
    points_clawed_back: Mapped[int] = mapped_column(BigInteger, default=0)
    shortfall: Mapped[int] = mapped_column(BigInteger, default=0)
    points_restored: Mapped[int] = mapped_column(BigInteger, default=0)
    reason: Mapped[str | None] = mapped_column(String(300))
    request_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    order: Mapped[Order] = relationship(viewonly=True)
