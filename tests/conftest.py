"""Fixtures: one migrated database per run (SQLite by default, PostgreSQL when DATABASE_URL
names it), each test inside a transaction rolled back after it, and helpers to act as each kind of caller.

Isolation: every test runs in an outer transaction on one connection; each session the code under test
opens (a request's, a job's, a CLI command's, a test's own `in_app()`) joins it through a SAVEPOINT, so
its commit releases the savepoint and its rollback undoes only its own work, and the test's end rolls
everything back. A test whose writes must be seen by other connections (threads racing on the suite's
database, a live server, other processes) is marked `real_commits`: it commits for real and the tables
are emptied after it. Tests that use `live_server` are marked so by themselves.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from itertools import count

import flask_migrate
import pytest
from flask import Flask, current_app, has_app_context
from flask.testing import FlaskClient
from flask_sqlalchemy.session import Session as FlaskSession
from sqlalchemy import Connection, create_engine, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from config import normalise_database_url
from loyalty import create_app, settings
from loyalty.auth import service as auth
from loyalty.clock import now, set_source
from loyalty.extensions import db, limiter
from loyalty.members import service as members
from loyalty.rules import service as rules
from tests.browser import browser, desktop, live_server, phone  # noqa: F401 - fixtures

PASSWORD = "correct horse battery"
_serial = count(1)


@pytest.hookimpl(tryfirst=True)  # before `-m "not slow"` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that drives the browser is `slow`: Chromium takes seconds a page."""
    for item in items:
        if "browser" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


def _refuse_unless_a_test_database(url: str) -> None:
    name = make_url(url).database or ""
    if "test" not in name and "ci" not in name:
        pytest.exit(f"refusing to wipe {name!r}: DATABASE_URL for tests must name a test or ci database")


def _reset_postgres(url: str) -> None:
    """Start from an empty schema. Refuses databases that do not look like test databases."""
    _refuse_unless_a_test_database(url)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@contextmanager
def database_of_its_own(url: str, suffix: str) -> Iterator[str]:
    """A fresh database beside `url`'s, named after it with `suffix`, dropped afterwards."""
    server = make_url(url)
    name = f"{server.database}_{suffix}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The suite's database. Under pytest-xdist each worker has its own: a PostgreSQL one named after
    DATABASE_URL's with the worker's id, or its own SQLite file."""
    if not os.environ.get("DATABASE_URL"):
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        return
    url = normalise_database_url(os.environ["DATABASE_URL"])
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        _reset_postgres(url)
        yield url
        return
    _refuse_unless_a_test_database(url)
    with database_of_its_own(url, worker) as own:
        yield own


class JsonWritingClient(FlaskClient):
    """A test client that writes as the API's own clients do: a POST, PUT, PATCH or DELETE without a body or a
    content type of its own is sent as `application/json`, which writes made with a session must be
    (`loyalty.auth.cross_site`). A test of a cross-site write says what it sends."""

    def open(self, *args, **kwargs):
        method = str(kwargs.get("method", "GET")).upper()
        headers = kwargs.get("headers") or {}
        if (method in {"POST", "PUT", "PATCH", "DELETE"} and all(isinstance(arg, str) for arg in args)
                and all(kwargs.get(name) is None for name in ("json", "data", "content_type", "input_stream"))
                and not any(name.lower() == "content-type" for name in headers)):
            kwargs.pop("json", None)
            kwargs["content_type"] = "application/json"
        return super().open(*args, **kwargs)


def testing_app(overrides: dict) -> Flask:
    application = create_app("testing", overrides)
    application.test_client_class = JsonWritingClient
    return application


@pytest.fixture(scope="session")
def app(database_uri: str) -> Flask:
    """The app on a database built by the migrations, as production builds it."""
    application = testing_app({"SQLALCHEMY_DATABASE_URI": database_uri})
    with application.app_context():
        flask_migrate.upgrade()
    return application


def empty_all_tables(connection) -> None:
    """Delete every row, journal included, past the triggers that keep the journal insert-only."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL session_replication_role = replica")  # triggers off
        triggers = []
    else:
        triggers = connection.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'").all()
        for name, _ in triggers:
            connection.exec_driver_sql(f'DROP TRIGGER "{name}"')
    for table in reversed(db.metadata.sorted_tables):
        connection.execute(table.delete())
    for _, sql in triggers:
        connection.exec_driver_sql(sql)


