"""Every write endpoint is one unit of work, committed once, and replayable under an `Idempotency-Key`.

`@write` sits between `@require` and the request parsing of a view:

- the view adds and flushes; `@write` runs it in a unit of work (`loyalty.unit_of_work`), committed when it
  answers 2xx and rolled back otherwise;
- a staff member's or an API key's unit of work is audited: one `audit_log` entry, committed with it
  (`loyalty.audit.service`); a rolled-back one leaves none;
- with an `Idempotency-Key`, the key is claimed (a row unique per caller and key) in the same transaction
  as the effect, and the answer is stored with it before the commit. A retry with the same request
  replays the stored answer; with another request it is `409 idempotency_key_reused`. Two retries racing
  each other meet on the unique row: PostgreSQL makes the second wait for the first to commit, then it
  replays the first's answer. Errors are not stored: they changed nothing, so the retry simply runs again.

Keys are kept for `IDEMPOTENCY_KEY_RETENTION_HOURS`; after that the key is free again (`purge_expired`).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import Response, current_app, g, request
from sqlalchemy import Index, String, Text, UniqueConstraint, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.audit import service as audit
from loyalty.clock import now
from loyalty.db import UTCDateTime
from loyalty.errors import Conflict, IdempotencyKeyReused, ValidationProblem
from loyalty.extensions import db
from loyalty.idempotency import HEADER, fingerprint, request_key
from loyalty.unit_of_work import Batches, unit_of_work

REPLAYED_HEADER = "Idempotent-Replayed"


class StoredResponse(db.Model):
    """The first answer to a request sent with an Idempotency-Key, kept for replays."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("caller", "key", name="uq_idempotency_keys_caller_key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Keys are the caller's own: two API keys may both send "order-1" without meeting.
    caller: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(128))
    request_hash: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(300))
    status_code: Mapped[int | None]
    body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


# The claim, built once per dialect: every write sent with a key makes one.
_CLAIM = {name: dialect.insert(StoredResponse).on_conflict_do_nothing(index_elements=["caller", "key"])
          .returning(StoredResponse) for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))}


def write(view: Callable | None = None, *, key_required: bool = False) -> Callable:
    """Make `view` one unit of work; `key_required` refuses a request without an Idempotency-Key."""
    if view is None:
        return functools.partial(write, key_required=key_required)

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Response:
        key = request_key()
        if key is None and key_required:
            raise ValidationProblem("Send an Idempotency-Key so a retry cannot do this twice.",
                                    errors={HEADER: ["Required."]})
        stored = _claim(key) if key else None
        if stored is not None and stored.status_code is not None:
            return _replay(stored)
        with audit.capturing(audit.request_actor()) as capture, unit_of_work() as work:
            response = current_app.make_response(view(*args, **kwargs))
            if not 200 <= response.status_code < 300:
                work.discard()
                return response
            if stored is not None:
                stored.status_code, stored.body = response.status_code, response.get_data(as_text=True)
            capture.record(response.status_code)
            return response

    wrapper.is_unit_of_work = True
    return wrapper


def _caller() -> str:
    principal = g.get("principal")
    return f"{principal.kind}:{principal.public_id}" if principal else f"anonymous:{request.remote_addr}"


def _request_hash() -> str:
    """The body however it arrived: with a Content-Length or chunked (which werkzeug de-chunks) alike. Parsed,
    so key order and whitespace do not matter; raw bytes when it is not JSON. Keyed with the app's secret: a body
    may hold a password, and a bare hash of it and fields anyone knows would let whoever reads the table test
    guesses at sha256's speed."""
    raw = request.get_data(cache=True)
    body = request.get_json(silent=True) if raw else None
    if raw and body is None:
        body = hashlib.sha256(raw).hexdigest()
    plain = fingerprint(request.method, request.path, sorted(request.args.items(multi=True)), body)
    return hmac.new(str(current_app.config["SECRET_KEY"]).encode(), plain.encode(), "sha256").hexdigest()


def _claim(key: str) -> StoredResponse:
    """This caller's row for `key`: the stored answer of an earlier request, or a new claim for this one.
    The claim is one INSERT ... ON CONFLICT DO NOTHING: a retry racing the first request waits on the
    unique row until the first commits, then reads its answer."""
    caller, request_hash, moment = _caller(), _request_hash(), now()
    retention = timedelta(hours=current_app.config["IDEMPOTENCY_KEY_RETENTION_HOURS"])
    for _ in range(3):  # again only when the key's row was past retention, or purged meanwhile
        # RETURNING the row itself: the new claim comes back as an object, with no second read.
        claimed = db.session.scalar(_CLAIM[db.session.get_bind().dialect.name], {
            "caller": caller, "key": key, "request_hash": request_hash, "method": request.method,
            "path": request.path[:300], "created_at": moment, "expires_at": moment + retention})
        stored = claimed or _stored(caller, key)
        if stored is not None and (claimed or stored.expires_at > moment):
            break
        if stored is not None:
            # Past retention: the key is free again. Core, not the ORM: racing requests may both delete it.
            db.session.execute(delete(StoredResponse).where(StoredResponse.id == stored.id))
    else:
        raise Conflict("This Idempotency-Key is being reused by another request right now; retry.")
    if stored.request_hash != request_hash:
        raise IdempotencyKeyReused("This Idempotency-Key was already used with another request.")
    return stored


def _stored(caller: str, key: str) -> StoredResponse | None:
    return db.session.scalar(select(StoredResponse).where(StoredResponse.caller == caller, StoredResponse.key == key)
                             .execution_options(populate_existing=True))


def _replay(stored: StoredResponse) -> Response:
    db.session.rollback()  # nothing to write: end the transaction the claim began
    response = Response(stored.body, status=stored.status_code, mimetype="application/json")
    response.headers[REPLAYED_HEADER] = "true"
    return response


def purge_expired(moment: datetime, *, batch_size: int = 1000) -> Batches:
    """Forget keys past retention, a batch at a time (a job's batches: `loyalty.unit_of_work.run_batches`)."""
    while ids := db.session.scalars(select(StoredResponse.id).where(StoredResponse.expires_at <= moment)
                                    .order_by(StoredResponse.id).limit(batch_size)).all():
        db.session.execute(delete(StoredResponse).where(StoredResponse.id.in_(ids)))
        yield {"purged": len(ids)}
