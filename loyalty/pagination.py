"""Cursor pagination over public ids: `?limit=` and `?starting_after=`, oldest first (or newest first,
for logs)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select

from loyalty.errors import ValidationProblem
from loyalty.extensions import db


def paginate(query: Select, model: Any, *, limit: int, starting_after: str | None = None,
             newest_first: bool = False) -> dict:
    """Run `query` for one page and answer `{"data": [...], "has_more": bool}`."""
    if starting_after:
        cursor = db.session.scalar(select(model.id).where(model.public_id == starting_after))
        if cursor is None:
            raise ValidationProblem(errors={"starting_after": ["No such id in this list."]})
        query = query.where(model.id < cursor if newest_first else model.id > cursor)
    order = model.id.desc() if newest_first else model.id
    rows = list(db.session.scalars(query.order_by(order).limit(limit + 1)))
    return {"data": rows[:limit], "has_more": len(rows) > limit}