def _postgres_server_url() -> str:
    """Where concurrency tests make their own database: LOYALTY_TEST_POSTGRES_URL, else the suite's
    PostgreSQL when it runs on one, else the machine's (127.0.0.1:5432, user postgres)."""
    configured = os.environ.get("LOYALTY_TEST_POSTGRES_URL") or os.environ.get("DATABASE_URL", "")
    if configured.startswith("postgres"):
        return normalise_database_url(configured)
    return "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def required(service: str) -> bool:
    """Whether a missing `service` fails the tests that need it (`.ci/run` sets LOYALTY_REQUIRE_POSTGRES and
    LOYALTY_REQUIRE_REDIS) rather than skipping them, as it does on a machine without it."""
    return os.environ.get(f"LOYALTY_REQUIRE_{service.upper()}", "") not in {"", "0"}


def missing(service: str, why: str) -> None:
    """Skip the test for want of `service`, or fail it where the service is required."""
    if required(service):
        pytest.fail(f"{why} ({service} is required here: LOYALTY_REQUIRE_{service.upper()} is set)", pytrace=False)
    pytest.skip(why)


@pytest.fixture(scope="session")
def pg_app() -> Iterator[Flask]:
    """An app on a fresh, migrated PostgreSQL database of its own, for locking and concurrency tests.

    These tests need real row locks: without a PostgreSQL server they skip, saying why, except where
    LOYALTY_REQUIRE_POSTGRES is set (`.ci/run`), where they fail.
    """
    server = make_url(_postgres_server_url())
    name = f"loyalty_test_pg_{os.getpid()}"
    admin = create_engine(server.set(database="postgres"), isolation_level="AUTOCOMMIT",
                          connect_args={"connect_timeout": 5})
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        missing("postgres", f"no PostgreSQL server answers at {server.render_as_string()} for the locking and "
                            f"concurrency tests: {str(error).strip().splitlines()[0]}")
    url = server.set(database=name).render_as_string(hide_password=False)
    # One connection per racing thread.
    engine_options = {"pool_size": 40, "max_overflow": 8, "pool_pre_ping": True}
    application = testing_app({"SQLALCHEMY_DATABASE_URI": url, "SQLALCHEMY_ENGINE_OPTIONS": engine_options})
    with application.app_context():
        flask_migrate.upgrade()
    yield application
    with application.app_context():
        db.engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg(pg_app: Flask) -> Iterator[Flask]:
    """`pg_app`, emptied after the test."""
    yield pg_app
    with pg_app.app_context():
        db.session.remove()
        with db.engine.begin() as connection:
            empty_all_tables(connection)


# The connection whose outer transaction each app's sessions join, while a test runs in one.
_outer_connections: dict[Flask, Connection] = {}


class _SessionJoiningTheTestsTransaction(FlaskSession):
    """flask-sqlalchemy's session, bound to the test's connection when its app has one: flask-sqlalchemy's
    own `get_bind` always answers the app's engine, which would open a connection of its own."""

    def get_bind(self, mapper=None, clause=None, bind=None, **kwargs):
        if bind is None and has_app_context():
            outer = _outer_connections.get(current_app._get_current_object())
            if outer is not None:
                return outer
        return super().get_bind(mapper=mapper, clause=clause, bind=bind, **kwargs)


