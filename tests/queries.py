"""Counting the SQL statements a block of code sends: the cost that does not depend on the machine."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event

from loyalty.extensions import db


@contextmanager
def counting_queries() -> Iterator[list[str]]:
    """The SQL statements run inside the block (inside an app context), transaction control left out."""
    statements: list[str] = []

    def record(connection, cursor, statement, *args) -> None:
        if not statement.startswith(("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT")):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
