"""Rule versions, rule awards (the breakdown of every earn) and paid orders.

Revision ID: 956c6770db2a
Revises: 37a10bc60051
Create Date: 2026-11-23 11:30:00
"""

import sqlalchemy as sa
from alembic import op

revision = "956c6770db2a"
down_revision = "37a10bc60051"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this


def upgrade():
    op.create_table('rule_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('note', sa.String(length=300), nullable=True),
    sa.Column('document', sa.JSON(), nullable=False),
    sa.Column('effective_from', UTC_DATETIME, nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('published_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('updated_at', UTC_DATETIME, nullable=False),
    sa.Column('published_at', UTC_DATETIME, nullable=True),
    sa.CheckConstraint("(status = 'published') = (effective_from IS NOT NULL)", name=op.f('ck_rule_versions_published_has_effective_from')),
    sa.CheckConstraint("status IN ('draft', 'published')", name=op.f('ck_rule_versions_status')),
    sa.ForeignKeyConstraint(['created_by_id'], ['staff_users.id'], name=op.f('fk_rule_versions_created_by_id_staff_users')),
    sa.ForeignKeyConstraint(['published_by_id'], ['staff_users.id'], name=op.f('fk_rule_versions_published_by_id_staff_users')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_versions')),
    sa.UniqueConstraint('effective_from', name=op.f('uq_rule_versions_effective_from')),
    sa.UniqueConstraint('version', name=op.f('uq_rule_versions_version'))
    )
    op.create_index('ix_rule_versions_status_effective_from', 'rule_versions', ['status', 'effective_from'])

    op.create_table('orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('total_amount', sa.BigInteger(), nullable=False),
    sa.Column('shipping_amount', sa.BigInteger(), nullable=False),
    sa.Column('discount_amount', sa.BigInteger(), nullable=False),
    sa.Column('lines', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('paid_at', UTC_DATETIME, nullable=False),
    sa.Column('points_earned', sa.BigInteger(), nullable=False),
    sa.Column('breakdown', sa.JSON(), nullable=False),
    sa.Column('pending_until', UTC_DATETIME, nullable=True),
    sa.Column('rule_version', sa.Integer(), nullable=True),
    sa.Column('earn_transaction_id', sa.Integer(), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.CheckConstraint("channel IN ('web', 'app', 'store')", name=op.f('ck_orders_channel')),
    sa.CheckConstraint("status IN ('paid', 'partially_refunded', 'refunded')", name=op.f('ck_orders_status')),
    sa.ForeignKeyConstraint(['earn_transaction_id'], ['ledger_transactions.id'], name=op.f('fk_orders_earn_transaction_id_ledger_transactions')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_orders_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('order_id', name=op.f('uq_orders_order_id'))
    )
    op.create_index('ix_orders_member_id_paid_at', 'orders', ['member_id', 'paid_at'])
    op.create_index('ix_orders_paid_at', 'orders', ['paid_at'])

    op.create_table('rule_awards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=80), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('kept', sa.BigInteger(), nullable=True),
    sa.Column('detail', sa.String(length=300), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_rule_awards_member_id_members')),
    sa.ForeignKeyConstraint(['transaction_id'], ['ledger_transactions.id'], name=op.f('fk_rule_awards_transaction_id_ledger_transactions')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rule_awards'))
    )
    op.create_index('ix_rule_awards_member_id_rule', 'rule_awards', ['member_id', 'rule'])
    op.create_index('ix_rule_awards_transaction_id', 'rule_awards', ['transaction_id'])


def downgrade():
    op.drop_table('rule_awards')
    op.drop_table('orders')
    op.drop_table('rule_versions')
