"""`GET /v1/admin/audit-log`: every staff and API-key write, newest first."""

from __future__ import annotations

from loyalty.audit import service
from loyalty.audit.schemas import AuditEntryPageSchema, AuditLogArgsSchema
from loyalty.auth.access import require
from loyalty.extensions import Blueprint

blp = Blueprint("audit", __name__, url_prefix="/v1/admin/audit-log", description="The audit log")


@blp.get("")
@require(scope="admin")
@blp.arguments(AuditLogArgsSchema, location="query")
@blp.response(200, AuditEntryPageSchema)
def list_entries(args: dict):
    """Who changed what, when, with the request id and each row's before and after (secrets never shown).
    Filter by `actor_id`, by `table` or a row's `resource_id`, and by time (`from`, `to`)."""
    return service.list_entries(**args)
