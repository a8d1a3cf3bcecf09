"""The points ledger: accounts, journal, postings, lots, lot movements and holds.

The journal (transactions, postings, lot movements) is insert-only, guarded by triggers.

Revision ID: 37a10bc60051
Revises: 5007055a100a
Create Date: 2026-11-23 11:12:57
"""

import sqlalchemy as sa
from alembic import op

revision = "37a10bc60051"
down_revision = "5007055a100a"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this
JOURNAL_TABLES = ("ledger_transactions", "ledger_postings", "ledger_lot_movements")


def upgrade():
    op.create_table('ledger_accounts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("NOT (kind IN ('available', 'pending', 'held', 'redeemed', 'expired')) OR balance >= 0", name=op.f('ck_ledger_accounts_not_negative')),
    sa.CheckConstraint("kind <> 'issued' OR balance <= 0", name=op.f('ck_ledger_accounts_issued_is_a_source')),
    sa.CheckConstraint("kind IN ('available', 'pending', 'held', 'issued', 'redeemed', 'expired', 'adjusted')", name=op.f('ck_ledger_accounts_kind')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_ledger_accounts_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_accounts')),
    sa.UniqueConstraint('member_id', 'kind', name='uq_ledger_accounts_member_id_kind')
    )
    op.create_table('ledger_transactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('available_after', sa.BigInteger(), nullable=False),
    sa.Column('pending_after', sa.BigInteger(), nullable=False),
    sa.Column('held_after', sa.BigInteger(), nullable=False),
    sa.Column('description', sa.String(length=500), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=True),
    sa.Column('rule_version', sa.Integer(), nullable=True),
    sa.Column('related_id', sa.Integer(), nullable=True),
    sa.Column('reverses_id', sa.Integer(), nullable=True),
    sa.Column('shortfall', sa.BigInteger(), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.CheckConstraint("kind IN ('earn', 'activate', 'redeem', 'hold', 'release', 'expire', 'adjust', 'clawback', 'restore', 'reward', 'bonus')", name=op.f('ck_ledger_transactions_kind')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_ledger_transactions_member_id_members')),
    sa.ForeignKeyConstraint(['related_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_transactions_related_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['reverses_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_transactions_reverses_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['staff_id'], ['staff_users.id'], name=op.f('fk_ledger_transactions_staff_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_transactions')),
    sa.UniqueConstraint('public_id', name=op.f('uq_ledger_transactions_public_id')),
    sa.UniqueConstraint('reference', name=op.f('uq_ledger_transactions_reference')),
    sa.UniqueConstraint('reverses_id', name=op.f('uq_ledger_transactions_reverses_id'))
    )
    op.create_index('ix_ledger_transactions_member_id_id', 'ledger_transactions', ['member_id', 'id'])
    op.create_index('ix_ledger_transactions_order_id', 'ledger_transactions', ['order_id'])
    op.create_index('ix_ledger_transactions_related_id', 'ledger_transactions', ['related_id'])

    op.create_table('ledger_holds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('expires_at', UTC_DATETIME, nullable=False),
    sa.Column('hold_transaction_id', sa.Integer(), nullable=False),
    sa.Column('resolution_transaction_id', sa.Integer(), nullable=True),
    sa.Column('restored', sa.BigInteger(), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('resolved_at', UTC_DATETIME, nullable=True),
    sa.CheckConstraint("status IN ('held', 'captured', 'released')", name=op.f('ck_ledger_holds_status')),
    sa.CheckConstraint('amount > 0', name=op.f('ck_ledger_holds_amount_positive')),
    sa.CheckConstraint('restored >= 0 AND restored <= amount', name=op.f('ck_ledger_holds_restored_within_amount')),
    sa.ForeignKeyConstraint(['hold_transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_holds_hold_transaction_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_ledger_holds_member_id_members')),
    sa.ForeignKeyConstraint(['resolution_transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_holds_resolution_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_holds')),
    sa.UniqueConstraint('hold_transaction_id', name=op.f('uq_ledger_holds_hold_transaction_id')),
    sa.UniqueConstraint('public_id', name=op.f('uq_ledger_holds_public_id')),
    sa.UniqueConstraint('resolution_transaction_id', name=op.f('uq_ledger_holds_resolution_transaction_id'))
    )
    op.create_index('ix_ledger_holds_member_id', 'ledger_holds', ['member_id'])
    op.create_index('ix_ledger_holds_status_expires_at', 'ledger_holds', ['status', 'expires_at'])

    op.create_table('ledger_lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('activates_at', UTC_DATETIME, nullable=True),
    sa.Column('expires_at', UTC_DATETIME, nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.CheckConstraint("status IN ('pending', 'active', 'expired', 'spent')", name=op.f('ck_ledger_lots_status')),
    sa.CheckConstraint('remaining >= 0 AND remaining <= amount', name=op.f('ck_ledger_lots_remaining_within_amount')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_ledger_lots_member_id_members')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_lots_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_lots')),
    sa.UniqueConstraint('public_id', name=op.f('uq_ledger_lots_public_id'))
    )
    op.create_index('ix_ledger_lots_member_id_status_expires_at', 'ledger_lots', ['member_id', 'status', 'expires_at'])
    op.create_index('ix_ledger_lots_status_activates_at', 'ledger_lots', ['status', 'activates_at'])
    op.create_index('ix_ledger_lots_status_expires_at', 'ledger_lots', ['status', 'expires_at'])
    op.create_index('ix_ledger_lots_transaction_id', 'ledger_lots', ['transaction_id'])

    op.create_table('ledger_postings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['ledger_accounts.id'], name=op.f('fk_ledger_postings_account_id_ledger_accounts')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_postings_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_postings'))
    )
    op.create_index('ix_ledger_postings_account_id', 'ledger_postings', ['account_id'])
    op.create_index('ix_ledger_postings_transaction_id', 'ledger_postings', ['transaction_id'])

    op.create_table('ledger_lot_movements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['ledger_lots.id'], name=op.f('fk_ledger_lot_movements_lot_id_ledger_lots')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_ledger_lot_movements_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_lot_movements'))
    )
    op.create_index('ix_ledger_lot_movements_lot_id', 'ledger_lot_movements', ['lot_id'])
    op.create_index('ix_ledger_lot_movements_transaction_id', 'ledger_lot_movements', ['transaction_id'])
    _guard_journal()
    # Members enrolled before the ledger existed get their accounts now.
    for kind in ("available", "pending", "held", "issued", "redeemed", "expired", "adjusted"):
        op.execute(f"INSERT INTO ledger_accounts (member_id, kind, balance) SELECT id, '{kind}', 0 FROM members")


def _guard_journal():
    """Refuse UPDATE and DELETE on journal rows: corrections are new transactions."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% rows are insert-only', TG_TABLE_NAME;
            END $$""")
        for table in JOURNAL_TABLES:
            op.execute(f"CREATE TRIGGER {table}_insert_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()")
    else:
        for table in JOURNAL_TABLES:
            for action in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} rows are insert-only'); END")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in JOURNAL_TABLES:
            op.execute(f"DROP TRIGGER {table}_insert_only ON {table}")
        op.execute("DROP FUNCTION ledger_refuse_change()")
    for table in ("ledger_lot_movements", "ledger_postings", "ledger_lots", "ledger_holds",
                  "ledger_transactions", "ledger_accounts"):
        op.drop_table(table)
