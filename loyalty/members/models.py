"""Members and their consent history."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.auth.sessions import SESSION_KEY_LENGTH, new_session_key, session_id
from loyalty.clock import now
from loyalty.db import UTCDateTime, new_public_id
from loyalty.extensions import db

MEMBER_STATUSES = ("active", "suspended", "erased")
CONSENT_PURPOSES = ("marketing_email", "sms", "personalised_offers")


class Member(db.Model):
    __tablename__ = "members"
    __table_args__ = (
        CheckConstraint("status IN ('active', 'suspended', 'erased')", name="status"),
        Index("ix_members_created_at", "created_at"),  # new members per period
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, default=lambda: new_public_id("mem")
    )
    # Nullable so erasure can remove it; unique case-insensitively through the index below.
    email: Mapped[str | None] = mapped_column(String(254))
    external_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    name: Mapped[str | None] = mapped_column(String(200))
    birthday: Mapped[date | None] = mapped_column(Date)
    # Members enrolled by the shop have no password until they set one.
    password_hash: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="active")
    referral_code: Mapped[str] = mapped_column(String(16), unique=True)
    referred_by_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now, onupdate=now)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the member's personal data was erased (`loyalty.privacy.service.erase`); status is then `erased`.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Rotated to end every open session (`loyalty.auth.sessions`).
    session_key: Mapped[str] = mapped_column(String(SESSION_KEY_LENGTH), default=new_session_key)

    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        # Suspended members may still sign in and see their account; erased ones may not.
        return self.status != "erased"

    def get_id(self) -> str:
        return session_id("member", self)


Index("uq_members_email_lower", func.lower(Member.email), unique=True)


class MemberConsent(db.Model):
    """One grant or withdrawal of consent for a purpose: an append-only history."""

    __tablename__ = "member_consents"
    # The current state is the latest row per purpose: max(id) per (member_id, purpose), read from this index.
    __table_args__ = (Index("ix_member_consents_member_id_purpose_id", "member_id", "purpose", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool]
    source: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
