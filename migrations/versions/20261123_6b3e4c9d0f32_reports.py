"""Reports: indexes for the KPIs and the liability.

The liability sums member balances by kind and counts members holding points; an index on ledger_accounts
(kind, balance, member_id) holds all of it, so PostgreSQL answers from the index alone. The period queries
use indexes that exist already: the journal by created_at, orders by paid_at.

Revision ID: 6b3e4c9d0f32
Revises: 5a2d3b8c9e21
Create Date: 2026-11-23 16:30:00
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = '6b3e4c9d0f32'
down_revision = '5a2d3b8c9e21'
branch_labels = None
depends_on = None

# Liability from balances (an index-only scan), and the period filters of the summary.
INDEXES = (
    ('ix_ledger_accounts_kind_balance_member_id', 'ledger_accounts', ['kind', 'balance', 'member_id']),
    ('ix_members_created_at', 'members', ['created_at']),
    ('ix_tier_changes_at', 'tier_changes', ['at']),
    ('ix_coupon_uses_status_resolved_at', 'coupon_uses', ['status', 'resolved_at']),
)


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        # Big, busy tables: build the indexes without blocking writes meanwhile.
        with op.get_context().autocommit_block():
            for name, table, columns in INDEXES:
                op.create_index(name, table, columns, postgresql_concurrently=True, if_not_exists=True)
    else:
        for name, table, columns in INDEXES:
            op.create_index(name, table, columns)


def downgrade():
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
