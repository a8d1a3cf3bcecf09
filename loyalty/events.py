"""What happened, for the shop's tools: the transactional outbox, events written in the same transaction as the
change they describe.

Services call `emit` for what they decide (a member enrolled, a coupon issued, a refund). Points movements
are caught where they are made, once for all: every journal row the ledger writes becomes `points.earned`,
`points.redeemed` or `points.expired` in the same flush (the ledger itself stays free of this). Delivery is
the worker's (`loyalty.webhooks.outbound`): nothing here talks to the network.

Low in the layers (above the models, below every service), so any service may emit. Its listeners (the
session's flushes, the tiers' `tier_changed` signal) are registered by `init_app`, which `create_app` calls:
importing this module changes nothing.

Data minimisation: an event names its member by id only (the body gets the public id, and the member's consent
per purpose, when it is sent). No email, name, birthday or address is ever written here: a shop's tool that
needs the email to send a message looks the member up by id (`GET /v1/members/{id}`), so it always reads the
current address, and none lingers in the outbox after the member is erased. `member.erased` tells the shop's
tools to erase what they copied.
"""

from __future__ import annotations

from typing import Any

from blinker import Namespace
from flask import Flask
from sqlalchemy import event
from sqlalchemy.orm import Session

from loyalty.extensions import db
from loyalty.ledger.models import JournalTransaction
from loyalty.webhooks.models import OutboxEvent

EVENT_TYPES = ("member.created", "points.earned", "points.redeemed", "points.expired", "points.expiring",
               "tier.changed", "coupon.issued", "redemption.captured", "order.refunded", "consent.changed",
               "member.erased")
_BY_KIND = {"earn": "points.earned", "bonus": "points.earned", "redeem": "points.redeemed",
            "reward": "points.redeemed", "expire": "points.expired"}
_PENDING = "outbox_transactions"

signals = Namespace()
# Sent by the tiers on every change of a member's tier; `init_app` turns it into a `tier.changed` event.
tier_changed = signals.signal("tier.changed")


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


def init_app(app: Flask) -> None:
    """Catch points movements as they flush and tier changes as they are announced. Once per process, whatever
    the number of apps: the listeners are the session class's and the signal's, not an app's."""
    for name, listener in _SESSION_LISTENERS:
        if not event.contains(Session, name, listener):
            event.listen(Session, name, listener)
    tier_changed.connect(_tier_changed)  # blinker keeps one connection per receiver


def _collect(session: Session, flush_context: Any, instances: Any) -> None:
    new = [obj for obj in session.new if isinstance(obj, JournalTransaction) and obj.kind in _BY_KIND]
    if new:
        session.info.setdefault(_PENDING, []).extend(new)


def _emit_points(session: Session, flush_context: Any) -> None:
    """Now the rows have their ids; the events go in with the next flush, which commit makes."""
    for txn in session.info.pop(_PENDING, ()):
        session.add(OutboxEvent(type=_BY_KIND[txn.kind], member_id=txn.member_id, data=_points_event(txn),
                                created_at=txn.created_at))


def _tier_changed(sender: Any, *, member_id: int, from_tier: str | None, to_tier: str, reason: str,
                  at: Any) -> None:
    emit("tier.changed", {"from_tier": from_tier, "to_tier": to_tier, "reason": reason, "at": at.isoformat()},
         member_id=member_id)


def _forget(session: Session) -> None:
    session.info.pop(_PENDING, None)


_SESSION_LISTENERS = (("before_flush", _collect), ("after_flush_postexec", _emit_points), ("after_rollback", _forget))
