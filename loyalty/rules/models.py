"""Rule versions, and the awards that record which rule gave which points."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.clock import now
from loyalty.db import UTCDateTime
from loyalty.extensions import db

RULE_STATUSES = ("draft", "published")


class RuleVersion(db.Model):
    """A rules document. Drafts are edited; a published version is frozen, and the one in force at a
    moment is the published version with the latest `effective_from` not after it."""

    __tablename__ = "rule_versions"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'published')", name="status"),
        CheckConstraint("(status = 'published') = (effective_from IS NOT NULL)", name="published_has_effective_from"),
        Index("ix_rule_versions_status_effective_from", "status", "effective_from"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    note: Mapped[str | None] = mapped_column(String(300))
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Unique: two versions can never take effect at the same instant, so "in force" is never ambiguous.
    effective_from: Mapped[datetime | None] = mapped_column(UTCDateTime, unique=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    published_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RuleAward(db.Model):
    """One line of an earn's breakdown: which rule gave how many points, and why. Insert-only.
    Also what the engine's member context counts: campaign points so far, events already paid."""

    __tablename__ = "rule_awards"
    __table_args__ = (Index("ix_rule_awards_member_id_rule", "member_id", "rule"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    rule: Mapped[str] = mapped_column(String(80))
    points: Mapped[int] = mapped_column(BigInteger)
    # For a campaign: what the member kept after the order's caps, which is what counts toward the
    # campaign's limit per member.
    kept: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
