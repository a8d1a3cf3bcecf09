"""Member endpoints: signup and the member's own summary, and enrolment and look-up for servers."""

from __future__ import annotations

from flask import current_app
from flask_login import current_user, login_user

from loyalty.auth.access import require
from loyalty.extensions import Blueprint, db, limiter
from loyalty.members import service
from loyalty.members.schemas import (
    EnrolSchema,
    MemberListArgsSchema,
    MemberPageSchema,
    MemberSummarySchema,
    SignupSchema,
)

blp = Blueprint("members", __name__, url_prefix="/v1", description="Members")

MEMBER_STAFF = ("support",)


@blp.post("/signup")
@limiter.limit(lambda: current_app.config["SIGNUP_RATE_LIMIT"])
@blp.arguments(SignupSchema)
@blp.response(201, MemberSummarySchema)
def signup(payload: dict):
    """Create a member account and sign it in."""
    member = service.enrol(service.NewMember(**payload), source="signup")
    db.session.commit()
    login_user(member)
    return service.summary(member)


@blp.get("/me")
@require(member=True)
@blp.response(200, MemberSummarySchema)
def me():
    """The signed-in member's summary."""
    return service.summary(current_user)


@blp.post("/members")
@require(scope="members:write", roles=MEMBER_STAFF)
@blp.arguments(EnrolSchema)
@blp.response(201, MemberSummarySchema)
def enrol(payload: dict):
    """Enrol a member from the shop (no password: the member may set one later)."""
    member = service.enrol(service.NewMember(**payload), source="api")
    db.session.commit()
    return service.summary(member)


@blp.get("/members")
@require(scope="members:read", roles=MEMBER_STAFF)
@blp.arguments(MemberListArgsSchema, location="query")
@blp.response(200, MemberPageSchema)
def list_members(args: dict):
    """Members, oldest first; filter by `email` (any case) or `external_id`."""
    result = service.list_members(**args)
    return {**result, "data": [service.summary(m) for m in result["data"]]}


@blp.get("/members/<string:member_id>")
@require(scope="members:read", roles=MEMBER_STAFF)
@blp.response(200, MemberSummarySchema)
def get_member(member_id: str):
    """One member's summary."""
    return service.summary(service.get_member(member_id))
