"""Offers, their codes, and coupon uses.

Revision ID: 6cb10e50b5c5
Revises: 714c8fb1f11f
Create Date: 2026-11-23 12:45:00
"""

import sqlalchemy as sa
from alembic import op

revision = "6cb10e50b5c5"
down_revision = "714c8fb1f11f"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this


def upgrade():
    op.create_table('offers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('description', sa.String(length=1000), nullable=True),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('percent', sa.Integer(), nullable=True),
    sa.Column('amount', sa.BigInteger(), nullable=True),
    sa.Column('currency', sa.String(length=3), nullable=True),
    sa.Column('min_order_amount', sa.BigInteger(), nullable=False),
    sa.Column('scope', sa.JSON(), nullable=False),
    sa.Column('starts_at', UTC_DATETIME, nullable=True),
    sa.Column('ends_at', UTC_DATETIME, nullable=True),
    sa.Column('eligible_tiers', sa.JSON(), nullable=False),
    sa.Column('early_access', sa.JSON(), nullable=False),
    sa.Column('usage_limit_total', sa.Integer(), nullable=True),
    sa.Column('usage_limit_per_member', sa.Integer(), nullable=True),
    sa.Column('combines_with_points', sa.Boolean(), nullable=False),
    sa.Column('combines_with_tier_discount', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('updated_at', UTC_DATETIME, nullable=False),
    sa.CheckConstraint("kind <> 'amount_off' OR (amount > 0 AND currency IS NOT NULL)", name=op.f('ck_offers_amount')),
    sa.CheckConstraint("kind <> 'percent_off' OR (percent BETWEEN 1 AND 100)", name=op.f('ck_offers_percent')),
    sa.CheckConstraint("kind IN ('percent_off', 'amount_off', 'free_shipping')", name=op.f('ck_offers_kind')),
    sa.CheckConstraint('ends_at IS NULL OR starts_at IS NULL OR ends_at > starts_at', name=op.f('ck_offers_window')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offers')),
    sa.UniqueConstraint('public_id', name=op.f('uq_offers_public_id'))
    )
    op.create_table('offer_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('offer_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('expires_at', UTC_DATETIME, nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.CheckConstraint("kind IN ('public', 'unique')", name=op.f('ck_offer_codes_kind')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_offer_codes_member_id_members')),
    sa.ForeignKeyConstraint(['offer_id'], ['offers.id'], name=op.f('fk_offer_codes_offer_id_offers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_offer_codes')),
    sa.UniqueConstraint('code', name=op.f('uq_offer_codes_code')),
    sa.UniqueConstraint('public_id', name=op.f('uq_offer_codes_public_id'))
    )
    op.create_index('ix_offer_codes_member_id', 'offer_codes', ['member_id'])
    op.create_index('ix_offer_codes_offer_id_id', 'offer_codes', ['offer_id', 'id'])

    op.create_table('coupon_uses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('offer_id', sa.Integer(), nullable=False),
    sa.Column('code_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('expires_at', UTC_DATETIME, nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('resolved_at', UTC_DATETIME, nullable=True),
    sa.CheckConstraint("status IN ('reserved', 'consumed', 'released')", name=op.f('ck_coupon_uses_status')),
    sa.ForeignKeyConstraint(['code_id'], ['offer_codes.id'], name=op.f('fk_coupon_uses_code_id_offer_codes')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_coupon_uses_member_id_members')),
    sa.ForeignKeyConstraint(['offer_id'], ['offers.id'], name=op.f('fk_coupon_uses_offer_id_offers')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_coupon_uses')),
    sa.UniqueConstraint('reference', name=op.f('uq_coupon_uses_reference'))
    )
    op.create_index('ix_coupon_uses_code_id_status', 'coupon_uses', ['code_id', 'status'])
    op.create_index('ix_coupon_uses_offer_id_member_id', 'coupon_uses', ['offer_id', 'member_id'])
    op.create_index('ix_coupon_uses_offer_id_status', 'coupon_uses', ['offer_id', 'status'])


def downgrade():
    op.drop_table('coupon_uses')
    op.drop_table('offer_codes')
    op.drop_table('offers')
