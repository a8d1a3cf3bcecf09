"""Staff administration of tiers."""

from __future__ import annotations

from loyalty.auth.access import require
from loyalty.clock import now
from loyalty.extensions import Blueprint
from loyalty.schemas import ListArgsSchema
from loyalty.tiers import service
from loyalty.tiers.schemas import MovesSchema, TierInputSchema, TierPageSchema, TierPatchSchema, TierSchema
from loyalty.writes import write

blp = Blueprint("tiers", __name__, url_prefix="/v1/admin/tiers", description="Tiers")
MANAGERS = ("manager",)


def _flatten(payload: dict) -> dict:
    benefits = {k: v for k, v in (payload.pop("benefits", None) or {}).items() if v is not None}
    return {**payload, **benefits}


def _with_moves(tier):
    tier.would_move = service.preview(now())
    return tier


@blp.get("")
@require(scope="admin", roles=MANAGERS)
@blp.response(200, TierPageSchema)
def list_tiers():
    """Every tier, lowest rank first."""
    return {"data": service.all_tiers(), "has_more": False}


@blp.get("/moves")
@require(scope="admin", roles=MANAGERS)
@blp.arguments(ListArgsSchema, location="query")
@blp.response(200, MovesSchema)
def would_move(args: dict):
    """What the next evaluation would do now, decided as the evaluation decides (grace included): how many
    members it would move up and down, and who, a page at a time in member order. Nothing moves."""
    return service.preview(now(), limit=args["limit"], starting_after=args.get("starting_after"))


@blp.post("")
@require(scope="admin", roles=MANAGERS)
@write
@blp.arguments(TierInputSchema)
@blp.response(201, TierSchema)
def create_tier(payload: dict):
    """Add a tier. The first must be the base tier (rank 0, threshold 0)."""
    tier = service.create_tier(_flatten(payload))
    return _with_moves(tier)


@blp.get("/<string:tier_id>")
@require(scope="admin", roles=MANAGERS)
@blp.response(200, TierSchema)
def get_tier(tier_id: str):
    return service.get_tier(tier_id)


@blp.patch("/<string:tier_id>")
@require(scope="admin", roles=MANAGERS)
@write
@blp.arguments(TierPatchSchema)
@blp.response(200, TierSchema)
def update_tier(payload: dict, tier_id: str):
    """Edit a tier. Nobody moves now: members move at the next evaluation, and the answer says how many
    would (`would_move`)."""
    tier = service.update_tier(service.get_tier(tier_id), _flatten(payload))
    return _with_moves(tier)
