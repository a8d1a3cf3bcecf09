"""Staff administration of rule versions: drafts, publishing, simulation and impact."""

from __future__ import annotations

from flask_login import current_user

from loyalty.auth.access import require
from loyalty.auth.models import StaffUser
from loyalty.clock import now
from loyalty.extensions import Blueprint
from loyalty.members import service as members
from loyalty.rules import service
from loyalty.rules.schemas import (
    DraftSchema,
    EarnResultSchema,
    ImpactArgsSchema,
    ImpactSchema,
    PublishSchema,
    RuleListArgsSchema,
    RuleVersionPageSchema,
    RuleVersionSchema,
    SimulateSchema,
)
from loyalty.writes import write

blp = Blueprint("rules", __name__, url_prefix="/v1/admin/rules", description="Earning and redemption rules")
MANAGERS = ("manager",)


def _staff_id() -> int | None:
    return current_user.id if isinstance(current_user, StaffUser) else None


def _shown(version, current) -> dict:
    """A version as the API shows it, marked when it is `current`, the one in force."""
    return {**{c: getattr(version, c) for c in ("version", "status", "note", "effective_from", "created_at",
                                                 "published_at", "document")},
            "in_force": current is not None and current.id == version.id}


@blp.get("")
@require(scope="admin", roles=MANAGERS)
@blp.arguments(RuleListArgsSchema, location="query")
@blp.response(200, RuleVersionPageSchema)
def list_versions(args: dict):
    """Rule versions, newest first, with the one in force marked."""
    page = service.list_versions(**args)
    current = service.in_force(now())
    return {**page, "data": [_shown(v, current) for v in page["data"]]}


@blp.post("")
@require(scope="admin", roles=MANAGERS)
@write
@blp.arguments(DraftSchema)
@blp.response(201, RuleVersionSchema)
def create_draft(payload: dict):
    """Create a draft from a rules document. Invalid documents are refused with the exact paths."""
    draft = service.create_draft(payload["document"], note=payload.get("note"), staff_id=_staff_id())
    return _shown(draft, service.in_force(now()))


@blp.get("/<int:version>")
@require(scope="admin", roles=MANAGERS)
@blp.response(200, RuleVersionSchema)
def get_version(version: int):
    """One version, with its document."""
    return _shown(service.get_version(version), service.in_force(now()))


@blp.put("/<int:version>")
@require(scope="admin", roles=MANAGERS)
@write
@blp.arguments(DraftSchema)
@blp.response(200, RuleVersionSchema)
def update_draft(payload: dict, version: int):
    """Replace a draft's document. Published versions never change."""
    draft = service.update_draft(version, payload["document"], note=payload.get("note"))
    return _shown(draft, service.in_force(now()))


@blp.post("/<int:version>/publish")
@require(scope="admin", roles=MANAGERS)
@write
@blp.arguments(PublishSchema)
@blp.response(200, RuleVersionSchema)
def publish(payload: dict, version: int):
    """Publish a draft, in force from `effective_from` (now by default) until a later one takes over."""
    published = service.publish(version, effective_from=payload.get("effective_from"), staff_id=_staff_id(),
                                now=now())
    return _shown(published, service.in_force(now()))


@blp.post("/simulate")
@require(scope="admin", roles=MANAGERS)
@write
@blp.arguments(SimulateSchema)
@blp.response(200, EarnResultSchema)
def simulate(payload: dict):
    """What a sample order would earn under a document, a stored version or the rules in force, with the
    breakdown. Changes nothing."""
    at = payload["order"].get("paid_at") or now()
    document, version = service.simulation_rules(document=payload.get("rules"), version=payload.get("version"), at=at)
    member = members.get_member(payload["member_id"]) if payload.get("member_id") else None
    result = service.simulate(document, payload["order"], member, at)
    return {"points": result.points, "pending_until": result.pending_until, "expires_at": result.expires_at,
            "breakdown": result.breakdown, "rule_version": version.version if version else None}


@blp.get("/<int:version>/impact")
@require(scope="admin", roles=MANAGERS)
@blp.arguments(ImpactArgsSchema, location="query")
@blp.response(200, ImpactSchema)
def impact(args: dict, version: int):
    """Replay the last paid orders under this version: how many points it would issue instead."""
    return service.impact(service.get_version(version), last=args["last"], now=now())
