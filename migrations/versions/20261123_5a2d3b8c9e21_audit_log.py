"""The audit log of staff and API-key writes: append-only, guarded by triggers.

Revision ID: 5a2d3b8c9e21
Revises: 4f1c2a9b7d10
Create Date: 2026-11-23 16:30:00
"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '5a2d3b8c9e21'
down_revision = '4f1c2a9b7d10'
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)  # loyalty.db.UTCDateTime stores as this
ENTRY_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite's rowid alias must be INTEGER
AUDIT_TABLES = ("audit_log", "audit_log_resources")


def upgrade():
    op.create_table('audit_log',
    sa.Column('id', ENTRY_ID, nullable=False),
    sa.Column('public_id', sa.String(length=32), nullable=False),
    sa.Column('occurred_at', UTC_DATETIME, nullable=False),
    sa.Column('actor_kind', sa.String(length=16), nullable=False),
    sa.Column('actor_id', sa.String(length=32), nullable=False),
    sa.Column('actor_label', sa.String(length=300), nullable=False),
    sa.Column('action', sa.String(length=300), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=True),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('changes', sa.Text(), nullable=False),
    sa.CheckConstraint("actor_kind IN ('staff', 'api_key')", name=op.f('ck_audit_log_actor_kind')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log')),
    sa.UniqueConstraint('public_id', name=op.f('uq_audit_log_public_id'))
    )
    op.create_index('ix_audit_log_actor_id_id', 'audit_log', ['actor_id', 'id'], unique=False)
    op.create_index('ix_audit_log_occurred_at', 'audit_log', ['occurred_at'], unique=False)
    op.create_table('audit_log_resources',
    sa.Column('entry_id', ENTRY_ID, nullable=False),
    sa.Column('table_name', sa.String(length=64), nullable=False),
    sa.Column('resource_id', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['audit_log.id'], name=op.f('fk_audit_log_resources_entry_id_audit_log')),
    sa.PrimaryKeyConstraint('entry_id', 'table_name', 'resource_id', name=op.f('pk_audit_log_resources'))
    )
    op.create_index('ix_audit_log_resources_resource_id_entry_id', 'audit_log_resources',
                    ['resource_id', 'entry_id'], unique=False)
    op.create_index('ix_audit_log_resources_table_name_entry_id', 'audit_log_resources',
                    ['table_name', 'entry_id'], unique=False)
    _guard_audit_log()


def _guard_audit_log():
    """Refuse UPDATE and DELETE (and, on PostgreSQL, TRUNCATE) of audit rows, whoever asks."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""
            CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% rows are append-only', TG_TABLE_NAME;
            END $$""")
        for table in AUDIT_TABLES:
            op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                       "FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change()")
            op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()")
    else:
        for table in AUDIT_TABLES:
            for action in ("UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                           f"BEGIN SELECT RAISE(ABORT, '{table} rows are append-only'); END")


def downgrade():
    if op.get_bind().dialect.name == "postgresql":
        for table in AUDIT_TABLES:
            op.execute(f"DROP TRIGGER {table}_no_truncate ON {table}")
            op.execute(f"DROP TRIGGER {table}_append_only ON {table}")
        op.execute("DROP FUNCTION audit_log_refuse_change()")
    op.drop_index('ix_audit_log_resources_table_name_entry_id', table_name='audit_log_resources')
    op.drop_index('ix_audit_log_resources_resource_id_entry_id', table_name='audit_log_resources')
    op.drop_table('audit_log_resources')
    op.drop_index('ix_audit_log_occurred_at', table_name='audit_log')
    op.drop_index('ix_audit_log_actor_id_id', table_name='audit_log')
    op.drop_table('audit_log')
