"""The reward catalog and its claims.

Revision ID: 63a462a1f21e
Revises: 6cb10e50b5c5
Create Date: 2026-11-23 12:55:00
"""

import sqlalchemy as sa
from alembic import op

revision = "63a462a1f21e"
down_revision = "6cb10e50b5c5"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this


def upgrade():
    op.create_table('rewards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('offer_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=True),
    sa.Column('points_cost', sa.BigInteger(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=True),
    sa.Column('claimed', sa.Integer(), nullable=False),
    sa.Column('per_member_limit', sa.Integer(), nullable=True),
    sa.Column('coupon_valid_days', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.CheckConstraint('points_cost > 0', name=op.f('ck_rewards_points_cost')),
    sa.CheckConstraint('stock IS NULL OR claimed <= stock', name=op.f('ck_rewards_stock')),
    sa.ForeignKeyConstraint(['offer_id'], ['offers.id'], name=op.f('fk_rewards_offer_id_offers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rewards')),
    sa.UniqueConstraint('public_id', name=op.f('uq_rewards_public_id'))
    )
    op.create_table('reward_claims',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reward_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('code_id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['code_id'], ['offer_codes.id'], name=op.f('fk_reward_claims_code_id_offer_codes')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_reward_claims_member_id_members')),
    sa.ForeignKeyConstraint(['reward_id'], ['rewards.id'], name=op.f('fk_reward_claims_reward_id_rewards')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_reward_claims_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reward_claims')),
    sa.UniqueConstraint('reference', name=op.f('uq_reward_claims_reference'))
    )
    op.create_index('ix_reward_claims_reward_id_member_id', 'reward_claims', ['reward_id', 'member_id'])


def downgrade():
    op.drop_table('reward_claims')
    op.drop_table('rewards')
