"""Outbound webhooks: endpoints staff register, and delivering the outbox to them.

`dispatch` turns each new outbox event into one delivery per enabled endpoint that wants its type.
`deliver_due` sends the deliveries that are due: it first leases them (moves `next_attempt_at` ahead, in a
transaction of its own), so two workers never send the same one and a worker killed mid-send leaves it to be
retried after the lease, then sends them signed outside any transaction, then records each answer. Both are a
job's batches (`loyalty.unit_of_work.run_batches`): each transaction is committed by the runner, never here. Receivers
dedupe on the event id: delivery is at least once.
"""

from __future__ import annotations

import json
import random
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from loyalty import clock
from loyalty.db import for_update, new_public_id
from loyalty.errors import NotFound, ValidationProblem
from loyalty.events import EVENT_TYPES
from loyalty.extensions import db
from loyalty.members import service as members
from loyalty.members.models import CONSENT_PURPOSES, Member
from loyalty.pagination import paginate
from loyalty.settings import Settings
from loyalty.unit_of_work import SAME_BATCH, Batches
from loyalty.webhooks import delivery
from loyalty.webhooks.models import OutboxEvent, WebhookDelivery, WebhookEndpoint

LEASE = timedelta(minutes=5)
_rng = random.SystemRandom()


# --- endpoints ---------------------------------------------------------------------------------------------

def _checked(fields: dict[str, Any], allow_private: bool) -> dict[str, Any]:
    if "url" in fields:
        reason = delivery.check_url(fields["url"], allow_private=allow_private)
        if reason:
            raise ValidationProblem(reason, errors={"url": [reason]})
    unknown = sorted(set(fields.get("event_types") or ()) - set(EVENT_TYPES))
    if unknown:
        raise ValidationProblem(errors={"event_types": [f"Unknown event types: {', '.join(unknown)}."]})
    if fields.get("event_types"):
        fields["event_types"] = list(dict.fromkeys(fields["event_types"]))  # once each, in the order given
    return fields


def create_endpoint(fields: dict[str, Any], *, allow_private: bool) -> WebhookEndpoint:
    """`allow_private`: a URL may name a private or loopback address (the WEBHOOK_ALLOW_PRIVATE_URLS setting)."""
    endpoint = WebhookEndpoint(**_checked(fields, allow_private), secret=f"whsec_{secrets.token_urlsafe(32)}")
    db.session.add(endpoint)
    db.session.flush()
    return endpoint


def get_endpoint(public_id: str) -> WebhookEndpoint:
    endpoint = db.session.scalar(select(WebhookEndpoint).where(WebhookEndpoint.public_id == public_id))
    if endpoint is None:
        raise NotFound("No webhook endpoint has this id.")
    return endpoint


def update_endpoint(endpoint: WebhookEndpoint, changes: dict[str, Any], *, allow_private: bool) -> WebhookEndpoint:
    for name, value in _checked(changes, allow_private).items():
        setattr(endpoint, name, value)
    if changes.get("enabled"):
        endpoint.failing, endpoint.consecutive_failures = False, 0  # re-enabling is a fresh start
    db.session.flush()
    return endpoint


def list_endpoints(*, limit: int, starting_after: str | None = None) -> dict:
    return paginate(select(WebhookEndpoint), WebhookEndpoint, limit=limit, starting_after=starting_after)


def list_deliveries(endpoint: WebhookEndpoint, *, limit: int, starting_after: str | None = None,
                    status: str | None = None) -> dict:
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    return paginate(query, WebhookDelivery, limit=limit, starting_after=starting_after, newest_first=True)


def replay(endpoint: WebhookEndpoint, delivery_id: str, now: datetime) -> WebhookDelivery:
    """Send a delivery again, now, whatever became of it."""
    row = db.session.scalar(select(WebhookDelivery).where(WebhookDelivery.public_id == delivery_id,
                                                          WebhookDelivery.endpoint_id == endpoint.id))
    if row is None:
        raise NotFound("This endpoint has no delivery with this id.")
    row.status, row.next_attempt_at, row.delivered_at = "pending", now, None
    return row


# --- dispatch and delivery -----------------------------------------------------------------------------------

def dispatch(now: datetime, *, batch_size: int = 1000) -> Batches:
    """One delivery per event and interested endpoint, in batches; an event is dispatched once."""
    endpoints = db.session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True))).all()
    while batch := db.session.scalars(for_update(
            select(OutboxEvent).where(OutboxEvent.dispatched_at.is_(None)).order_by(OutboxEvent.id)
            .limit(batch_size), db.session, skip_locked=True)).all():
        rows = [{"endpoint_id": endpoint.id, "event_id": event.id, "status": "pending", "attempts": 0,
                 "next_attempt_at": now, "created_at": now, "public_id": new_public_id("whd")}
                for event in batch for endpoint in endpoints
                if not endpoint.event_types or event.type in endpoint.event_types]
        if rows:
            db.session.execute(WebhookDelivery.__table__.insert(), rows)
        for event in batch:
            event.dispatched_at = now
        yield {"events": len(batch), "deliveries": len(rows)}


