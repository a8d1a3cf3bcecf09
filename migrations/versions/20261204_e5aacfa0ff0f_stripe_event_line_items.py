"""A paid Checkout Session's line items, kept with its Stripe event: fetched before the event's transaction,
so applying it, or retrying it, never calls Stripe with a transaction open.

Revision ID: e5aacfa0ff0f
Revises: 7d8e8ea26deb
Create Date: 2026-12-04 16:26:06
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'e5aacfa0ff0f'
down_revision = '7d8e8ea26deb'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable: the events already stored keep none, as they were applied from their payload.
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('line_items', sa.JSON(none_as_null=True), nullable=True))


def downgrade():
    with op.batch_alter_table('stripe_events', schema=None) as batch_op:
        batch_op.drop_column('line_items')
