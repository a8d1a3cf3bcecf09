"""Stripe events as received: each stored once, by Stripe's id, in the transaction that applies it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.clock import now
from loyalty.db import UTCDateTime
from loyalty.extensions import db

EVENT_STATUSES = ("applied", "ignored", "waiting", "failed")


class StripeEvent(db.Model):
    __tablename__ = "stripe_events"
    __table_args__ = (
        CheckConstraint("status IN ('applied', 'ignored', 'waiting', 'failed')", name="status"),
        Index("ix_stripe_events_status_waiting_for", "status", "waiting_for"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique: a redelivered event finds its first delivery and changes nothing.
    event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100))
    object_id: Mapped[str | None] = mapped_column(String(255))
    livemode: Mapped[bool] = mapped_column(default=False)
    stripe_created: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(8))
    detail: Mapped[str | None] = mapped_column(String(500))
    # What an early event waits for (a refund for its payment): applied once that arrives.
    waiting_for: Mapped[str | None] = mapped_column(String(300))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
