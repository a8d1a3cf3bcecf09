"""The ceiling app: Flask and SQLAlchemy Core doing only the row work of the member summary and of a hold,
with no ORM, no marshmallow, no auth, no logging. Served by the same gunicorn configuration as the real
app (`gunicorn -c gunicorn.conf.py bench.raw_app:app`), so the gap between the two is what the real app's
layers cost. It must not import `wsgi` or `loyalty`.

    GET  /raw/summary/<public_id>   one indexed SELECT: the member's balances (members joined to ledger_accounts)
    POST /raw/hold  {"member_id", "points"}   one transaction on the bench tables: SELECT ... FOR UPDATE,
                                              UPDATE, INSERT, COMMIT -> 201
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Flask, jsonify, request
from sqlalchemy import Engine, create_engine, text

app = Flask(__name__)
_engine: Engine | None = None

SUMMARY = text("""
    SELECT m.public_id,
           COALESCE(SUM(a.balance) FILTER (WHERE a.kind = 'available'), 0) AS available,
           COALESCE(SUM(a.balance) FILTER (WHERE a.kind = 'pending'), 0) AS pending,
           COALESCE(SUM(a.balance) FILTER (WHERE a.kind = 'held'), 0) AS held
    FROM members m JOIN ledger_accounts a ON a.member_id = m.id AND a.kind IN ('available', 'pending', 'held')
    WHERE m.public_id = :public_id
    GROUP BY m.public_id""")
LOCK = text("""
    SELECT b.member_id, b.available FROM bench_raw_balances b JOIN members m ON m.id = b.member_id
    WHERE m.public_id = :public_id FOR UPDATE OF b""")
MOVE = text("UPDATE bench_raw_balances SET available = available - :points, held = held + :points "
            "WHERE member_id = :member_id")
HOLD = text("INSERT INTO bench_raw_holds (member_id, points, created_at) VALUES (:member_id, :points, :at) "
            "RETURNING id")


def engine() -> Engine:
    """Made on first use, in the worker: with preload_app, an engine made at import would be made in the
    gunicorn master and its connections would cross the fork."""
    global _engine
    if _engine is None:
        _engine = create_engine(os.environ["DATABASE_URL"])
    return _engine


@app.get("/healthz")
def healthz():
    return jsonify(status="ok")


@app.get("/raw/summary/<public_id>")
def summary(public_id: str):
    with engine().connect() as connection:
        row = connection.execute(SUMMARY, {"public_id": public_id}).first()
    if row is None:
        return jsonify(error="not_found"), 404
    return jsonify(id=row.public_id, points={"available": row.available, "pending": row.pending, "held": row.held})


@app.post("/raw/hold")
def hold():
    payload = request.get_json()
    points = int(payload["points"])
    with engine().begin() as connection:
        row = connection.execute(LOCK, {"public_id": payload["member_id"]}).first()
        if row is None:
            return jsonify(error="not_found"), 404
        if row.available < points:
            return jsonify(error="insufficient_points"), 409
        connection.execute(MOVE, {"points": points, "member_id": row.member_id})
        hold_id = connection.execute(HOLD, {"member_id": row.member_id, "points": points,
                                            "at": datetime.now(UTC)}).scalar()
    return jsonify(id=hold_id, member_id=payload["member_id"], points=points,
                   available=row.available - points), 201