# Every session `db.session` makes: a commit inside the test's transaction releases a SAVEPOINT instead.
db.session.session_factory.class_ = _SessionJoiningTheTestsTransaction
db.session.session_factory.configure(join_transaction_mode="create_savepoint")


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest, app: Flask) -> Iterator[None]:
    """Each test inside a transaction rolled back after it; `real_commits` tests emptied after them instead."""
    if request.node.get_closest_marker("real_commits") or "live_server" in request.fixturenames:
        yield
        with app.app_context():
            db.session.remove()
            with db.engine.begin() as connection:
                empty_all_tables(connection)
        limiter.reset()
        return
    with app.app_context():
        connection = db.engine.connect()
    # SQLite: the app's "begin" listener makes this BEGIN IMMEDIATE; the sessions' SAVEPOINTs nest inside.
    transaction = connection.begin()
    _outer_connections[app] = connection
    try:
        yield
    finally:
        del _outer_connections[app]
        with app.app_context():
            db.session.remove()
        transaction.rollback()
        connection.close()
        limiter.reset()


@pytest.fixture
def in_app(app: Flask):
    """`with in_app(): ...` calls services directly, in a context of its own.

    Never hold one open around client requests: a request reuses an active app context,
    and with it that context's session and its (possibly stale) transaction.
    """
    return app.app_context


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):
    return app.test_cli_runner()


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """`environ(LOYALTY_X="1", ...)`: the process environment holds these of the app's variables (`LOYALTY_*`,
    `DATABASE_URL`) and no other, until the test ends."""
    for name in list(os.environ):
        if name.startswith("LOYALTY_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)

    def set_variables(**variables: str) -> None:
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return set_variables


class StoppedClock:
    """The app's clock, standing still until the test moves it."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def travel(self, by: timedelta) -> None:
        self.at += by

    def set(self, at: datetime) -> None:
        self.at = at


@pytest.fixture
def stop_clock() -> Iterator[Callable[[datetime], StoppedClock]]:
    """`stop_clock(at)` stops the app's clock at `at`; the real clock comes back after the test."""

    def stop(at: datetime) -> StoppedClock:
        stopped = StoppedClock(at)
        set_source(stopped)
        return stopped

    yield stop
    set_source(None)


def publish_rules(document: dict, *, at: datetime | None = None) -> int:
    """Publish a rules document, in force from `at` (now by default), and commit; answers its version.
    Inside an app context."""
    draft = rules.create_draft(document, note=None, staff_id=None)
    rules.publish(draft.version, effective_from=None, staff_id=None, now=at or now())
    db.session.commit()
    return draft.version


@pytest.fixture
def tight_login_limits(app):
    """Login throttling at 3 failures per account and 5 per address a minute."""
    saved = (app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"], app.config["LOGIN_RATE_LIMIT_PER_ADDRESS"])
    app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"] = "3 per minute"
    app.config["LOGIN_RATE_LIMIT_PER_ADDRESS"] = "5 per minute"
    yield
    app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"], app.config["LOGIN_RATE_LIMIT_PER_ADDRESS"] = saved


def unique_email(prefix: str = "member") -> str:
    return f"{prefix}{next(_serial)}@example.test"


@pytest.fixture
def make_member(app: Flask) -> Callable[..., dict]:
    """Create a member with a password; answers its public id and email."""

    def make(email: str | None = None, **fields) -> dict:
        with app.app_context():
            member = members.enrol(
                members.NewMember(email=email or unique_email(), password=PASSWORD, **fields),
                source="test",
            )
            db.session.commit()
            return {"id": member.public_id, "email": member.email, "referral_code": member.referral_code}

    return make


@pytest.fixture
def make_staff(app: Flask) -> Callable[[str], dict]:
    def make(role: str, email: str | None = None) -> dict:
        with app.app_context():
            staff = auth.create_staff(email=email or unique_email(role), role=role, password=PASSWORD)
            db.session.commit()
            return {"id": staff.public_id, "email": staff.email, "role": staff.role}

    return make


@pytest.fixture
def make_api_key(app: Flask) -> Callable[..., str]:
    """Create an API key with the given scopes; answers the secret."""

    def make(*scopes: str, revoked: bool = False) -> str:
        with app.app_context():
            key, secret = auth.create_api_key(name="test", scopes=scopes)
            if revoked:
                auth.revoke_api_key(key.public_id)
            db.session.commit()
            return secret

    return make


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def staff_client(app: Flask, make_staff) -> Callable[[str], FlaskClient]:
    """A client signed in as a new staff user of the given role."""

    def signed_in(role: str) -> FlaskClient:
        staff = make_staff(role)
        client = app.test_client()
        response = client.post("/v1/auth/staff/login", json={"email": staff["email"], "password": PASSWORD})
        assert response.status_code == 200
        return client

    return signed_in


@pytest.fixture
def member_client(app: Flask, make_member) -> Callable[[], tuple[FlaskClient, dict]]:
    """A client signed in as a new member."""

    def signed_in() -> tuple[FlaskClient, dict]:
        member = make_member()
        client = app.test_client()
        response = client.post("/v1/auth/login", json={"email": member["email"], "password": PASSWORD})
        assert response.status_code == 200
        return client, member

    return signed_in


@pytest.fixture
def row_counts(app: Flask) -> Callable[[], dict[str, int]]:
    """Rows per table: compare before and after a request to prove it changed nothing."""

    def counts() -> dict[str, int]:
        with app.app_context():
            names = inspect(db.session.connection()).get_table_names()
            tables = [t for t in db.metadata.sorted_tables if t.name in names]
            return {t.name: db.session.scalar(select(func.count()).select_from(t)) for t in tables}

    return counts


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:loyalty:problem:{code}"
    assert body["title"] and body["detail"]
    return body


# --- the console and the account pages ---------------------------------------------------------------

_CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, page: str = "/console/") -> str:
    """The CSRF token of `client`'s session, read from a form on `page` as a browser would."""
    response = client.get(page)
    match = _CSRF_INPUT.search(response.get_data(as_text=True))
    assert match, f"no form with a CSRF token on {page} ({response.status_code})"
    return match.group(1)


def submit(client: FlaskClient, path: str, data: dict | None = None, *, page: str | None = None):
    """POST a console or account form to `path` with the session's CSRF token (read from `page`, by
    default the console's or account's front page)."""
    page = page or ("/account/" if path.startswith("/account") else "/console/")
    return client.post(path, data={**(data or {}), "csrf_token": csrf_token(client, page)})


@pytest.fixture
def console_client(app: Flask, make_staff) -> Callable[[str], FlaskClient]:
    """A client signed in to the console through its login form, as a new staff user of `role`."""

    def signed_in(role: str) -> FlaskClient:
        staff = make_staff(role)
        client = app.test_client()
        response = client.post("/console/login", data={
            "email": staff["email"], "password": PASSWORD, "csrf_token": csrf_token(client, "/console/login")})
        assert response.status_code == 302, response.get_data(as_text=True)
        client.staff = staff
        return client

    return signed_in


@pytest.fixture
def account_client(app: Flask, make_member) -> Callable[..., FlaskClient]:
    """A client signed in to the account pages through their login form, as a new member."""

    def signed_in(**fields) -> FlaskClient:
        member = make_member(**fields)
        client = app.test_client()
        response = client.post("/account/login", data={
            "email": member["email"], "password": PASSWORD, "csrf_token": csrf_token(client, "/account/login")})
        assert response.status_code == 302, response.get_data(as_text=True)
        client.member = member
        return client

    return signed_in


def change_settings(monkeypatch: pytest.MonkeyPatch, app: Flask, **config) -> None:
    """Change configuration keys of `app` for one test, and with them the `Settings` its services are handed."""
    for name, value in config.items():
        monkeypatch.setitem(app.config, name, value)
    monkeypatch.setitem(app.extensions, settings.EXTENSION, settings.Settings.from_config(app.config))
