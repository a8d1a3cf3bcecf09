"""Inactivity expiry: each member's last activity on their available account, and reminders per stretch of
inactivity.

The column is added without a default, so PostgreSQL rewrites nothing; it is then filled from the journal in
one set-based statement (the last earn, bonus but a birthday's, captured hold or reward claim; else the
member's enrolment), and the partial index is built after, concurrently.

Revision ID: a3e91c5d7b20
Revises: f64047f3fd9a
Create Date: 2026-12-04 16:37:39
"""

import warnings
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this

# revision identifiers, used by Alembic.
revision = 'a3e91c5d7b20'
down_revision = 'f64047f3fd9a'
branch_labels = None
depends_on = None

AVAILABLE_POINTS = "kind = 'available' AND balance > 0"
BACKFILL = """
UPDATE ledger_accounts SET last_activity_at = activity.at
FROM (SELECT members.id AS member_id, coalesce(max(ledger_transactions.created_at), members.created_at) AS at
      FROM members
      LEFT JOIN ledger_transactions ON ledger_transactions.member_id = members.id
           AND ledger_transactions.kind IN ('earn', 'bonus', 'redeem', 'reward')
           AND NOT EXISTS (SELECT 1 FROM rule_awards WHERE rule_awards.transaction_id = ledger_transactions.id
                           AND rule_awards.rule = 'event.birthday')
      GROUP BY members.id, members.created_at) AS activity
WHERE ledger_accounts.member_id = activity.member_id AND ledger_accounts.kind = 'available'
"""


@contextmanager
def _batch(table: str):
    """On SQLite, the table is copied into a new one; reflecting the members table it refers to warns that
    SQLite cannot reflect the lower(email) index, which this migration does not touch."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*expression-based index")
        with op.batch_alter_table(table, schema=None) as batch_op:
            yield batch_op


def upgrade():
    with _batch('expiry_reminders') as batch_op:
        batch_op.add_column(sa.Column('activity_at', UTC_DATETIME, nullable=True))
        batch_op.alter_column('lot_id', existing_type=sa.INTEGER(), nullable=True)
        batch_op.create_unique_constraint('uq_expiry_reminders_member_id_activity_at', ['member_id', 'activity_at'])

    op.add_column('ledger_accounts', sa.Column('last_activity_at', UTC_DATETIME,
                                               nullable=True))
    op.execute(BACKFILL)
    index = dict(postgresql_where=sa.text(AVAILABLE_POINTS), sqlite_where=sa.text(AVAILABLE_POINTS))
    if op.get_bind().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            op.create_index('ix_ledger_accounts_last_activity_at', 'ledger_accounts', ['last_activity_at', 'member_id'],
                            postgresql_concurrently=True, if_not_exists=True, **index)
    else:
        op.create_index('ix_ledger_accounts_last_activity_at', 'ledger_accounts', ['last_activity_at', 'member_id'],
                        **index)


def downgrade():
    op.drop_index('ix_ledger_accounts_last_activity_at', table_name='ledger_accounts')
    with _batch('ledger_accounts') as batch_op:
        batch_op.drop_column('last_activity_at')

    op.execute("DELETE FROM expiry_reminders WHERE lot_id IS NULL")
    with _batch('expiry_reminders') as batch_op:
        batch_op.drop_constraint('uq_expiry_reminders_member_id_activity_at', type_='unique')
        batch_op.alter_column('lot_id', existing_type=sa.INTEGER(), nullable=False)
        batch_op.drop_column('activity_at')
