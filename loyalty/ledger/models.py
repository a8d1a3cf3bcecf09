"""The ledger's tables: accounts, the journal, postings, point lots, lot movements and holds.

Plain SQLAlchemy on `loyalty.db.Base` (no Flask): the ledger is usable from any session.

Every account belongs to one member, program accounts included: `issued`, `redeemed`,
`expired` and `adjusted` are kept per member and summed for program totals. So a movement
touches one member's rows only: no program-wide row every checkout would queue on, and the
rows shard by member with everything else.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, UniqueConstraint, event, text
from sqlalchemy.orm import Mapped, mapped_column

from loyalty.clock import now
from loyalty.db import Base, UTCDateTime, new_public_id

MEMBER_ACCOUNTS = ("available", "pending", "held")
PROGRAM_ACCOUNTS = ("issued", "redeemed", "expired", "adjusted")
ACCOUNT_KINDS = MEMBER_ACCOUNTS + PROGRAM_ACCOUNTS
TRANSACTION_KINDS = (
    "earn", "activate", "redeem", "hold", "release", "expire", "adjust", "clawback", "restore",
    "reward", "bonus",
)
LOT_STATUSES = ("pending", "active", "expired", "spent")
HOLD_STATUSES = ("held", "captured", "released")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


_AVAILABLE_POINTS = "kind = 'available' AND balance > 0"


class Account(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        UniqueConstraint("member_id", "kind", name="uq_ledger_accounts_member_id_kind"),
        CheckConstraint(_in("kind", ACCOUNT_KINDS), name="kind"),
        # The database itself refuses an overdraft, whatever the code above it does.
        CheckConstraint(f"NOT ({_in('kind', (*MEMBER_ACCOUNTS, 'redeemed', 'expired'))}) OR balance >= 0",
                        name="not_negative"),
        CheckConstraint("kind <> 'issued' OR balance <= 0", name="issued_is_a_source"),
        # The liability report sums balances by kind and counts members holding points from this index
        # alone (an index-only scan), never from the table or the journal.
        Index("ix_ledger_accounts_kind_balance_member_id", "kind", "balance", "member_id"),
        # The inactivity expiry reads the members holding points, longest idle first, from this index alone:
        # members with nothing available are not in it, however long they have been idle.
        Index("ix_ledger_accounts_last_activity_at", "last_activity_at", "member_id",
              postgresql_where=text(_AVAILABLE_POINTS), sqlite_where=text(_AVAILABLE_POINTS)),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(16))
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    # On the member's `available` account only (None on the others): their last activity, an earn or a
    # redemption (see `service._active`), or their enrolment. Under the inactivity policy, points expire a number of
    # days after it.
    last_activity_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JournalTransaction(Base):
    """One movement of points: two or more postings summing to zero. Insert-only."""

    __tablename__ = "ledger_transactions"
    __table_args__ = (
        CheckConstraint(_in("kind", TRANSACTION_KINDS), name="kind"),
        Index("ix_ledger_transactions_member_id_id", "member_id", "id"),
        # Reports and the dashboard read the journal by period.
        Index("ix_ledger_transactions_created_at", "created_at"),
        # The few clawbacks that fell short, so a member's kept points are read without their whole journal.
        Index("ix_ledger_transactions_member_id_shortfall", "member_id",
              postgresql_where=text("shortfall > 0"), sqlite_where=text("shortfall > 0")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("txn"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    kind: Mapped[str] = mapped_column(String(16))
    # The change in what the member holds (available + pending + held), so a member's journal
    # reads like a bank statement: each balance is the previous one plus `points`. A hold, a
    # release or an activation moves points between the member's own accounts: 0.
    points: Mapped[int] = mapped_column(BigInteger)
    available_after: Mapped[int] = mapped_column(BigInteger)
    pending_after: Mapped[int] = mapped_column(BigInteger)
    held_after: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(String(500))
    # The caller's idempotency reference (an order, a refund, a Stripe event, a request key).
    reference: Mapped[str] = mapped_column(String(200), unique=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[str | None] = mapped_column(String(128), index=True)
    rule_version: Mapped[int | None]
    # What this movement follows from: the earn a clawback undoes, the hold a capture settles.
    related_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    # Unique: a transaction is reversed at most once.
    reverses_id: Mapped[int | None] = mapped_column(ForeignKey("ledger_transactions.id"), unique=True)
    # Points a clawback could not take because the member had already spent them.
    shortfall: Mapped[int] = mapped_column(BigInteger, default=0)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("staff_users.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)

    @property
    def balance_after(self) -> int:
        return self.available_after + self.pending_after + self.held_after


class Posting(Base):
    __tablename__ = "ledger_postings"

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("ledger_accounts.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class Lot(Base):
    """Points from one earn (or positive adjustment), spent and expired soonest-expiring first."""

    __tablename__ = "ledger_lots"
    __table_args__ = (
        CheckConstraint(_in("status", LOT_STATUSES), name="status"),
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_within_amount"),
        Index("ix_ledger_lots_member_id_status_expires_at", "member_id", "status", "expires_at"),
        Index("ix_ledger_lots_status_expires_at", "status", "expires_at"),
        Index("ix_ledger_lots_status_activates_at", "status", "activates_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("lot"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    activates_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class LotMovement(Base):
    """How one transaction changed one lot's remaining: the allocation a release or refund reverses.
    Insert-only; a lot's movements sum to its remaining."""

    __tablename__ = "ledger_lot_movements"

    id: Mapped[int] = mapped_column(primary_key=True)
    transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), index=True)
    lot_id: Mapped[int] = mapped_column(ForeignKey("ledger_lots.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)


class Hold(Base):
    """Points reserved by a checkout: held, then captured (redeemed) or released, once."""

    __tablename__ = "ledger_holds"
    __table_args__ = (
        CheckConstraint(_in("status", HOLD_STATUSES), name="status"),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("restored >= 0 AND restored <= amount", name="restored_within_amount"),
        Index("ix_ledger_holds_status_expires_at", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: new_public_id("hld"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="held")
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    hold_transaction_id: Mapped[int] = mapped_column(ForeignKey("ledger_transactions.id"), unique=True)
    # Unique: a hold is captured or released at most once.
    resolution_transaction_id: Mapped[int | None] = mapped_column(
        ForeignKey("ledger_transactions.id"), unique=True
    )
    # Redeemed points given back by refunds so far.
    restored: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class JournalIsAppendOnly(Exception):
    """Raised when code tries to edit or delete a journal row; corrections are new transactions."""


def _refuse_change(mapper, connection, target) -> None:
    raise JournalIsAppendOnly(f"{type(target).__name__} rows are insert-only")


for _model in (JournalTransaction, Posting, LotMovement):
    event.listen(_model, "before_update", _refuse_change)
    event.listen(_model, "before_delete", _refuse_change)
