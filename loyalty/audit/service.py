"""Capture what a staff member's or an API key's unit of work changed, and keep it as one audit entry.

`capturing(actor)` opens an audited unit of work (`@write` opens one for every staff and API-key request,
the console's `attempt` for every staff form); members acting on themselves, Stripe's webhooks and jobs
open none, so nothing is recorded for them. While one is open, every flush of the request's session notes
the ORM rows it inserted, updated and deleted, from SQLAlchemy's attribute history (`after_flush`, where the
history is still the flush's and new rows already have their ids): no extra SELECT. `record` then adds one
`AuditEntry` just before the unit of work commits, so a refused (rolled back) request leaves nothing.

What is kept, and what never is:
- secrets are always "[redacted]" (passwords, key hashes, webhook secrets, tokens); a member's personal
  fields are "[personal data]": the entry says they changed, never to what, so this log (which nothing may
  edit) holds nothing a member's erasure would have to remove;
- ledger internals (accounts, postings, lots, lot movements) and rows derived from recorded ones (outbox
  events, rule awards) are left out; the journal transaction stays, without balances: kind, points,
  description, reference, order;
- at most `ROWS_PER_TABLE` rows of a table in detail, then `{"table": ..., "more": N}`; long values cut.
Every successful audited unit of work is one entry, even when no row is itemised: rows written with bulk SQL
rather than ORM objects (generated coupon codes) are not, and a rules simulation changes none.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from flask import g, has_app_context, request
from flask_login import current_user
from sqlalchemy import Select, event, inspect, select
from sqlalchemy.orm import Mapper, Session, SessionTransaction
from sqlalchemy.orm.state import InstanceState

from loyalty.audit.models import AuditEntry, AuditResource
from loyalty.auth.models import ApiKey, StaffUser
from loyalty.clock import now
from loyalty.errors import NotFound
from loyalty.extensions import db
from loyalty.members.models import Member
from loyalty.pagination import paginate

ROWS_PER_TABLE = 20
MAX_VALUE_LENGTH = 1000
REDACTED = "[redacted]"
PERSONAL = "[personal data]"

# Infrastructure and derived rows: the log itself, stored idempotent answers (which hold whole response
# bodies, an API key's secret included), outbox events and rule awards (derived from the rows recorded: the
# journal transaction, the order's breakdown), ledger internals.
SKIPPED_TABLES = frozenset({
    "audit_log", "audit_log_resources", "idempotency_keys", "outbox_events", "rule_awards",
    "ledger_accounts", "ledger_postings", "ledger_lots", "ledger_lot_movements",
})
# Of these tables, only these columns: a journal transaction without its balances.
KEPT_COLUMNS = {"ledger_transactions": ("kind", "points", "description", "reference", "order_id")}
_SECRET_NAMES = frozenset({"password_hash", "key_hash", "secret", "secret_hash", "token"})
_SECRET_PARTS = ("password", "secret", "token")
_PERSONAL_COLUMNS = {"members": frozenset({"email", "name", "birthday", "external_id", "phone"})}
_ROW_IDS = frozenset({"id", "public_id"})  # shown as the row's id, not among its columns
_CAPTURE = "audit_capture"
_URL_VARIABLE = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


@dataclass(frozen=True)
class Actor:
    kind: str  # staff or api_key
    id: str  # public id
    label: str


# --- who ------------------------------------------------------------------------------------------------------------

def request_actor() -> Actor | None:
    """The caller of this API request when it is audited: staff or an API key, never a member."""
    principal = g.get("principal")
    if principal is None or principal.kind not in ("staff", "api_key"):
        return None
    if principal.kind == "api_key":
        return Actor("api_key", principal.public_id, _api_key_label(principal.public_id))
    staff = current_user._get_current_object()
    return Actor("staff", principal.public_id, staff.email if isinstance(staff, StaffUser) else principal.public_id)


def staff_actor() -> Actor | None:
    """The signed-in staff member of a console page, or None for anyone else (members' account pages)."""
    staff = current_user._get_current_object()
    return Actor("staff", staff.public_id, staff.email) if isinstance(staff, StaffUser) else None


@functools.lru_cache(maxsize=4096)
def _api_key_label(public_id: str) -> str:
    """A key's name and prefix never change: read once per process, so checkout writes pay no extra SELECT."""
    row = db.session.execute(select(ApiKey.name, ApiKey.prefix).where(ApiKey.public_id == public_id)).one()
    return f"{row.name} ({row.prefix}…)"


def action() -> str:
    """`POST /v1/admin/members/{member_id}/adjustments`: the method and the route, never the raw path."""
    rule = request.url_rule.rule if request.url_rule else request.path
    template = _URL_VARIABLE.sub(r"{\1}", rule)
    return f"{request.method} {template}"[:300]


# --- capture --------------------------------------------------------------------------------------------------------

@dataclass
class _RowChange:
    """What one flush did to one row."""

    transaction: SessionTransaction | None  # the savepoint it happened in, if any
    table: str
    key: tuple
    op: str
    row_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    member_id: str | None  # the member the row belongs to, when that member is at hand


@dataclass
class _Capture:
    session: Session
    actor: Actor
    seen: list[_RowChange] = field(default_factory=list)
    detailed: dict[str, set[tuple]] = field(default_factory=dict)  # per table, the rows kept in detail

    def note(self, state: InstanceState, op: str) -> None:
        mapper = state.mapper
        table = mapper.local_table.name
        if table in SKIPPED_TABLES:
            return
        key = _primary_key(state, mapper)
        detailed = self.detailed.setdefault(table, set())
        if key not in detailed and len(detailed) >= ROWS_PER_TABLE:
            # Past the limit only the row's identity is kept, for the count.
            if op == "update" and not _has_changes(state, mapper):
                return
            self.seen.append(_RowChange(self._transaction(), table, key, op, "", None, None, None))
            return
        before, after = _values(state, mapper, op)
        if op == "update" and not after:
            return  # only relationships or unchanged values were touched
        detailed.add(key)
        row_id = _row_id(state, mapper, key, op)
        self.seen.append(_RowChange(self._transaction(), table, key, op, row_id, before, after,
                                    _member_of(self.session, state)))

    def _transaction(self) -> SessionTransaction | None:
        return self.session.get_nested_transaction()

    def forget(self, rolled_back: SessionTransaction) -> None:
        """A savepoint was rolled back: what was flushed inside it never happened."""
        self.seen = [change for change in self.seen if not _within(change.transaction, rolled_back)]

    def record(self, status_code: int | None) -> AuditEntry:
        self.session.flush()  # what the unit of work has not flushed yet is part of it too
        changes, resources = _summarise(self.seen)
        entry = AuditEntry(actor_kind=self.actor.kind, actor_id=self.actor.id, actor_label=self.actor.label[:300],
                           action=action(), request_id=(g.get("request_id") or None), status_code=status_code,
                           changes=json.dumps(changes, default=str, separators=(",", ":")), occurred_at=now())
        entry.resources = [AuditResource(table_name=table, resource_id=resource_id[:64])
                           for table, resource_id in resources]
        self.session.add(entry)
        g.pop(_CAPTURE, None)  # captured: the commit's own flush (this entry) is not part of it
        return entry


class _NotAudited:
    """A unit of work nobody audits: a member's own, or one inside another audited one."""

    def record(self, status_code: int | None) -> None:
        return None


@contextmanager
def capturing(actor: Actor | None) -> Iterator[_Capture | _NotAudited]:
    """Audit the unit of work inside: call `.record(status)` just before its commit. Without an actor, or
    inside an audited unit of work already, nothing is captured here."""
    if actor is None or g.get(_CAPTURE) is not None:
        yield _NotAudited()
        return
    capture = _Capture(db.session(), actor)
    g.setdefault(_CAPTURE, capture)
    try:
        yield capture
    finally:
        if g.get(_CAPTURE) is capture:
            g.pop(_CAPTURE)


def _active(session: Session) -> _Capture | None:
    if not has_app_context():
        return None
    capture = g.get(_CAPTURE)
    return capture if capture is not None and capture.session is session else None


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, flush_context: Any) -> None:
    """Still the flush's history here, and new rows have their ids (SQLAlchemy's after_flush contract)."""
    capture = _active(session)
    if capture is None:
        return
    for instance in session.new:
        capture.note(inspect(instance), "insert")
    for instance in session.dirty:
        capture.note(inspect(instance), "update")
    for instance in session.deleted:
        capture.note(inspect(instance), "delete")


