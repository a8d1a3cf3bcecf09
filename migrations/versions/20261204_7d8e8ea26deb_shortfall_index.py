"""The clawbacks that fell short, by member: what a member kept is read without their whole journal.

Revision ID: 7d8e8ea26deb
Revises: 7c4f5d0e1a43
Create Date: 2026-12-04 16:40:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '7d8e8ea26deb'
down_revision = '7c4f5d0e1a43'
branch_labels = None
depends_on = None

NAME, TABLE = 'ix_ledger_transactions_member_id_shortfall', 'ledger_transactions'
WHERE = sa.text('shortfall > 0')


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        # Built beside a live journal, without blocking its writes.
        with op.get_context().autocommit_block():
            op.create_index(NAME, TABLE, ['member_id'], postgresql_where=WHERE, postgresql_concurrently=True,
                            if_not_exists=True)
    else:
        op.create_index(NAME, TABLE, ['member_id'], sqlite_where=WHERE)


def downgrade():
    op.drop_index(NAME, table_name=TABLE)
