"""Tier definitions, each member's tier, and the history of changes."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.clock import now
from loyalty.db import DecimalText, UTCDateTime, new_public_id
from loyalty.extensions import db

BASES = ("points", "spend")


class Tier(db.Model):
    __tablename__ = "tiers"
    __table_args__ = (
        CheckConstraint("basis IN ('points', 'spend')", name="basis"),
        CheckConstraint("rank >= 0 AND threshold >= 0 AND window_days > 0", name="ranges"),
        CheckConstraint("rank <> 0 OR threshold = 0", name="base_tier_is_free"),
        CheckConstraint("basis <> 'spend' OR currency IS NOT NULL", name="spend_has_currency"),
        CheckConstraint("discount_percent BETWEEN 0 AND 100 AND early_access_hours >= 0", name="benefits"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("tier"))
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # Unique: ranks order the tiers; rank 0 is the one base tier everyone starts in.
    rank: Mapped[int] = mapped_column(unique=True)
    threshold: Mapped[int] = mapped_column(BigInteger)
    basis: Mapped[str] = mapped_column(String(8))
    currency: Mapped[str | None] = mapped_column(String(3))  # the spend basis counts orders in this currency
    window_days: Mapped[int]
    earn_multiplier: Mapped[Decimal] = mapped_column(DecimalText, default=Decimal(1))
    discount_percent: Mapped[int] = mapped_column(default=0)
    early_access_hours: Mapped[int] = mapped_column(default=0)
    perks: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)


class MemberTier(db.Model):
    """A member's current tier. No row: the base tier. The row is also what serialises tier changes."""

    __tablename__ = "member_tiers"
    __table_args__ = (Index("ix_member_tiers_tier_id", "tier_id"),)

    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), primary_key=True)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))
    since: Mapped[datetime] = mapped_column(UTCDateTime)
    # The tier is kept at least until then, whatever the member does meanwhile.
    retained_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TierChange(db.Model):
    """Tier history, insert-only."""

    __tablename__ = "tier_changes"
    __table_args__ = (
        Index("ix_tier_changes_member_id_id", "member_id", "id"),
        Index("ix_tier_changes_at", "at"),  # tier movements per period
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    from_tier_id: Mapped[int | None] = mapped_column(ForeignKey("tiers.id"))
    to_tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))
    reason: Mapped[str] = mapped_column(String(300))
    qualifying_amount: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