@event.listens_for(Session, "after_soft_rollback")
def _forget_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    capture = _active(session)
    if capture is None:
        return
    if previous_transaction.nested:
        capture.forget(previous_transaction)
    else:
        capture.seen.clear()
        capture.detailed.clear()


def _within(transaction: SessionTransaction | None, rolled_back: SessionTransaction) -> bool:
    while transaction is not None:
        if transaction is rolled_back:
            return True
        transaction = transaction.parent
    return False


# --- one row --------------------------------------------------------------------------------------------------------

@functools.cache
def _primary_key_attributes(mapper: Mapper) -> tuple[str, ...]:
    return tuple(mapper.get_property_by_column(column).key for column in mapper.primary_key)


def _primary_key(state: InstanceState, mapper: Mapper) -> tuple:
    if state.key is not None:
        return state.key[1]
    return tuple(state.dict.get(name) for name in _primary_key_attributes(mapper))  # a new row, just inserted


def _row_id(state: InstanceState, mapper: Mapper, key: tuple, op: str) -> str:
    if "public_id" in mapper.column_attrs:
        public_id = state.dict.get("public_id")
        if public_id is None and op == "update":
            # Loaded for any row this request read; only a row expired by an earlier commit reads it again.
            public_id = state.obj().public_id
        if public_id:
            return public_id
    return ",".join(str(part) for part in key)


