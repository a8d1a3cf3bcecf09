"""Paid orders, as the shop reports them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.clock import now
from loyalty.db import UTCDateTime
from loyalty.extensions import db

CHANNELS = ("web", "app", "store")


class Order(db.Model):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("channel IN ('web', 'app', 'store')", name="channel"),
        CheckConstraint("status IN ('paid', 'partially_refunded', 'refunded')", name="status"),
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
