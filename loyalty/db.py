"""Model base, column types and id helpers shared by every domain package."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, MetaData, Select, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Session

# Stable constraint names, so migrations can refer to them on every database.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database.

    SQLite keeps no offset, so values are normalised to UTC on the way in and
    marked UTC on the way out; naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use loyalty.clock.now() or an aware value")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class DecimalText(TypeDecorator):
    """An exact decimal on every database, stored as its text ("1.5"): SQLite has no exact numeric."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect) -> str | None:
        return None if value is None else format(Decimal(value), "f")

    def process_result_value(self, value: str | None, dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


def for_update(query: Select, session: Session, **options: Any) -> Select:
    """Lock the rows `query` reads until the transaction ends. PostgreSQL: SELECT ... FOR UPDATE.
    SQLite has no row locks; every transaction there begins IMMEDIATE (loyalty.app), which serialises
    writers instead, so the query is left as it is."""
    if session.get_bind().dialect.name == "postgresql":
        return query.with_for_update(**options)
    return query


def random_string(alphabet: str, length: int) -> str:
    """`length` characters drawn uniformly from `alphabet` with the system's CSPRNG.

    One draw of 64 bits more than needed, written in base len(alphabet): the bias is below 2**-64,
    and it is many times faster than a secrets.choice per character (100,000 codes at a time).
    """
    base = len(alphabet)
    number = int.from_bytes(secrets.token_bytes((base**length).bit_length() // 8 + 9))
    characters = []
    for _ in range(length):
        number, digit = divmod(number, base)
        characters.append(alphabet[digit])
    return "".join(characters)


def new_public_id(prefix: str, length: int = 20) -> str:
    """A prefixed random id such as `mem_4k2...`: 20 base-36 characters, about 103 bits."""
    return f"{prefix}_" + random_string(_ID_ALPHABET, length)