def _member_of(session: Session, state: InstanceState) -> str | None:
    """The public id of the member a row belongs to, when that member is already in the session (no SELECT)."""
    member_id = state.dict.get("member_id")
    if not isinstance(member_id, int):
        return None
    member = session.identity_map.get(Session.identity_key(Member, member_id))
    return member.__dict__.get("public_id") if member is not None else None


@dataclass(frozen=True)
class _Column:
    key: str  # the attribute
    name: str  # the column, as the log names it
    hidden: str | None  # REDACTED or PERSONAL: what the log shows instead of the value


@functools.cache
def _columns(mapper: Mapper) -> tuple[_Column, ...]:
    """The columns recorded for this mapper's table, each judged once per process, not per row."""
    table = mapper.local_table.name
    kept = KEPT_COLUMNS.get(table)
    return tuple(_Column(prop.key, prop.columns[0].name, _hidden(table, prop.columns[0].name))
                 for prop in mapper.column_attrs if prop.key not in _ROW_IDS and (kept is None or prop.key in kept))


def _hidden(table: str, column: str) -> str | None:
    if is_secret(column):
        return REDACTED
    if column in _PERSONAL_COLUMNS.get(table, ()) or "ip_address" in column:
        return PERSONAL
    return None


def is_secret(column: str) -> bool:
    return column in _SECRET_NAMES or column.endswith("_hash") or any(part in column for part in _SECRET_PARTS)