def deliver_due(now: datetime, settings: Settings, *, batch_size: int = 100) -> Batches:
    """Send the deliveries that are due, one leased batch at a time, several at once. A batch is three
    transactions: the lease, the read of what to send (ended before the network is waited on), the answers."""
    with ThreadPoolExecutor(max_workers=settings.webhook_concurrency) as pool:
        # Leases and retries count from each batch's own moment: a long backlog must not shorten them.
        while leased := _lease(max(now, clock.now()), batch_size):
            yield SAME_BATCH  # the lease is committed before anything is sent
            requests = _prepare(leased)
            yield SAME_BATCH  # no transaction open while the network is waited on
            attempts = pool.map(lambda request: delivery.post(
                request.url, request.body, request.headers, timeout=settings.webhook_timeout_seconds,
                allow_private=settings.webhook_allow_private_urls), requests)
            answers = [(request.delivery_id, attempt) for request, attempt in zip(requests, attempts, strict=True)]
            counts = {"delivered": 0, "retrying": 0, "failed": 0}
            for outcome in _record(answers, max(now, clock.now()), settings):
                counts[outcome] += 1
            yield counts


def _lease(now: datetime, batch_size: int) -> list[int]:
    # A disabled endpoint's deliveries wait, unsent, until it is enabled again (a subquery, not a join, so only
    # delivery rows are locked).
    enabled = select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True))
    rows = db.session.scalars(for_update(
        select(WebhookDelivery).where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                                      WebhookDelivery.endpoint_id.in_(enabled))
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(batch_size),
        db.session, skip_locked=True)).all()
    ids = [row.id for row in rows]  # read before the commit expires them
    for row in rows:
        row.next_attempt_at = now + LEASE
    db.session.flush()
    return ids


def body_of(event: OutboxEvent, member_public_id: str | None, consent: dict[str, bool] | None = None) -> bytes:
    """What a receiver gets: the event with the member's public id, never an internal one, and for an event about
    a member, `consent`: whether the member agrees to each purpose (marketing_email, sms, personalised_offers).

    `data` is what happened, fixed when the event was written. `consent` is the member's state when this body is
    built, that is at each delivery attempt: a withdrawal made after the event was written, before it reached the
    shop, is respected. A purpose the member never answered is false; an erased member's are all false."""
    body: dict[str, Any] = {"id": event.public_id, "type": event.type, "created_at": event.created_at.isoformat(),
                            "data": event.data}
    if event.member_id:
        body["data"] = {**event.data, "member_id": member_public_id}
        body["consent"] = consent or dict.fromkeys(CONSENT_PURPOSES, False)
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class _Request:
    delivery_id: int
    url: str
    body: bytes
    headers: dict[str, str]


def _prepare(delivery_ids: list[int]) -> list[_Request]:
    """The signed requests for leased deliveries, read in one query, and their members' consent in one more."""
    rows = db.session.execute(
        select(WebhookDelivery.id, WebhookEndpoint.url, WebhookEndpoint.secret, OutboxEvent, Member.public_id)
        .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .outerjoin(Member, Member.id == OutboxEvent.member_id)
        .where(WebhookDelivery.id.in_(delivery_ids)).order_by(WebhookDelivery.id)).all()
    consents = members.consents_of(list({event.member_id for *_, event, _ in rows if event.member_id}))
    requests = []
    for delivery_id, url, secret, event, member_public_id in rows:
        body = body_of(event, member_public_id, consents.get(event.member_id))
        requests.append(_Request(delivery_id, url, body, {
            delivery.SIGNATURE_HEADER: delivery.sign(secret, body, int(time.time())),
            "Loyalty-Event-Id": event.public_id, "Loyalty-Event-Type": event.type}))
    return requests


def _record(results: list[tuple[int, delivery.Attempt]], now: datetime, settings: Settings) -> list[str]:
    """Write down a batch of answers in one transaction: each delivery's, and its endpoint's health."""
    rows = {row.id: row for row in db.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.id.in_([delivery_id for delivery_id, _ in results])))}
    endpoints = {endpoint.id: endpoint for endpoint in db.session.scalars(for_update(
        select(WebhookEndpoint).where(WebhookEndpoint.id.in_({row.endpoint_id for row in rows.values()}))
        .order_by(WebhookEndpoint.id), db.session))}
    outcomes = []
    for delivery_id, attempt in results:
        row = rows[delivery_id]
        if row.status != "pending":  # answered already by a worker whose lease ran out: its answer stands
            outcomes.append(row.status)
            continue
        endpoint = endpoints[row.endpoint_id]
        row.attempts += 1
        row.last_attempt_at, row.last_status_code, row.last_error = now, attempt.status_code, attempt.error
        if attempt.ok:
            row.status, row.delivered_at = "delivered", now
            endpoint.consecutive_failures, endpoint.failing = 0, False
            outcomes.append("delivered")
            continue
        endpoint.consecutive_failures += 1
        endpoint.failing = endpoint.consecutive_failures >= settings.webhook_failing_after
        if row.attempts >= settings.webhook_max_attempts:
            row.status = "failed"
            outcomes.append("failed")
        else:
            row.next_attempt_at = now + delivery.backoff(row.attempts, _rng)
            outcomes.append("retrying")
    db.session.flush()
    return outcomes


def purge_delivered(now: datetime, *, retention: timedelta, batch_size: int = 1000) -> Batches:
    """Forget events older than `retention` whose deliveries are all done, with those deliveries, a batch at a
    time."""
    cutoff = now - retention
    open_deliveries = select(WebhookDelivery.event_id).where(WebhookDelivery.status == "pending")
    while ids := db.session.scalars(select(OutboxEvent.id).where(
            OutboxEvent.dispatched_at.is_not(None), OutboxEvent.created_at < cutoff,
            OutboxEvent.id.not_in(open_deliveries)).order_by(OutboxEvent.id).limit(batch_size)).all():
        db.session.execute(delete(WebhookDelivery).where(WebhookDelivery.event_id.in_(ids)))
        db.session.execute(delete(OutboxEvent).where(OutboxEvent.id.in_(ids)))
        yield {"purged": len(ids)}

