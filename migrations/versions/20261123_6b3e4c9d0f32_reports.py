"""Reports: indexes for the KPIs and the liability.

Revision ID: 6b3e4c9d0f32
Revises: 5a2d3b8c9e21
Create Date: 2026-11-23 16:30:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

# revision identifiers, used by Alembic.
revision = '6b3e4c9d0f32'
down_revision = '5a2d3b8c9e21'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this


def upgrade():
    pass


def downgrade():
    pass
