"""The reward catalog: points spent through the ledger and a coupon issued in the same transaction,
with stock and per-member limits that hold under concurrent claims (the reward row is locked)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from loyalty import events
from loyalty.db import for_update
from loyalty.errors import Conflict, NotFound, ValidationProblem
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.ledger.models import JournalTransaction
from loyalty.members.models import Member
from loyalty.offers import service as offers
from loyalty.offers.models import Offer, OfferCode, Reward, RewardClaim
from loyalty.pagination import paginate


def get_reward(public_id: str, *, lock: bool = False) -> Reward:
    query = select(Reward).where(Reward.public_id == public_id).execution_options(populate_existing=True)
    reward = db.session.scalar(for_update(query, db.session) if lock else query)
    if reward is None:
        raise NotFound("No reward has this id.")
    return reward


def create_reward(fields: dict[str, Any]) -> Reward:
    offer = offers.get_offer(fields.pop("offer_id"))
    reward = Reward(offer_id=offer.id, **fields)
    db.session.add(reward)
    db.session.flush()
    return reward


def update_reward(reward: Reward, changes: dict[str, Any]) -> Reward:
    if "stock" in changes and changes["stock"] is not None and changes["stock"] < reward.claimed:
        raise ValidationProblem(errors={"stock": [f"{reward.claimed} were claimed already."]})
    for name, value in changes.items():
        setattr(reward, name, value)
    db.session.flush()
    return reward


def list_rewards(*, limit: int, starting_after: str | None = None) -> dict:
    return paginate(select(Reward), Reward, limit=limit, starting_after=starting_after)


def claimed_by(reward: Reward, member: Member) -> int:
    return db.session.scalar(select(func.count()).select_from(RewardClaim).where(
        RewardClaim.reward_id == reward.id, RewardClaim.member_id == member.id))


def claim(reward_public_id: str, member: Member, *, reference: str, now: datetime) -> tuple[RewardClaim, OfferCode]:
    """Spend the reward's points and issue its coupon, at most stock times and per-member-limit times."""
    reward = get_reward(reward_public_id, lock=True)
    previous = db.session.scalar(select(RewardClaim).where(RewardClaim.reference == reference))
    if previous is not None:
        if previous.reward_id != reward.id or previous.member_id != member.id:
            raise Conflict("This idempotency key was used for another claim.", code="idempotency_key_reused")
        return previous, db.session.get(OfferCode, previous.code_id)
    offer = db.session.get(Offer, reward.offer_id)
    if not reward.active or not offer.active:
        raise Conflict("This reward is not available.", code="reward_unavailable")
    if (refusal := offers.holder_refusals(member, [offer], now)[offer.id]) is not None:
        code, detail = refusal  # the checkout's own reason: its coupon would be refused at once
        raise Conflict(f"{detail}: you could not use this reward's coupon now.", code=code,
                       title="Reward locked")
    if reward.stock is not None and reward.claimed >= reward.stock:
        raise Conflict("This reward is sold out.", code="reward_sold_out")
    if reward.per_member_limit is not None and claimed_by(reward, member) >= reward.per_member_limit:
        raise Conflict("You have claimed this reward as many times as allowed.", code="reward_limit_reached")
    txn = ledger.spend(member.id, reward.points_cost, reference=f"reward:{reference}", now=now,
                       description=f"Reward: {reward.name}")
    expires_at = now + timedelta(days=reward.coupon_valid_days)
    offers.generate_codes(offer, 1, member_ids=[member.id], expires_at=expires_at)
    code = db.session.scalar(select(OfferCode).where(OfferCode.offer_id == offer.id, OfferCode.member_id == member.id)
                             .order_by(OfferCode.id.desc()).limit(1))
    reward.claimed += 1
    events.emit("coupon.issued", {"code": code.code, "offer_id": offer.public_id, "reward_id": reward.public_id,
                                  "expires_at": expires_at.isoformat()}, member_id=member.id)
    claim_row = RewardClaim(reward_id=reward.id, member_id=member.id, code_id=code.id, transaction_id=txn.id,
                            reference=reference, created_at=now)
    db.session.add(claim_row)
    db.session.flush()
    return claim_row, code