def _values(state: InstanceState, mapper: Mapper, op: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Inserts: the new row; deletes: the row as loaded; updates: the changed columns only, before and after."""
    columns = _columns(mapper)
    if op != "update":
        # Only what is loaded: values the database filled in are not fetched for the log.
        loaded = state.dict
        row = {column.name: _shown(column, loaded[column.key]) for column in columns
               if loaded.get(column.key) is not None}
        return (None, row) if op == "insert" else (row, None)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for column in columns:
        history = state.attrs[column.key].history  # never loads: the history of what this request set
        if history.has_changes():
            before[column.name] = _shown(column, history.deleted[0] if history.deleted else None)
            after[column.name] = _shown(column, history.added[0] if history.added else None)
    return before, after


def _has_changes(state: InstanceState, mapper: Mapper) -> bool:
    return any(state.attrs[column.key].history.has_changes() for column in _columns(mapper))


def _shown(column: _Column, value: Any) -> Any:
    """A value as the log keeps it: secrets and personal data never; others as JSON, long ones cut."""
    if column.hidden == PERSONAL and value is None:
        return None  # no personal data there: nothing to hide
    if column.hidden is not None:
        return column.hidden
    return _bounded(_plain(value))


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | list | dict):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _bounded(value: Any) -> Any:
    if isinstance(value, list | dict):
        text = json.dumps(value, default=str)
        return value if len(text) <= MAX_VALUE_LENGTH else text[:MAX_VALUE_LENGTH] + "…"
    if isinstance(value, str) and len(value) > MAX_VALUE_LENGTH:
        return value[:MAX_VALUE_LENGTH] + "…"
    return value


# --- the entry ------------------------------------------------------------------------------------------------------

def _summarise(seen: list[_RowChange]) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """One change per row (several flushes of one row merged), grouped by table in the order first touched;
    and the (table, id) pairs the entry is found by, the rows' members included."""
    rows: dict[str, dict[tuple, dict[str, Any]]] = {}
    more: dict[str, set[tuple]] = {}
    members: dict[str, None] = {}
    for change in seen:
        table_rows = rows.setdefault(change.table, {})
        if not change.row_id:
            if change.key not in table_rows:
                more.setdefault(change.table, set()).add(change.key)
            continue
        if change.member_id:
            members[change.member_id] = None
        merged = table_rows.get(change.key)
        table_rows[change.key] = change_dict(change) if merged is None else _merge(merged, change)
    changes: list[dict[str, Any]] = []
    resources: dict[tuple[str, str], None] = {}
    for table, table_rows in rows.items():
        for row in table_rows.values():
            if row["op"] is None:
                continue  # inserted and deleted within the unit of work
            changes.append(row)
            resources[(table, row["id"])] = None
        if more.get(table):
            changes.append({"table": table, "more": len(more[table])})
    resources.update({("members", member): None for member in members})
    return changes, list(resources)


def change_dict(change: _RowChange) -> dict[str, Any]:
    return {"table": change.table, "id": change.row_id, "op": change.op, "before": change.before,
            "after": change.after}


def _merge(merged: dict[str, Any], change: _RowChange) -> dict[str, Any]:
    """The same row flushed again: the first `before` and the last `after` of each column count."""
    if change.op == "delete":
        if merged["op"] == "insert":
            return {**merged, "op": None}
        before = {**(change.before or {}), **(merged["before"] or {})}
        return {**merged, "op": "delete", "before": before, "after": None}
    after = {**(merged["after"] or {}), **(change.after or {})}
    if merged["op"] == "insert":
        return {**merged, "after": after}
    before = {**(change.before or {}), **(merged["before"] or {})}
    return {**merged, "before": before, "after": after}


# --- reading --------------------------------------------------------------------------------------------------------

def list_entries(*, limit: int, starting_after: str | None = None, actor_id: str | None = None,
                 table: str | None = None, resource_id: str | None = None, from_: datetime | None = None,
                 to: datetime | None = None) -> dict:
    """Entries newest first, optionally by actor, by table or row touched, and from (inclusive) to (exclusive)."""
    query: Select = select(AuditEntry)
    if actor_id:
        query = query.where(AuditEntry.actor_id == actor_id)
    if table or resource_id:
        touched = select(AuditResource.entry_id)
        if table:
            touched = touched.where(AuditResource.table_name == table)
        if resource_id:
            touched = touched.where(AuditResource.resource_id == resource_id)
        query = query.where(AuditEntry.id.in_(touched))
    if from_:
        query = query.where(AuditEntry.occurred_at >= from_)
    if to:
        query = query.where(AuditEntry.occurred_at < to)
    return paginate(query, AuditEntry, limit=limit, starting_after=starting_after, newest_first=True)


def get_entry(public_id: str) -> AuditEntry:
    entry = db.session.scalar(select(AuditEntry).where(AuditEntry.public_id == public_id))
    if entry is None:
        raise NotFound("No audit entry has this id.")
    return entry
