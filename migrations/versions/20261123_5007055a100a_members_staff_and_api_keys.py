"""Members, consent history, staff users and API keys.

Revision ID: 5007055a100a
Revises:
Create Date: 2026-11-23 10:58:04
"""

import sqlalchemy as sa
from alembic import op

revision = "5007055a100a"
down_revision = None
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this


def upgrade():
    op.create_table(
        "members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("external_id", sa.String(length=128), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("referral_code", sa.String(length=16), nullable=False),
        sa.Column("referred_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("last_login_at", UTC_DATETIME, nullable=True),
        sa.CheckConstraint("status IN ('active', 'suspended', 'erased')", name=op.f("ck_members_status")),
        sa.ForeignKeyConstraint(["referred_by_id"], ["members.id"], name=op.f("fk_members_referred_by_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("external_id", name=op.f("uq_members_external_id")),
        sa.UniqueConstraint("public_id", name=op.f("uq_members_public_id")),
        sa.UniqueConstraint("referral_code", name=op.f("uq_members_referral_code")),
    )
    op.create_index("ix_members_referred_by_id", "members", ["referred_by_id"])
    op.create_index("uq_members_email_lower", "members", [sa.text("lower(email)")], unique=True)

    op.create_table(
        "staff_users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("last_login_at", UTC_DATETIME, nullable=True),
        sa.CheckConstraint("role IN ('admin', 'manager', 'support', 'analyst')", name=op.f("ck_staff_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_staff_users")),
        sa.UniqueConstraint("public_id", name=op.f("uq_staff_users_public_id")),
    )
    op.create_index("uq_staff_users_email_lower", "staff_users", [sa.text("lower(email)")], unique=True)

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("public_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("last_used_at", UTC_DATETIME, nullable=True),
        sa.Column("revoked_at", UTC_DATETIME, nullable=True),
        sa.ForeignKeyConstraint(["created_by_id"], ["staff_users.id"], name=op.f("fk_api_keys_created_by_id_staff_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
        sa.UniqueConstraint("public_id", name=op.f("uq_api_keys_public_id")),
    )

    op.create_table(
        "member_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("member_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", UTC_DATETIME, nullable=False),
        sa.ForeignKeyConstraint(["member_id"], ["members.id"], name=op.f("fk_member_consents_member_id_members")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_consents")),
    )
    op.create_index("ix_member_consents_member_id", "member_consents", ["member_id"])


def downgrade():
    op.drop_table("member_consents")
    op.drop_table("api_keys")
    op.drop_table("staff_users")
    op.drop_table("members")