@dataclass(frozen=True)
class Receipt:
    """What a member got for a claim: the coupon's code, the points it cost and the ledger transaction."""

    reward_id: str
    code: str
    expires_at: datetime | None
    points_spent: int
    transaction_id: str


def claim_receipt(reward_public_id: str, member: Member, *, reference: str, now: datetime) -> Receipt:
    """`claim`, answered as the member sees it (a replay answers the first claim's code and transaction)."""
    claimed, code = claim(reward_public_id, member, reference=reference, now=now)
    return Receipt(reward_id=reward_public_id, code=code.code, expires_at=code.expires_at,
                   points_spent=get_reward(reward_public_id).points_cost,
                   transaction_id=db.session.get(JournalTransaction, claimed.transaction_id).public_id)


@dataclass(frozen=True)
class CatalogEntry:
    """A reward as one member sees it: whether they may claim it now, and if not, why. Reads as its reward
    too (`entry.name`), so the reward's schema dumps it."""

    reward: Reward
    claimed_by_member: int
    points_short: int  # how many more available points the member needs; 0 when they can afford it
    sold_out: bool
    limit_reached: bool
    # Why the member could not use its coupon now (the checkout's code and detail), so it is not sold to them.
    lock: tuple[str, str] | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name == "reward":  # copies look for dunders before `reward` is set
            raise AttributeError(name)
        return getattr(self.reward, name)

    @property
    def affordable(self) -> bool:
        return self.points_short == 0

    @property
    def locked(self) -> bool:
        return self.lock is not None

    @property
    def locked_code(self) -> str | None:
        return self.lock[0] if self.lock else None

    @property
    def locked_reason(self) -> str | None:
        return self.lock[1] if self.lock else None

    @property
    def claimable(self) -> bool:
        return self.affordable and not self.sold_out and not self.limit_reached and not self.locked


def catalog_for(member: Member, *, limit: int, starting_after: str | None = None, now: datetime) -> dict:
    """The rewards `member` may be offered, oldest first: active ones of active offers, each with what stands
    between the member and a claim, their coupon's lock included. `available` is the member's balance the
    entries were measured against."""
    query = select(Reward).join(Offer, Offer.id == Reward.offer_id).where(Reward.active.is_(True),
                                                                           Offer.active.is_(True))
    page = paginate(query, Reward, limit=limit, starting_after=starting_after)
    available = ledger.balances(member.id).available
    ids = [reward.id for reward in page["data"]]
    mine = dict(db.session.execute(
        select(RewardClaim.reward_id, func.count()).where(RewardClaim.member_id == member.id,
                                                          RewardClaim.reward_id.in_(ids))
        .group_by(RewardClaim.reward_id)).all()) if ids else {}
    locks = offers.holder_refusals(member, list(offers_of(page["data"]).values()), now)
    entries = [CatalogEntry(
        reward=reward, claimed_by_member=mine.get(reward.id, 0),
        points_short=max(reward.points_cost - available, 0),
        sold_out=reward.stock is not None and reward.claimed >= reward.stock,
        limit_reached=reward.per_member_limit is not None and mine.get(reward.id, 0) >= reward.per_member_limit,
        lock=locks.get(reward.offer_id))
        for reward in page["data"]]
    return {"data": entries, "has_more": page["has_more"], "available": available}


def offers_of(reward_list: list[Reward]) -> dict[int, Offer]:
    """The offers behind a page of rewards, by offer id, in one query."""
    ids = {reward.offer_id for reward in reward_list}
    if not ids:
        return {}
    return {offer.id: offer for offer in db.session.scalars(select(Offer).where(Offer.id.in_(ids)))}
