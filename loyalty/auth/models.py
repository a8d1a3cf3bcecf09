"""Staff users and API keys."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.auth.sessions import SESSION_KEY_LENGTH, new_session_key, session_id
from loyalty.clock import now
from loyalty.db import UTCDateTime, new_public_id
from loyalty.extensions import db

STAFF_ROLES = ("admin", "manager", "support", "analyst")
API_KEY_SCOPES = ("members:read", "members:write", "checkout", "admin")


class StaffUser(db.Model):
    __tablename__ = "staff_users"
    __table_args__ = (
        CheckConstraint("role IN ('admin', 'manager', 'support', 'analyst')", name="role"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, default=lambda: new_public_id("stf")
    )
    email: Mapped[str] = mapped_column(String(254))
    name: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Rotated to end every open session (`loyalty.auth.sessions`).
    session_key: Mapped[str] = mapped_column(String(SESSION_KEY_LENGTH), default=new_session_key)

    # flask-login: one session cookie serves members and staff, so ids carry their kind.
    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.active

    def get_id(self) -> str:
        return session_id("staff", self)


# Emails are unique whatever their case; the index also serves case-insensitive look-ups.
Index("uq_staff_users_email_lower", func.lower(StaffUser.email), unique=True)


class ApiKey(db.Model):
    """A server credential. Only a SHA-256 of the secret is kept: keys are long and random,
    so a fast hash is enough, and it lets a request find its key with one indexed lookup."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(
        String(32), unique=True, default=lambda: new_public_id("key")
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[str] = mapped_column(String(200))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split() if self.scopes else []
