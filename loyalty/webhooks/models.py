"""Inbound Stripe events, each stored once by Stripe's id, with what became of it; the outbox of events for the
shop's tools, the endpoints staff registered for them, and their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, query_expression, relationship, synonym

from loyalty.clock import now
from loyalty.db import UTCDateTime, new_public_id
from loyalty.extensions import db

EVENT_STATUSES = ("applied", "ignored", "waiting", "failed")
RETRYABLE_STATUSES = ("failed", "waiting")  # what staff may try again: the others are settled


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
    # A paid Checkout Session's line items, fetched from Stripe's API before the event was stored, so that
    # applying it (again, on a retry) never waits on Stripe inside a transaction. None: not fetched.
    line_items: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Stripe's id is the public one (pagination reads `public_id`).
    public_id: Mapped[str] = synonym("event_id")
    # Waiting past the configured time, which depends on the clock: set by the queries that list events.
    overdue: Mapped[bool | None] = query_expression()


class OutboxEvent(db.Model):
    """Something that happened, written in the transaction that made it happen, for delivery to the shop's
    tools. `dispatched_at` is set once a delivery row exists for every endpoint that wants it."""

    __tablename__ = "outbox_events"
    __table_args__ = (Index("ix_outbox_events_dispatched_at_id", "dispatched_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("evt"))
    type: Mapped[str] = mapped_column(String(40))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookEndpoint(db.Model):
    """A URL staff registered to receive events, signed with its own secret."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("whe"))
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(300))
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: every type
    # Kept as is: it signs every delivery. Shown once, at creation.
    secret: Mapped[str] = mapped_column(String(80))
    enabled: Mapped[bool] = mapped_column(default=True)
    failing: Mapped[bool] = mapped_column(default=False)
    consecutive_failures: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class WebhookDelivery(db.Model):
    """One event for one endpoint: pending until delivered, retried with backoff, failed after the last try."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_deliveries_endpoint_id_event_id"),
        CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_event_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("whd"))
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id"))
    status: Mapped[str] = mapped_column(String(10), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    # Also the lease: a worker sending it moves this ahead, so a killed worker's delivery is retried later.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(300))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    event: Mapped[OutboxEvent] = relationship(viewonly=True)
