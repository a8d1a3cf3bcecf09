"""Single-use codes: an offer's uses per code, a guarded counter of each code's uses, and the order a use is for.

Revision ID: 0afa5196222e
Revises: a3e91c5d7b20
Create Date: 2026-12-04 16:40:00
"""

import warnings
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0afa5196222e'
down_revision = 'a3e91c5d7b20'
branch_labels = None
depends_on = None


@contextmanager
def _batch(table: str):
    """On SQLite, the table is copied into a new one; reflecting the members table it refers to warns that
    SQLite cannot reflect the lower(email) index, which this migration does not touch."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*expression-based index")
        with op.batch_alter_table(table, schema=None) as batch_op:
            yield batch_op


def upgrade():
    # Existing offers get 1 like new ones: their unique codes become single-use, as they were meant to be.
    with _batch('offers') as batch_op:
        batch_op.add_column(sa.Column('uses_per_code', sa.Integer(), nullable=True, server_default='1'))
        batch_op.create_check_constraint('uses_per_code', 'uses_per_code IS NULL OR uses_per_code > 0')
    with _batch('offer_codes') as batch_op:
        batch_op.add_column(sa.Column('uses', sa.Integer(), nullable=False, server_default='0'))
        batch_op.create_check_constraint('uses', 'uses >= 0')
    with _batch('coupon_uses') as batch_op:
        batch_op.add_column(sa.Column('order_id', sa.String(length=128), nullable=True))
    # The counter starts from the uses already reserved or consumed; a use names its redemption's order.
    op.execute("UPDATE offer_codes SET uses = (SELECT count(*) FROM coupon_uses WHERE coupon_uses.code_id = "
               "offer_codes.id AND coupon_uses.status IN ('reserved', 'consumed')) WHERE kind = 'unique'")
    op.execute("UPDATE coupon_uses SET order_id = (SELECT redemptions.order_id FROM redemptions WHERE "
               "'redemption:' || redemptions.public_id = coupon_uses.reference)")


def downgrade():
    with _batch('coupon_uses') as batch_op:
        batch_op.drop_column('order_id')
    with _batch('offer_codes') as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_offer_codes_uses'), type_='check')
        batch_op.drop_column('uses')
    with _batch('offers') as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_offers_uses_per_code'), type_='check')
        batch_op.drop_column('uses_per_code')
