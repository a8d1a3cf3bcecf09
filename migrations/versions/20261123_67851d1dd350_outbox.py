"""The worker: job schedule and expiry reminders; the outbox, webhook endpoints and their deliveries.

Revision ID: 67851d1dd350
Revises: d77ff12f3c1f
Create Date: 2026-11-23 14:40:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '67851d1dd350'
down_revision = 'd77ff12f3c1f'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this


def upgrade():
    op.create_table('job_schedule',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('next_run_at', UTC_DATETIME, nullable=False),
    sa.Column('last_started_at', UTC_DATETIME, nullable=True),
    sa.Column('last_finished_at', UTC_DATETIME, nullable=True),
    sa.Column('last_result', sa.String(length=300), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_job_schedule'))
    )
    op.create_table('webhook_endpoints',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('url', sa.String(length=2000), nullable=False),
    sa.Column('description', sa.String(length=300), nullable=True),
    sa.Column('event_types', sa.JSON(), nullable=False),
    sa.Column('secret', sa.String(length=80), nullable=False),
    sa.Column('enabled', sa.Boolean(), nullable=False),
    sa.Column('failing', sa.Boolean(), nullable=False),
    sa.Column('consecutive_failures', sa.Integer(), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoints')),
    sa.UniqueConstraint('public_id', name=op.f('uq_webhook_endpoints_public_id'))
    )
    op.create_table('outbox_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('type', sa.String(length=40), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.Column('dispatched_at', UTC_DATETIME, nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_outbox_events_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_outbox_events')),
    sa.UniqueConstraint('public_id', name=op.f('uq_outbox_events_public_id'))
    )
    op.create_index('ix_outbox_events_dispatched_at_id', 'outbox_events', ['dispatched_at', 'id'], unique=False)
    op.create_index(op.f('ix_outbox_events_member_id'), 'outbox_events', ['member_id'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('endpoint_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UTC_DATETIME, nullable=False),
    sa.Column('last_attempt_at', UTC_DATETIME, nullable=True),
    sa.Column('last_status_code', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=300), nullable=True),
    sa.Column('delivered_at', UTC_DATETIME, nullable=True),
    sa.Column('created_at', UTC_DATETIME, nullable=False),
    sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name=op.f('ck_webhook_deliveries_status')),
    sa.ForeignKeyConstraint(['endpoint_id'], ['webhook_endpoints.id'], name=op.f('fk_webhook_deliveries_endpoint_id_webhook_endpoints')),
    sa.ForeignKeyConstraint(['event_id'], ['outbox_events.id'], name=op.f('fk_webhook_deliveries_event_id_outbox_events')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('endpoint_id', 'event_id', name='uq_webhook_deliveries_endpoint_id_event_id'),
    sa.UniqueConstraint('public_id', name=op.f('uq_webhook_deliveries_public_id'))
    )
    op.create_index('ix_webhook_deliveries_event_id', 'webhook_deliveries', ['event_id'], unique=False)
    op.create_index('ix_webhook_deliveries_status_next_attempt_at', 'webhook_deliveries', ['status', 'next_attempt_at'], unique=False)

    op.create_table('expiry_reminders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('member_id', sa.Integer(), nullable=False),
    sa.Column('sent_at', UTC_DATETIME, nullable=False),
    sa.ForeignKeyConstraint(['lot_id'], ['ledger_lots.id'], name=op.f('fk_expiry_reminders_lot_id_ledger_lots')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_expiry_reminders_member_id_members')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_expiry_reminders')),
    sa.UniqueConstraint('lot_id', name=op.f('uq_expiry_reminders_lot_id'))
    )
    op.create_index(op.f('ix_expiry_reminders_member_id'), 'expiry_reminders', ['member_id'], unique=False)



def downgrade():
    op.drop_index(op.f('ix_expiry_reminders_member_id'), table_name='expiry_reminders')

    op.drop_table('expiry_reminders')
    op.drop_index('ix_webhook_deliveries_status_next_attempt_at', table_name='webhook_deliveries')
    op.drop_index('ix_webhook_deliveries_event_id', table_name='webhook_deliveries')

    op.drop_table('webhook_deliveries')
    op.drop_index(op.f('ix_outbox_events_member_id'), table_name='outbox_events')
    op.drop_index('ix_outbox_events_dispatched_at_id', table_name='outbox_events')

    op.drop_table('outbox_events')
    op.drop_table('webhook_endpoints')
    op.drop_table('job_schedule')
