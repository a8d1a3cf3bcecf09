"""Session keys for members and staff users: rotating one ends every session of that user.

Revision ID: f64047f3fd9a
Revises: e5aacfa0ff0f
Create Date: 2026-12-04 16:30:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'f64047f3fd9a'
down_revision = 'e5aacfa0ff0f'
branch_labels = None
depends_on = None

TABLES = ('members', 'staff_users')


def upgrade():
    postgresql = op.get_bind().dialect.name == 'postgresql'
    # Every existing row gets a random key of its own; sessions from before the keys end (their ids carry none).
    random_key = ("substr(md5(random()::text || clock_timestamp()::text || id::text), 1, 32)" if postgresql
                  else "lower(hex(randomblob(16)))")
    for table in TABLES:
        # No table rewrite on either database: SQLite adds a NOT NULL column only with a constant default (the
        # rows then get keys of their own at once), PostgreSQL adds it nullable and tightens it after the update.
        op.add_column(table, sa.Column('session_key', sa.String(length=32), nullable=postgresql,
                                       server_default=None if postgresql else ''))
        op.execute(f"UPDATE {table} SET session_key = {random_key}")
        if postgresql:
            op.alter_column(table, 'session_key', existing_type=sa.String(length=32), nullable=False)


def downgrade():
    for table in reversed(TABLES):
        op.drop_column(table, 'session_key')
