"""Offers, their codes, and the uses of codes."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.clock import now
from loyalty.db import UTCDateTime, new_public_id
from loyalty.extensions import db

OFFER_KINDS = ("percent_off", "amount_off", "free_shipping")


class Offer(db.Model):
    __tablename__ = "offers"
    __table_args__ = (
        CheckConstraint("kind IN ('percent_off', 'amount_off', 'free_shipping')", name="kind"),
        CheckConstraint("kind <> 'percent_off' OR (percent BETWEEN 1 AND 100)", name="percent"),
        CheckConstraint("kind <> 'amount_off' OR (amount > 0 AND currency IS NOT NULL)", name="amount"),
        CheckConstraint("ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at", name="window"),
        CheckConstraint("uses_per_code IS NULL OR uses_per_code > 0", name="uses_per_code"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("off"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    kind: Mapped[str] = mapped_column(String(16))
    percent: Mapped[int | None]
    amount: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    min_order_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    # Scope: {"include_skus": [...], "include_categories": [...], "exclude_skus": [...], "exclude_categories": [...]}
    scope: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    eligible_tiers: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Tier code -> hours before starts_at; null hours: the tier's own early-access hours.
    early_access: Mapped[dict[str, int | None]] = mapped_column(JSON, default=dict)
    usage_limit_total: Mapped[int | None]
    usage_limit_per_member: Mapped[int | None]
    # Orders one unique code may pay for (None: no limit of its own); a public code has no limit of its own.
    uses_per_code: Mapped[int | None]
    combines_with_points: Mapped[bool] = mapped_column(default=True)
    combines_with_tier_discount: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)


class OfferCode(db.Model):
    """A code that applies an offer: one public code, or one of many unique codes, maybe assigned."""

    __tablename__ = "offer_codes"
    __table_args__ = (
        CheckConstraint("kind IN ('public', 'unique')", name="kind"),
        CheckConstraint("uses >= 0", name="uses"),
        Index("ix_offer_codes_offer_id_id", "offer_id", "id"),
        Index("ix_offer_codes_member_id", "member_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("cpn"))
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"))
    # Stored normalised (upper case, no separators): unique, and looked up whatever case is typed.
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(8))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    active: Mapped[bool] = mapped_column(default=True)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A unique code's uses reserved or consumed: the guarded counter its `uses_per_code` is arbitrated on.
    # A public code's stays 0, so checkouts of a popular code never queue on its row.
    uses: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class CouponUse(db.Model):
    """One use of a code: reserved by a checkout, then consumed or released. Uses count toward limits
    while reserved (until they expire) and once consumed."""

    __tablename__ = "coupon_uses"
    __table_args__ = (
        CheckConstraint("status IN ('reserved', 'consumed', 'released')", name="status"),
        Index("ix_coupon_uses_offer_id_status", "offer_id", "status"),
        Index("ix_coupon_uses_code_id_status", "code_id", "status"),
        Index("ix_coupon_uses_offer_id_member_id", "offer_id", "member_id"),
        Index("ix_coupon_uses_status_resolved_at", "status", "resolved_at"),  # uses per period
        Index("ix_coupon_uses_member_id", "member_id"),  # a member's export
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"))
    code_id: Mapped[int] = mapped_column(ForeignKey("offer_codes.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    status: Mapped[str] = mapped_column(String(10), default="reserved")
    # The checkout's own id for this use (a redemption): one use per reference.
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    order_id: Mapped[str | None] = mapped_column(String(128))  # the shop's order the use is for
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Reward(db.Model):
    """An entry of the reward catalog: spend points for a coupon of an offer."""

    __tablename__ = "rewards"
    __table_args__ = (
        CheckConstraint("points_cost > 0", name="points_cost"),
        CheckConstraint("stock IS NULL OR claimed <= stock", name="stock"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("rwd"))
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(String(1000))
    points_cost: Mapped[int] = mapped_column(BigInteger)
    stock: Mapped[int | None]  # None: unlimited
    claimed: Mapped[int] = mapped_column(default=0)
    per_member_limit: Mapped[int | None]
    coupon_valid_days: Mapped[int] = mapped_column(default=30)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class RewardClaim(db.Model):
    __tablename__ = "reward_claims"
    __table_args__ = (
        Index("ix_reward_claims_reward_id_member_id", "reward_id", "member_id"),
        Index("ix_reward_claims_member_id", "member_id"),  # a member's export and erasure
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    code_id: Mapped[int] = mapped_column(ForeignKey("offer_codes.id"))
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"))
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
