"""Privacy: when a member was erased, and consent's current state read from an index.

Revision ID: 4f1c2a9b7d10
Revises: 2ac5b7cbce4c
Create Date: 2026-11-23 16:30:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '4f1c2a9b7d10'
down_revision = '2ac5b7cbce4c'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this

OLD_INDEX = 'ix_member_consents_member_id'
NEW_INDEX = 'ix_member_consents_member_id_purpose_id'


def upgrade():
    # Nullable, no default: a plain ADD COLUMN on both databases, no table rewrite.
    op.add_column('members', sa.Column('erased_at', UTC_DATETIME, nullable=True))
    # The latest row per (member, purpose) is the current consent. The new index leads with member_id, so it
    # also serves everything the old one did, which goes.
    _create_index(NEW_INDEX, ['member_id', 'purpose', 'id'])
    _drop_index(OLD_INDEX)


def downgrade():
    _create_index(OLD_INDEX, ['member_id'])
    _drop_index(NEW_INDEX)
    op.drop_column('members', 'erased_at')


def _postgresql() -> bool:
    return op.get_bind().dialect.name == 'postgresql'


def _create_index(name: str, columns: list[str]) -> None:
    if _postgresql():
        # Every signup writes a consent row: build without blocking those writes.
        with op.get_context().autocommit_block():
            op.create_index(name, 'member_consents', columns, postgresql_concurrently=True, if_not_exists=True)
    else:
        op.create_index(name, 'member_consents', columns)


def _drop_index(name: str) -> None:
    if _postgresql():
        with op.get_context().autocommit_block():
            op.drop_index(name, table_name='member_consents', postgresql_concurrently=True, if_exists=True)
    else:
        op.drop_index(name, table_name='member_consents')
