"""Staff administration of offers and their codes."""

from __future__ import annotations

import secrets

from flask_login import current_user

from loyalty.auth.access import require
from loyalty.clock import now
from loyalty.extensions import Blueprint
from loyalty.offers import rewards, service
from loyalty.offers.schemas import (
    CatalogPageSchema,
    ClaimedSchema,
    CodePageSchema,
    GenerateCodesSchema,
    GeneratedSchema,
    MemberCouponListSchema,
    OfferInputSchema,
    OfferPageSchema,
    OfferPatchSchema,
    OfferSchema,
    RewardInputSchema,
    RewardPageSchema,
    RewardPatchSchema,
    RewardSchema,
)
from loyalty.schemas import ListArgsSchema
from loyalty.writes import write

blp = Blueprint("offers", __name__, url_prefix="/v1/admin/offers", description="Offers and coupons")
MANAGERS = ("manager",)


@blp.get("")
@require(scope="admin", roles=MANAGERS)
@blp.arguments(ListArgsSchema, location="query")
@blp.response(200, OfferPageSchema)
def list_offers(args: dict):
    """Offers, oldest first."""
    return service.list_offers(**args)


@blp.post("")
@require(scope="admin", roles=MANAGERS)
@write
@blp.arguments(OfferInputSchema)
@blp.response(201, OfferSchema)
def create_offer(payload: dict):
    """Create an offer: percent or amount off, or free shipping; scope, window, tiers, early access, limits."""
    offer = service.create_offer(payload)
    return offer


@blp.get("/<string:offer_id>")
@require(scope="admin", roles=MANAGERS)
@blp.response(200, OfferSchema)
def get_offer(offer_id: str):
    return service.get_offer(offer_id)


@blp.patch("/<string:offer_id>")
@require(scope="admin", roles=MANAGERS)
@write
@blp.arguments(OfferPatchSchema)
@blp.response(200, OfferSchema)
def update_offer(payload: dict, offer_id: str):
    """Change an offer; `active: false` stops every code of it at once."""
    offer = service.update_offer(service.get_offer(offer_id), payload)
    return offer


@blp.post("/<string:offer_id>/codes")
@require(scope="admin", roles=MANAGERS)
@write
@blp.arguments(GenerateCodesSchema)
@blp.response(201, GeneratedSchema)
def generate_codes(payload: dict, offer_id: str):
    """Generate unique, unguessable codes: `count` of them, or one for each of `member_ids`."""
    offer = service.get_offer(offer_id)
    if payload.get("member_ids"):
        generated = service.generate_codes_for_members(offer, payload["member_ids"],
                                                       expires_at=payload.get("expires_at"))
    else:
        generated = service.generate_codes(offer, payload["count"], expires_at=payload.get("expires_at"))
    return {"generated": generated}


@blp.get("/<string:offer_id>/codes")
@require(scope="admin", roles=MANAGERS)
@blp.arguments(ListArgsSchema, location="query")
@blp.response(200, CodePageSchema)
def list_codes(args: dict, offer_id: str):
    """The offer's codes, oldest first, each with its uses, its state and the orders they are for."""
    page = service.code_page(service.get_offer(offer_id), **args, now=now())
    return {**page, "data": [{"public_id": row["code"].public_id, "code": row["code"].code, "kind": row["code"].kind,
                              "active": row["code"].active, "member_id": row["member_id"],
                              "expires_at": row["code"].expires_at, "uses": row["uses"], "state": row["state"],
                              "orders": list(row["orders"])}
                             for row in page["data"]]}


rewards_blp = Blueprint("rewards", __name__, url_prefix="/v1", description="The reward catalog and coupons")


@rewards_blp.get("/admin/rewards")
@require(scope="admin", roles=MANAGERS)
@rewards_blp.arguments(ListArgsSchema, location="query")
@rewards_blp.response(200, RewardPageSchema)
def list_rewards(args: dict):
    """The reward catalog, oldest first."""
    return rewards.list_rewards(**args)


@rewards_blp.post("/admin/rewards")
@require(scope="admin", roles=MANAGERS)
@write
@rewards_blp.arguments(RewardInputSchema)
@rewards_blp.response(201, RewardSchema)
def create_reward(payload: dict):
    """Add a reward: a coupon of an offer, for points, with optional stock and per-member limit."""
    reward = rewards.create_reward(payload)
    return reward


@rewards_blp.patch("/admin/rewards/<string:reward_id>")
@require(scope="admin", roles=MANAGERS)
@write
@rewards_blp.arguments(RewardPatchSchema)
@rewards_blp.response(200, RewardSchema)
def update_reward(payload: dict, reward_id: str):
    reward = rewards.update_reward(rewards.get_reward(reward_id), payload)
    return reward


@rewards_blp.get("/rewards")
@require(member=True)
@rewards_blp.arguments(ListArgsSchema, location="query")
@rewards_blp.response(200, CatalogPageSchema)
def catalog(args: dict):
    """Rewards the member may claim; those whose coupon they could not use now are `locked`, with the reason."""
    return rewards.catalog_for(current_user, **args, now=now())


@rewards_blp.post("/me/rewards/<string:reward_id>/claim")
@require(member=True)
@write
@rewards_blp.response(201, ClaimedSchema)
def claim(reward_id: str):
    """Spend points for a reward: the coupon is issued in the same transaction. Send `Idempotency-Key`
    so a retry claims once."""
    reference = f"{current_user.public_id}:{secrets.token_hex(12)}"  # retries: `@write` replays the first
    return rewards.claim_receipt(reward_id, current_user, reference=reference, now=now())


@rewards_blp.get("/me/coupons")
@require(member=True)
@rewards_blp.response(200, MemberCouponListSchema)
def my_coupons():
    """The member's own coupons and the offers they may use now or soon (early access with its opening)."""
    return {"data": service.member_coupons(current_user, now()), "has_more": False}
