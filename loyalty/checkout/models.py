"""Checkout's table: redemptions, points and a coupon held while a payment runs. Paid orders and their refunds
are `loyalty.orders.models`, which the tiers and the rules read too."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loyalty.clock import now
from loyalty.db import UTCDateTime, new_public_id
from loyalty.extensions import db
from loyalty.members.models import Member

REDEMPTION_STATUSES = ("held", "captured", "released")


class Redemption(db.Model):
    """Points and/or one coupon use reserved for an order while it is paid: held, then captured or released."""

    __tablename__ = "redemptions"
    __table_args__ = (
        CheckConstraint("status IN ('held', 'captured', 'released')", name="status"),
        CheckConstraint("points >= 0 AND amount >= 0", name="not_negative"),
        Index("ix_redemptions_status_expires_at", "status", "expires_at"),
        Index("ix_redemptions_member_id", "member_id"),
        Index("ix_redemptions_order_id", "order_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("red"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    order_id: Mapped[str] = mapped_column(String(128))  # the shop's order id
    currency: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(BigInteger)  # the order's amount before the loyalty discounts
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    points_discount_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    coupon_code: Mapped[str | None] = mapped_column(String(64))
    coupon_discount_amount: Mapped[int] = mapped_column(BigInteger, default=0)
    hold_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_holds.id"))
    status: Mapped[str] = mapped_column(String(10), default="held")
    # canceled, expired, payment_canceled, session_expired
    release_reason: Mapped[str | None] = mapped_column(String(32))
    # Set when a payment went through after the hold was released and the points could not be taken again.
    problem: Mapped[str | None] = mapped_column(String(300))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    member: Mapped[Member] = relationship(viewonly=True)

    @property
    def discount_amount(self) -> int:
        return self.points_discount_amount + self.coupon_discount_amount

    @property
    def coupon_reference(self) -> str:
        return f"redemption:{self.public_id}"
