"""The audit log, for admins: every staff and API-key write, newest first, with each row's before and after."""

from __future__ import annotations

import json
from typing import Any

from flask import render_template, request

from loyalty.audit import service as audit
from loyalty.audit.models import AuditEntry
from loyalty.audit.schemas import AuditLogArgsSchema
from loyalty.console.access import ADMINS, staff_page
from loyalty.console.blueprints import console
from loyalty.console.forms import form_data, in_utc, page_args
from loyalty.console.views import render_form
from loyalty.errors import ValidationProblem

FILTERS = ("actor_id", "table", "resource_id", "from", "to")
ABSENT = "—"
EMPTY = "(none)"


@console.get("/audit", endpoint="audit_log")
@staff_page(ADMINS)
def audit_log():
    values = {name: request.args.get(name, "").strip() for name in FILTERS}
    try:
        # The API's own query schema; a `datetime-local` input sends no offset, and the console means UTC.
        filters = form_data(AuditLogArgsSchema(), {**values, "from": in_utc(values["from"]),
                                                    "to": in_utc(values["to"])})
    except ValidationProblem as problem:
        return render_form("console/audit/list.html", problem, title="Audit log", values=values, page=None)
    filters.pop("limit", None)
    page = audit.list_entries(**filters, **page_args())
    return render_template("console/audit/list.html", title="Audit log", values=values, page=page, errors={},
                           summaries={entry.id: _summary(entry) for entry in page["data"]})


@console.get("/audit/<string:entry_id>", endpoint="audit_entry")
@staff_page(ADMINS)
def audit_entry(entry_id: str):
    entry = audit.get_entry(entry_id)
    return render_template("console/audit/show.html", title=f"Audit entry {entry.public_id}", entry=entry,
                           changes=[_change_table(change) for change in entry.change_list])


def _summary(entry: AuditEntry) -> str:
    """"tiers: 1 updated; ledger_transactions: 1 inserted": what an entry did, at a glance."""
    counts: dict[str, dict[str, int]] = {}
    for change in entry.change_list:
        ops = counts.setdefault(change["table"], {})
        if "more" in change:
            ops["more"] = ops.get("more", 0) + change["more"]
        else:
            ops[change["op"]] = ops.get(change["op"], 0) + 1
    words = {"insert": "inserted", "update": "updated", "delete": "deleted", "more": "more"}
    return "; ".join(f"{table}: " + ", ".join(f"{n} {words[op]}" for op, n in ops.items())
                     for table, ops in counts.items()) or "Nothing itemised"


def _change_table(change: dict[str, Any]) -> dict[str, Any]:
    """One changed row as (column, before, after) lines; columns the change did not name show a dash."""
    before, after = change.get("before") or {}, change.get("after") or {}
    columns = list(dict.fromkeys([*before, *after]))
    return {**change, "lines": [(name, _text(before, name), _text(after, name)) for name in columns]}


def _text(values: dict[str, Any], name: str) -> str:
    if name not in values:
        return ABSENT
    value = values[name]
    if value is None:
        return EMPTY
    return value if isinstance(value, str) else json.dumps(value)
