"""Member endpoints: signup and the member's own summary, and enrolment and look-up for servers."""

from __future__ import annotations

import secrets

from flask import current_app
from flask_login import current_user

from loyalty.auth.access import require
from loyalty.auth.models import StaffUser
from loyalty.auth.sessions import sign_in
from loyalty.extensions import Blueprint, limiter
from loyalty.members import service
from loyalty.members.schemas import (
    AdjustmentSchema,
    EnrolSchema,
    EventResultSchema,
    EventSchema,
    MemberListArgsSchema,
    MemberPageSchema,
    MemberSearchArgsSchema,
    MemberSummarySchema,
    SignupSchema,
    TierHistorySchema,
    TransactionPageSchema,
    TransactionSchema,
)
from loyalty.schemas import ListArgsSchema
from loyalty.tiers import service as tiers
from loyalty.unit_of_work import unit_of_work
from loyalty.writes import write

blp = Blueprint("members", __name__, url_prefix="/v1", description="Members")

MEMBER_STAFF = ("support",)


@blp.post("/signup")
@limiter.limit(lambda: current_app.config["SIGNUP_RATE_LIMIT"])
@blp.arguments(SignupSchema)
@blp.response(201, MemberSummarySchema)
def signup(payload: dict):
    """Create a member account and sign it in."""
    with unit_of_work():
        member = service.enrol(service.NewMember(**payload), source="signup")
    sign_in(member)
    return service.summary(member)


@blp.get("/me")
@require(member=True)
@blp.response(200, MemberSummarySchema)
def me():
    """The signed-in member's summary."""
    return service.summary(current_user)


@blp.post("/members")
@require(scope="members:write", roles=MEMBER_STAFF)
@write
@blp.arguments(EnrolSchema)
@blp.response(201, MemberSummarySchema)
def enrol(payload: dict):
    """Enrol a member from the shop (no password: the member may set one later)."""
    member = service.enrol(service.NewMember(**payload), source="api")
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


@blp.get("/me/transactions")
@require(member=True)
@blp.arguments(ListArgsSchema, location="query")
@blp.response(200, TransactionPageSchema)
def my_transactions(args: dict):
    """The signed-in member's journal, newest first."""
    return service.transactions(current_user, **args)


@blp.get("/members/<string:member_id>/transactions")
@require(scope="members:read", roles=MEMBER_STAFF)
@blp.arguments(ListArgsSchema, location="query")
@blp.response(200, TransactionPageSchema)
def member_transactions(args: dict, member_id: str):
    """A member's journal, newest first."""
    return service.transactions(service.get_member(member_id), **args)


@blp.post("/members/<string:member_id>/events")
@require(scope="members:write", roles=MEMBER_STAFF)
@write
@blp.arguments(EventSchema)
@blp.response(201, EventResultSchema)
def record_event(payload: dict, member_id: str):
    """Tell the program something the member did (`review`, `custom:newsletter`, ...): awards the
    event's points by the rules in force. Send `Idempotency-Key` so a retry pays once."""
    result, txn = service.record_event(service.get_member(member_id), payload["type"],
                                       occurred_at=payload.get("occurred_at"), reference=payload.get("reference"))
    return {"type": payload["type"], "points": result.points if txn else 0,
            "transaction_id": txn.public_id if txn else None,
            "breakdown": [{"rule": i.rule, "points": i.points, "detail": i.detail} for i in result.breakdown]}


@blp.get("/admin/members")
@require(scope="admin", roles=MEMBER_STAFF)
@blp.arguments(MemberSearchArgsSchema, location="query")
@blp.response(200, MemberPageSchema)
def search_members(args: dict):
    """Look members up by id, external id, email or name."""
    result = service.search(**args)
    return {**result, "data": [service.summary(m) for m in result["data"]]}


@blp.get("/admin/members/<string:member_id>/tier-history")
@require(scope="admin", roles=MEMBER_STAFF)
@blp.response(200, TierHistorySchema)
def tier_history(member_id: str):
    """Every tier change of a member, newest first: from, to, why and when."""
    return {"data": tiers.history(service.get_member(member_id)), "has_more": False}


@blp.post("/admin/members/<string:member_id>/adjustments")
@require(scope="admin", roles=MEMBER_STAFF)
@write
@blp.arguments(AdjustmentSchema)
@blp.response(201, TransactionSchema)
def adjust(payload: dict, member_id: str):
    """Add or remove points with a reason. Never takes a member below zero (`insufficient_points`).
    Send `Idempotency-Key` to make a retry safe."""
    member = service.get_member(member_id)
    staff = current_user if isinstance(current_user, StaffUser) else None
    txn = service.adjust_points(member, payload["points"], payload["reason"], reference=_reference("adjust"),
                                staff_id=staff.id if staff else None, expires_at=payload.get("expires_at"))
    return txn


@blp.post("/admin/members/<string:member_id>/suspend")
@require(scope="admin", roles=MEMBER_STAFF)
@write
@blp.response(200, MemberSummarySchema)
def suspend(member_id: str):
    """Suspend a member: they keep their points and may sign in, but may not spend points."""
    member = service.set_status(service.get_member(member_id), "suspended")
    return service.summary(member)


@blp.post("/admin/members/<string:member_id>/reinstate")
@require(scope="admin", roles=MEMBER_STAFF)
@write
@blp.response(200, MemberSummarySchema)
def reinstate(member_id: str):
    """Lift a suspension."""
    member = service.set_status(service.get_member(member_id), "active")
    return service.summary(member)


def _reference(action: str) -> str:
    """A fresh ledger reference: a retry never reaches the ledger, `@write` replays its first answer."""
    return f"{action}:req_{secrets.token_hex(12)}"
