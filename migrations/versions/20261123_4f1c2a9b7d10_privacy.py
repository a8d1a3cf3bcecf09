"""Privacy: what erasure and consent need.

Revision ID: 4f1c2a9b7d10
Revises: 2ac5b7cbce4c
Create Date: 2026-11-23 16:30:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

# revision identifiers, used by Alembic.
revision = '4f1c2a9b7d10'
down_revision = '2ac5b7cbce4c'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this


def upgrade():
    pass


def downgrade():
    pass
