"""The schema: built by migrations in production and here, matching the models, reversible."""

import warnings

import flask_migrate
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from loyalty import create_app
from loyalty.extensions import db
from tests.conftest import PASSWORD, database_of_its_own

# Migrations run DDL on connections of their own.
pytestmark = pytest.mark.real_commits


def test_migrated_schema_matches_the_models(app):
    with app.app_context(), db.engine.connect() as connection, warnings.catch_warnings():
        # SQLite cannot reflect expression indexes (lower(email)); Alembic says so and skips them.
        warnings.filterwarnings("ignore", message=".*expression-based index")
        differences = compare_metadata(MigrationContext.configure(connection), db.metadata)
    assert differences == []


def test_models_build_an_in_memory_schema_that_serves_requests():
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with app.app_context():
        db.create_all()
    client = app.test_client()
    response = client.post("/v1/signup", json={"email": "mem@example.test", "password": PASSWORD})
    assert response.status_code == 201
    assert client.get("/v1/me").get_json()["email"] == "mem@example.test"


@pytest.fixture
def scratch_database_uri(database_uri, tmp_path):
    """An empty database of the same kind as the suite's, for migrating up and down."""
    if not database_uri.startswith("postgresql"):
        yield f"sqlite:///{tmp_path / 'scratch.db'}"
        return
    with database_of_its_own(database_uri, "scratch") as url:
        yield url


def test_migrations_downgrade_to_nothing_and_upgrade_again(scratch_database_uri):
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": scratch_database_uri})
    with app.app_context():
        flask_migrate.upgrade()
        tables = set(inspect(db.engine).get_table_names())
        assert {"members", "staff_users", "api_keys", "member_consents"} <= tables
        flask_migrate.downgrade(revision="base")
        db.engine.dispose()
        assert set(inspect(db.engine).get_table_names()) == {"alembic_version"}
        flask_migrate.upgrade()
        db.engine.dispose()
        assert set(inspect(db.engine).get_table_names()) == tables
        db.engine.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys_enforced(tmp_path):
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'wal.db'}"})
    with app.app_context(), db.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
