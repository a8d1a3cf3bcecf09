"""A member's reward claims and coupon uses by member, for the export and erasure.

Revision ID: 7c4f5d0e1a43
Revises: 6b3e4c9d0f32
Create Date: 2026-11-23 18:05:00
"""

from alembic import op

# revision identifiers, used by Alembic.
revision = '7c4f5d0e1a43'
down_revision = '6b3e4c9d0f32'
branch_labels = None
depends_on = None

INDEXES = (
    ('ix_reward_claims_member_id', 'reward_claims', ['member_id']),
    ('ix_coupon_uses_member_id', 'coupon_uses', ['member_id']),
)


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        with op.get_context().autocommit_block():
            for name, table, columns in INDEXES:
                op.create_index(name, table, columns, postgresql_concurrently=True, if_not_exists=True)
    else:
        for name, table, columns in INDEXES:
            op.create_index(name, table, columns)


def downgrade():
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
