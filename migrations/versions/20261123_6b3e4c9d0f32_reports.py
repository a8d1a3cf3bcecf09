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

INDEX = 'ix_ledger_accounts_kind_balance_member_id'


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        # Seven rows a member: build the index without blocking the ledger's writes meanwhile.
        with op.get_context().autocommit_block():
            op.create_index(INDEX, 'ledger_accounts', ['kind', 'balance', 'member_id'],
                            postgresql_concurrently=True, if_not_exists=True)
    else:
        op.create_index(INDEX, 'ledger_accounts', ['kind', 'balance', 'member_id'])


def downgrade():
    op.drop_index(INDEX, table_name='ledger_accounts')
