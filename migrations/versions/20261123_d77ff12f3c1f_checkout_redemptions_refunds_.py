"""Checkout: redemptions, refunds and disputes on orders, stored idempotent responses, Stripe events.

Revision ID: d77ff12f3c1f
Revises: 63a462a1f21e
Create Date: 2026-11-23 13:35:46
"""

import warnings
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'd77ff12f3c1f'
down_revision = '63a462a1f21e'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this


@contextmanager
def _orders_batch():
    """On SQLite, orders is copied into a new table; reflecting the members table it refers to warns that
    SQLite cannot reflect the lower(email) index, which this migration does not touch."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*expression-based index")
        with op.batch_alter_table("orders", schema=None) as batch_op:
            yield batch_op


def upgrade():
    op.create_table('idempotency_keys',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('caller', sa.String(length=80), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=8), nullable=False),
    sa.Column('path', sa.String(length=300), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('expires_at', UTC_DATETIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_idempotency_keys')),
    sa.UniqueConstraint('caller', 'key', name='uq_idempotency_keys_caller_key')
    )
    op.create_index('ix_idempotency_keys_expires_at', 'idempotency_keys', ['expires_at'], unique=False)

    op.create_table('stripe_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('object_id', sa.String(length=255), nullable=True),
    sa.Column('livemode', sa.Boolean(), nullable=False),
    sa.Column('stripe_created', UTC_DATETIME, nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=True),
    sa.Column('waiting_for', sa.String(length=300), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('received_at', UTC_DATETIME, nullable=False),
    sa.Column('applied_at', UTC_DATETIME, nullable=True),
    sa.CheckConstraint("status IN ('applied', 'ignored', 'waiting', 'failed')", name=op.f('ck_stripe_events_status')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_stripe_events')),
    sa.UniqueConstraint('event_id', name=op.f('uq_stripe_events_event_id'))
    )
    op.create_index('ix_stripe_events_status_waiting_for', 'stripe_events', ['status', 'waiting_for'], unique=False)

    op.create_table('redemptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.String(length=128), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('points_discount_amount', sa.BigInteger(), nullable=False),
    sa.Column('coupon_code', sa.String(length=64), nullable=True),
    sa.Column('coupon_discount_amount', sa.BigInteger(), nullable=False),
    sa.Column('hold_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('release_reason', sa.String(length=32), nullable=True),
    sa.Column('problem', sa.String(length=300), nullable=True),
    sa.Column('expires_at', UTC_DATETIME, nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('resolved_at', UTC_DATETIME, nullable=True),
    sa.CheckConstraint("status IN ('held', 'captured', 'released')", name=op.f('ck_redemptions_status')),
    sa.CheckConstraint('points >= 0 AND amount >= 0', name=op.f('ck_redemptions_not_negative')),
    sa.ForeignKeyConstraint(['hold_id'], ['ledger_holds.id'], name=op.f('fk_redemptions_hold_id_ledger_holds')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_redemptions_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_redemptions')),
    sa.UniqueConstraint('public_id', name=op.f('uq_redemptions_public_id'))
    )
    op.create_index('ix_redemptions_member_id', 'redemptions', ['member_id'], unique=False)
    op.create_index('ix_redemptions_order_id', 'redemptions', ['order_id'], unique=False)
    op.create_index('ix_redemptions_status_expires_at', 'redemptions', ['status', 'expires_at'], unique=False)

    op.create_table('refunds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('order_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('refund_id', sa.String(length=200), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('points_clawed_back', sa.BigInteger(), nullable=False),
    sa.Column('shortfall', sa.BigInteger(), nullable=False),
    sa.Column('points_restored', sa.BigInteger(), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=True),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.CheckConstraint('amount > 0', name=op.f('ck_refunds_amount_positive')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_refunds_member_id_members')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_refunds_order_id_orders')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_refunds')),
    sa.UniqueConstraint('order_id', 'refund_id', name='uq_refunds_order_id_refund_id'),
    sa.UniqueConstraint('public_id', name=op.f('uq_refunds_public_id'))
    )
    op.create_index(op.f('ix_refunds_member_id'), 'refunds', ['member_id'], unique=False)

    with _orders_batch() as batch_op:
        batch_op.add_column(sa.Column('redemption_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('payment_intent_id', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('refunded_amount', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('points_clawed_back', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('points_restored', sa.BigInteger(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('dispute_status', sa.String(length=8), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_orders_payment_intent_id'), ['payment_intent_id'])
        batch_op.create_unique_constraint(batch_op.f('uq_orders_redemption_id'), ['redemption_id'])
        batch_op.create_foreign_key(batch_op.f('fk_orders_redemption_id_redemptions'), 'redemptions',
                                    ['redemption_id'], ['id'])
        batch_op.create_check_constraint('refunded_within_total',
                                         'refunded_amount >= 0 AND refunded_amount <= total_amount')
        batch_op.create_check_constraint('dispute_status',
                                         "dispute_status IS NULL OR dispute_status IN ('open', 'won', 'lost')")



def downgrade():
    with _orders_batch() as batch_op:
        batch_op.drop_constraint(op.f('ck_orders_dispute_status'), type_='check')
        batch_op.drop_constraint(op.f('ck_orders_refunded_within_total'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_orders_redemption_id_redemptions'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_orders_redemption_id'), type_='unique')
        batch_op.drop_constraint(batch_op.f('uq_orders_payment_intent_id'), type_='unique')
        batch_op.drop_column('dispute_status')
        batch_op.drop_column('points_restored')
        batch_op.drop_column('points_clawed_back')
        batch_op.drop_column('refunded_amount')
        batch_op.drop_column('payment_intent_id')
        batch_op.drop_column('redemption_id')

    op.drop_index(op.f('ix_refunds_member_id'), table_name='refunds')

    op.drop_table('refunds')
    op.drop_index('ix_redemptions_status_expires_at', table_name='redemptions')
    op.drop_index('ix_redemptions_order_id', table_name='redemptions')
    op.drop_index('ix_redemptions_member_id', table_name='redemptions')

    op.drop_table('redemptions')
    op.drop_index('ix_stripe_events_status_waiting_for', table_name='stripe_events')

    op.drop_table('stripe_events')
    op.drop_index('ix_idempotency_keys_expires_at', table_name='idempotency_keys')

    op.drop_table('idempotency_keys')
