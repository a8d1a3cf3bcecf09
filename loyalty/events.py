"""The transactional outbox: events written in the same transaction as the change they describe.

Services call `emit` for what they decide (a member enrolled, a coupon issued, a refund). Points movements
are caught where they are made, once for all: every journal row the ledger writes becomes `points.earned`,
`points.redeemed` or `points.expired` in the same flush (the ledger itself stays free of this). Delivery is
the worker's (`loyalty.webhooks.outbound`): nothing here talks to the network.

Data minimisation: an event names its member by id only (the body gets the public id, and the member's consent
per purpose, when it is sent). No email, name, birthday or address is ever written here: a shop's tool that
needs the email to send a message looks the member up by id (`GET /v1/members/{id}`), so it always reads the
current address, and none lingers in the outbox after the member is erased. `member.erased` tells the shop's
tools to erase what they copied.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from loyalty.extensions import db
from loyalty.ledger.models import JournalTransaction
from loyalty.tiers.service import tier_changed
from loyalty.webhooks.models import OutboxEvent

EVENT_TYPES = ("member.created", "points.earned", "points.redeemed", "points.expired", "points.expiring",
               "tier.changed", "coupon.issued", "redemption.captured", "order.refunded", "consent.changed",
               "member.erased")
_BY_KIND = {"earn": "points.earned", "bonus": "points.earned", "redeem": "points.redeemed",
            "reward": "points.redeemed", "expire": "points.expired"}
_PENDING = "outbox_transactions"


def emit(type_: str, data: dict[str, Any], *, member_id: int | None = None) -> OutboxEvent:
    """Add an event to the unit of work; it is committed, or rolled back, with everything else."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type_}")
    outbox_event = OutboxEvent(type=type_, member_id=member_id, data=data)
    db.session.add(outbox_event)
    return outbox_event


def _points_event(txn: JournalTransaction) -> dict[str, Any]:
    return {"transaction_id": txn.public_id, "kind": txn.kind, "points": abs(txn.points),
            "balance_after": txn.balance_after, "order_id": txn.order_id, "description": txn.description}


@event.listens_for(Session, "before_flush")
def _collect(session: Session, flush_context: Any, instances: Any) -> None:
    new = [obj for obj in session.new if isinstance(obj, JournalTransaction) and obj.kind in _BY_KIND]
    if new:
        session.info.setdefault(_PENDING, []).extend(new)


@event.listens_for(Session, "after_flush_postexec")
def _emit_points(session: Session, flush_context: Any) -> None:
    """Now the rows have their ids; the events go in with the next flush, which commit makes."""
    for txn in session.info.pop(_PENDING, ()):
        session.add(OutboxEvent(type=_BY_KIND[txn.kind], member_id=txn.member_id, data=_points_event(txn),
                                created_at=txn.created_at))


@tier_changed.connect
def _tier_changed(sender: Any, *, member_id: int, from_tier: str | None, to_tier: str, reason: str,
                  at: Any) -> None:
    emit("tier.changed", {"from_tier": from_tier, "to_tier": to_tier, "reason": reason, "at": at.isoformat()},
         member_id=member_id)


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)
