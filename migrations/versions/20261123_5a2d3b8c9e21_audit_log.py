"""The audit log of staff and API-key writes.

Revision ID: 5a2d3b8c9e21
Revises: 4f1c2a9b7d10
Create Date: 2026-11-23 16:30:00
"""

import sqlalchemy as sa  # noqa: F401
from alembic import op  # noqa: F401

# revision identifiers, used by Alembic.
revision = '5a2d3b8c9e21'
down_revision = '4f1c2a9b7d10'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this


def upgrade():
    pass


def downgrade():
    pass
