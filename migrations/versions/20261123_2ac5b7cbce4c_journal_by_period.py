"""The journal by period: an index on ledger_transactions.created_at for the dashboard and reports.

Revision ID: 2ac5b7cbce4c
Revises: 67851d1dd350
Create Date: 2026-11-23 16:17:53
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = '2ac5b7cbce4c'
down_revision = '67851d1dd350'
branch_labels = None
depends_on = None

INDEX = 'ix_ledger_transactions_created_at'


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        # The journal is the largest table: build the index without blocking writes to it.
        with op.get_context().autocommit_block():
            op.create_index(INDEX, 'ledger_transactions', ['created_at'], postgresql_concurrently=True,
                            if_not_exists=True)
    else:
        op.create_index(INDEX, 'ledger_transactions', ['created_at'])


def downgrade():
    op.drop_index(INDEX, table_name='ledger_transactions')
