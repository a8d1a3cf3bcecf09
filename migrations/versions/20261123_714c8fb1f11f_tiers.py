"""Tiers, each member's tier, and tier history.

Revision ID: 714c8fb1f11f
Revises: 956c6770db2a
Create Date: 2026-11-23 12:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "714c8fb1f11f"
down_revision = "956c6770db2a"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this


def upgrade():
    op.create_table('tiers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.BigInteger(), nullable=False),
    sa.Column('basis', sa.String(length=8), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('window_days', sa.Integer(), nullable=False),
    sa.Column('earn_multiplier', sa.String(length=32), nullable=False),  # loyalty.db.DecimalText
    sa.Column('discount_percent', sa.Integer(), nullable=False),
    sa.Column('early_access_hours', sa.Integer(), nullable=False),
    sa.Column('perks', sa.String(length=1000), nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('updated_at', UTC_DATETIME, nullable=False),
    sa.CheckConstraint("basis <> 'spend' OR currency IS NOT NULL", name=op.f('ck_tiers_spend_has_currency')),
    sa.CheckConstraint("basis IN ('points', 'spend')", name=op.f('ck_tiers_basis')),
    sa.CheckConstraint('discount_percent BETWEEN 0 AND 100 AND early_access_hours >= 0', name=op.f('ck_tiers_benefits')),
    sa.CheckConstraint('rank <> 0 OR threshold = 0', name=op.f('ck_tiers_base_tier_is_free')),
    sa.CheckConstraint('rank >= 0 AND threshold >= 0 AND window_days > 0', name=op.f('ck_tiers_ranges')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tiers')),
    sa.UniqueConstraint('code', name=op.f('uq_tiers_code')),
    sa.UniqueConstraint('public_id', name=op.f('uq_tiers_public_id')),
    sa.UniqueConstraint('rank', name=op.f('uq_tiers_rank'))
    )
    op.create_table('member_tiers',
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('tier_id', sa.Integer(), nullable=False),
    sa.Column('since', UTC_DATETIME, nullable=False),
    sa.Column('retained_until', UTC_DATETIME, nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_member_tiers_member_id_members')),
    sa.ForeignKeyConstraint(['tier_id'], ['tiers.id'], name=op.f('fk_member_tiers_tier_id_tiers')),
    sa.PrimaryKeyConstraint('member_id', name=op.f('pk_member_tiers'))
    )
    op.create_index('ix_member_tiers_tier_id', 'member_tiers', ['tier_id'])

    op.create_table('tier_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('from_tier_id', sa.Integer(), nullable=True),
    sa.Column('to_tier_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('qualifying_amount', sa.BigInteger(), nullable=False),
    sa.Column('at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['from_tier_id'], ['tiers.id'], name=op.f('fk_tier_changes_from_tier_id_tiers')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_tier_changes_member_id_members')),
    sa.ForeignKeyConstraint(['to_tier_id'], ['tiers.id'], name=op.f('fk_tier_changes_to_tier_id_tiers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_changes'))
    )
    op.create_index('ix_tier_changes_member_id_id', 'tier_changes', ['member_id', 'id'])


def downgrade():
    op.drop_table('tier_changes')
    op.drop_table('member_tiers')
    op.drop_table('tiers')
