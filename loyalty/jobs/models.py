"""What the jobs remember: reminders already sent, and when each job is next due."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.clock import now
from loyalty.db import UTCDateTime
from loyalty.extensions import db


class ExpiryReminder(db.Model):
    """A `points.expiring` event was emitted for this lot (a dated expiry), or for this member's stretch of
    inactivity that began at `activity_at` (the inactivity policy): unique, so each is announced once."""

    __tablename__ = "expiry_reminders"
    __table_args__ = (UniqueConstraint("member_id", "activity_at", name="uq_expiry_reminders_member_id_activity_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_lots.id"), unique=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class JobSchedule(db.Model):
    """When a job next runs. Workers take a job only under its lock and only when due, so several workers
    run each scheduled run once."""

    __tablename__ = "job_schedule"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_result: Mapped[str | None] = mapped_column(String(300))
