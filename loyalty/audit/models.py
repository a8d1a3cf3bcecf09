"""The audit log's tables: one entry per audited unit of work, and the rows it touched, for look-ups.

Both are append-only: the mappers refuse UPDATE and DELETE here, and the database refuses them too
(triggers, migration 5a2d3b8c9e21), whatever connects to it. Retention is not built yet: a purge would be a
deliberate, privileged job (the triggers stand in its way on purpose).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, event
from sqlalchemy.orm import Mapped, mapped_column, relationship

from loyalty.clock import now
from loyalty.db import UTCDateTime, new_public_id
from loyalty.extensions import db

ACTOR_KINDS = ("staff", "api_key")
# Big on PostgreSQL (every checkout write by a key adds an entry); SQLite's rowid alias must be INTEGER.
ENTRY_ID = BigInteger().with_variant(Integer(), "sqlite")


class AuditEntry(db.Model):
    """One audited unit of work: who, what (`action`), when, the request it came from and what it changed."""

    __tablename__ = "audit_log"
    __table_args__ = (
        CheckConstraint("actor_kind IN ('staff', 'api_key')", name="actor_kind"),
        # Newest first is the primary key backwards; these serve the filters.
        Index("ix_audit_log_actor_id_id", "actor_id", "id"),
        Index("ix_audit_log_occurred_at", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(ENTRY_ID, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("aud"))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(32))
    # As the actor was called then: a staff member's email, an API key's name and prefix.
    actor_label: Mapped[str] = mapped_column(String(300))
    # "POST /v1/admin/members/{member_id}/adjustments", or the console page's address template.
    action: Mapped[str] = mapped_column(String(300))
    request_id: Mapped[str | None] = mapped_column(String(64))
    # The API's answer; None for console forms, whose page is drawn after the commit.
    status_code: Mapped[int | None]
    # JSON: [{table, id, op, before, after}, ..., {table, more}], secrets redacted (loyalty.audit.service).
    changes: Mapped[str] = mapped_column(Text)
    # Written with the entry, never loaded through it; never nulled or deleted with it (nothing is deleted).
    resources: Mapped[list[AuditResource]] = relationship(back_populates="entry", lazy="raise",
                                                          cascade="save-update", passive_deletes="all")

    @property
    def change_list(self) -> list[dict[str, Any]]:
        return json.loads(self.changes)


class AuditResource(db.Model):
    """A row an entry changed, so "what happened to tier_x" and "who touched members" are index look-ups."""

    __tablename__ = "audit_log_resources"
    __table_args__ = (
        Index("ix_audit_log_resources_resource_id_entry_id", "resource_id", "entry_id"),
        Index("ix_audit_log_resources_table_name_entry_id", "table_name", "entry_id"),
    )

    entry_id: Mapped[int] = mapped_column(ENTRY_ID, ForeignKey("audit_log.id"), primary_key=True)
    table_name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # The row's public id, or its primary key for rows without one.
    resource_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    entry: Mapped[AuditEntry] = relationship(back_populates="resources")


class AuditLogIsAppendOnly(Exception):
    """Raised when code tries to edit or delete an audit row."""


def _refuse_change(mapper, connection, target) -> None:
    raise AuditLogIsAppendOnly(f"{type(target).__name__} rows are append-only")


for _model in (AuditEntry, AuditResource):
    event.listen(_model, "before_update", _refuse_change)
    event.listen(_model, "before_delete", _refuse_change)
