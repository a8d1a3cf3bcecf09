"""Privacy endpoints: consent per purpose, the export of everything held on a member, and erasure."""

from __future__ import annotations

from typing import Any

from flask_login import current_user, logout_user

from loyalty.auth.access import current_principal, require
from loyalty.auth.throttling import password_confirmation_throttled
from loyalty.clock import now
from loyalty.extensions import Blueprint
from loyalty.members import service as members
from loyalty.members.models import Member
from loyalty.members.schemas import ConsentChangeSchema, ConsentStateSchema, PasswordConfirmationSchema
from loyalty.privacy import service
from loyalty.privacy.schemas import ErasureSchema, ExportSchema
from loyalty.writes import write

blp = Blueprint("privacy", __name__, url_prefix="/v1", description="Privacy: consent, export and erasure")

MEMBER_STAFF = ("support",)
_EXPORT_HEADERS = {"Content-Disposition": {"description": "attachment; filename=loyalty-export-<member id>.json",
                                           "schema": {"type": "string"}}}


# --- consent --------------------------------------------------------------------------------------------------

@blp.get("/me/consents")
@require(member=True)
@blp.response(200, ConsentStateSchema)
def my_consents():
    """The signed-in member's consent per purpose (marketing_email, sms, personalised_offers) and every answer
    they gave, newest first. A purpose never answered is not granted."""
    return service.consent_state(current_user)


@blp.post("/me/consents")
@require(member=True)
@write
@blp.arguments(ConsentChangeSchema)
@blp.response(200, ConsentStateSchema)
def record_my_consent(payload: dict):
    """Grant or withdraw consent for a purpose; kept with its time and source `member`. Giving the answer in
    force again records nothing."""
    return service.record_consent(current_user, payload["purpose"], payload["granted"], source="member")


@blp.get("/members/<string:member_id>/consents")
@require(scope="members:read", roles=MEMBER_STAFF)
@blp.response(200, ConsentStateSchema)
def member_consents(member_id: str):
    """A member's consent per purpose and its history, newest first."""
    return service.consent_state(members.get_member(member_id))


@blp.post("/members/<string:member_id>/consents")
@require(scope="members:write", roles=MEMBER_STAFF)
@write
@blp.arguments(ConsentChangeSchema)
@blp.response(200, ConsentStateSchema)
def record_member_consent(payload: dict, member_id: str):
    """Record a member's answer given to the shop (a checkout form, a call): kept with source `api`, or `staff`
    from a staff session. Giving the answer in force again records nothing."""
    source = "staff" if current_principal().kind == "staff" else "api"
    return service.record_consent(members.get_member(member_id), payload["purpose"], payload["granted"],
                                  source=source)


# --- export ---------------------------------------------------------------------------------------------------

@blp.get("/me/export")
@require(member=True)
@blp.response(200, ExportSchema, headers=_EXPORT_HEADERS)
def my_export():
    """Everything held on the signed-in member, as a JSON download."""
    return _export(current_user)


@blp.get("/admin/members/<string:member_id>/export")
@require(scope="admin", roles=MEMBER_STAFF)
@blp.response(200, ExportSchema, headers=_EXPORT_HEADERS)
def member_export(member_id: str):
    """Everything held on a member, as a JSON download (to answer a member's access request)."""
    return _export(members.get_member(member_id))


def _export(member: Member) -> tuple[dict[str, Any], int, dict[str, str]]:
    moment = now()
    filename = service.export_filename(member, moment)
    return service.export(member, moment), 200, {"Content-Disposition": f'attachment; filename="{filename}"',
                                                  "Cache-Control": "no-store"}


# --- erasure --------------------------------------------------------------------------------------------------

@blp.delete("/me")
@password_confirmation_throttled
@require(member=True)
@write
@blp.arguments(PasswordConfirmationSchema)
@blp.response(204)
def erase_me(payload: dict):
    """Erase the signed-in member's account, once they have typed their password again (`{"password": ...}`; a
    wrong one is 422 and changes nothing): personal data anonymised for good, outstanding points forfeited, held
    checkouts released; orders and the ledger stay, without a name. Ends every session of the member."""
    members.confirm_password(current_user, payload["password"])
    service.erase(current_user, now(), by="member")
    logout_user()


@blp.post("/admin/members/<string:member_id>/erase")
@require(scope="admin", roles=MEMBER_STAFF)
@write
@blp.response(200, ErasureSchema)
def erase_member(member_id: str):
    """Erase a member's account, as `DELETE /v1/me` does. Erasing an erased member changes nothing and answers the
    same."""
    by = "staff" if current_principal().kind == "staff" else "api"
    erasure = service.erase(members.get_member(member_id), now(), by=by)
    member = erasure.member
    return {"id": member.public_id, "status": member.status, "erased_at": member.erased_at,
            "points_forfeited": erasure.points_forfeited, "redemptions_released": erasure.redemptions_released,
            "member": members.summary(member)}
