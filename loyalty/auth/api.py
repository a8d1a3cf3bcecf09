"""Sign-in for members and staff; administration of staff users and API keys."""

from __future__ import annotations

from flask_login import current_user

from loyalty.auth import service
from loyalty.auth.access import require
from loyalty.auth.models import StaffUser
from loyalty.auth.schemas import (
    ApiKeyCreatedSchema,
    ApiKeyCreateSchema,
    ApiKeyListSchema,
    ApiKeySchema,
    StaffCreateSchema,
    StaffListSchema,
    StaffSchema,
)
from loyalty.auth.sessions import sign_in, sign_out
from loyalty.auth.throttling import login_throttled
from loyalty.extensions import Blueprint
from loyalty.members import service as members
from loyalty.members.schemas import LoginSchema, MemberSummarySchema
from loyalty.schemas import ListArgsSchema
from loyalty.unit_of_work import unit_of_work
from loyalty.writes import write

blp = Blueprint("auth", __name__, url_prefix="/v1", description="Sign-in and access")


@blp.post("/auth/login")
@login_throttled
@blp.arguments(LoginSchema)
@blp.response(200, MemberSummarySchema)
def member_login(payload: dict):
    """Sign a member in: sets the session cookie."""
    with unit_of_work():
        member = members.authenticate(payload["email"], payload["password"])
    sign_in(member)
    return members.summary(member)


@blp.post("/auth/staff/login")
@login_throttled
@blp.arguments(LoginSchema)
@blp.response(200, StaffSchema)
def staff_login(payload: dict):
    """Sign a staff user in: sets the session cookie."""
    with unit_of_work():
        staff = service.authenticate_staff(payload["email"], payload["password"])
    sign_in(staff)
    return staff


@blp.post("/auth/logout")
@blp.response(204)
def logout():
    """End the session, member or staff, and every other session of the same user: a copy of the cookie saved
    anywhere stops working. Idempotent: without a session it still answers 204."""
    sign_out()


@blp.get("/admin/staff")
@require(scope="admin")
@blp.arguments(ListArgsSchema, location="query")
@blp.response(200, StaffListSchema)
def list_staff(args: dict):
    """Staff users."""
    return service.list_staff(**args)


@blp.post("/admin/staff")
@require(scope="admin")
@write
@blp.arguments(StaffCreateSchema)
@blp.response(201, StaffSchema)
def create_staff(payload: dict):
    """Create a staff user with a role."""
    staff = service.create_staff(**payload)
    return staff


@blp.get("/admin/api-keys")
@require(scope="admin")
@blp.arguments(ListArgsSchema, location="query")
@blp.response(200, ApiKeyListSchema)
def list_api_keys(args: dict):
    """API keys, without their secrets."""
    return service.list_api_keys(**args)


@blp.post("/admin/api-keys")
@require(scope="admin")
@write
@blp.arguments(ApiKeyCreateSchema)
@blp.response(201, ApiKeyCreatedSchema)
def create_api_key(payload: dict):
    """Create an API key. The answer holds the secret; it is never shown again."""
    creator = current_user if isinstance(current_user, StaffUser) else None
    key, secret = service.create_api_key(**payload, created_by=creator)
    key.secret = secret  # transient: answered once, never stored
    return key


@blp.delete("/admin/api-keys/<string:key_id>")
@require(scope="admin")
@write
@blp.response(200, ApiKeySchema)
def revoke_api_key(key_id: str):
    """Revoke an API key at once. Revoking twice keeps the first time."""
    key = service.revoke_api_key(key_id)
    return key
