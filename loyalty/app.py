"""The application factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swagger_ui_bundle
from flask import Flask, request, send_from_directory
from flask.json.provider import DefaultJSONProvider
from sqlalchemy import event
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from config import INSTANCE_DIR, load_config
from loyalty import console, errors, events, observability, settings
from loyalty.auth.cross_site import refuse_cross_site_writes
from loyalty.extensions import api, db, limiter, login_manager, migrate
from loyalty.schemas import refuse_deep_json

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def create_app(config_name: str | None = None, overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app for `config_name` (default: `LOYALTY_ENV`); `overrides` win over everything."""
    app = Flask(__name__, instance_path=str(INSTANCE_DIR))
    app.json = BoundedJSONProvider(app)
    app.config.update(load_config(config_name))
    app.config.update(overrides or {})
    settings.init_app(app)
    if app.config["PROXY_COUNT"]:
        count = int(app.config["PROXY_COUNT"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count)

    # First, so every later hook (the rate limiter's included) runs with a request id.
    observability.init_app(app)
    _init_database(app)
    events.init_app(app)
    _init_auth(app)
    limiter.init_app(app)
    _init_api(app)
    errors.init_app(app)
    console.init_app(app)
    app.before_request(_refuse_nul_in_urls)
    app.before_request(_refuse_long_chunked_bodies)
    app.before_request(_require_json_bodies)
    app.before_request(refuse_cross_site_writes)

    from loyalty.cli import cli

    app.cli.add_command(cli)
    return app


class BoundedJSONProvider(DefaultJSONProvider):
    """`request.get_json()` refuses bodies nested past MAX_JSON_DEPTH, as the API's argument parser does."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        refuse_deep_json(s)
        return super().loads(s, **kwargs)


def _init_database(app: Flask) -> None:
    uri = app.config["SQLALCHEMY_DATABASE_URI"]
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:///:memory:"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            _configure_sqlite(db.engine)


def _configure_sqlite(engine) -> None:
    """WAL, foreign keys, and transactions that take the writer lock when they begin.

    pysqlite's own handling delays BEGIN until the first write and breaks SAVEPOINTs, and a
    deferred BEGIN that read first fails its lock upgrade ("database is locked") when another
    writer got there in between. So SQLAlchemy begins, and always IMMEDIATE: one writer at a
    time, queued by busy_timeout. That is SQLite's model anyway; PostgreSQL is for concurrency.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _init_auth(app: Flask) -> None:
    from loyalty.auth.models import StaffUser
    from loyalty.auth.sessions import parse_session_id
    from loyalty.errors import Unauthenticated
    from loyalty.members.models import Member

    login_manager.init_app(app)

    @login_manager.user_loader
    def load_user(user_id: str):
        kind, public_id, session_key = parse_session_id(user_id) or ("", "", "")
        model = {"member": Member, "staff": StaffUser}.get(kind)
        if model is None:
            return None
        # One query: the user, only while the cookie's session key is still theirs (`loyalty.auth.sessions`).
        user = db.session.scalar(db.select(model).where(model.public_id == public_id,
                                                        model.session_key == session_key))
        # A deactivated staff user or an erased member loses open sessions too, not just new sign-ins.
        return user if user is not None and user.is_active else None

    @login_manager.unauthorized_handler
    def unauthorized():
        raise Unauthenticated("Sign in first.")


def _init_api(app: Flask) -> None:
    from loyalty.audit.api import blp as audit_blp
    from loyalty.auth.api import blp as auth_blp
    from loyalty.checkout.api import blp as checkout_blp
    from loyalty.members.api import blp as members_blp
    from loyalty.offers.api import blp as offers_blp
    from loyalty.offers.api import rewards_blp
    from loyalty.privacy.api import blp as privacy_blp
    from loyalty.reports.api import blp as reports_blp
    from loyalty.rules.api import blp as rules_blp
    from loyalty.rules.document import DecimalString
    from loyalty.tiers.api import blp as tiers_blp
    from loyalty.webhooks.api import blp as webhooks_blp
    from loyalty.webhooks.api import endpoints_blp, stripe_events_blp

    api.init_app(app)
    api.register_field(DecimalString, "string", "decimal")
    api.spec.components.security_scheme(
        "apiKey", {"type": "http", "scheme": "bearer", "description": "An API key with scopes."}
    )
    api.spec.components.security_scheme(
        "session",
        {"type": "apiKey", "in": "cookie", "name": app.config["SESSION_COOKIE_NAME"],
         "description": "A member or staff session from a login endpoint."},
    )
    for blueprint in (auth_blp, members_blp, rules_blp, tiers_blp, offers_blp, rewards_blp, checkout_blp,
                      webhooks_blp, endpoints_blp, stripe_events_blp, audit_blp, privacy_blp, reports_blp):
        api.register_blueprint(blueprint)

    @app.get("/docs/assets/<path:filename>")
    def swagger_ui_assets(filename: str):
        return send_from_directory(swagger_ui_bundle.swagger_ui_path, filename)


def _refuse_nul_in_urls():
    """No id or query holds a NUL character, and PostgreSQL text cannot even be compared with one. For every
    page: the API's query schemas refuse it too, the console's plain query parameters need this."""
    if "\x00" in request.path:
        raise errors.NotFound("Nothing has this id.")
    bad = sorted({name for name, value in request.args.items(multi=True) if "\x00" in name + value})
    if bad:
        raise errors.ValidationProblem(errors={name: ["Must not contain NUL characters."] for name in bad})


def _refuse_long_chunked_bodies():
    """A chunked body has no Content-Length to check: werkzeug stops reading it at MAX_CONTENT_LENGTH and hands on
    what it read as if it were all of it. One that reaches the limit is refused whole, as a longer one with a
    Content-Length is."""
    limit = request.max_content_length
    if limit is None or request.content_length is not None \
            or "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
        return
    if len(request.get_data(cache=True)) >= limit:
        raise RequestEntityTooLarge()


def _require_json_bodies():
    """The API speaks JSON only."""
    if request.method not in _BODY_METHODS or not request.path.startswith("/v1/"):
        return
    has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "")
    if has_body and not request.is_json:
        raise errors.Problem("Send the request body as application/json.", status=415,
                             code="unsupported_media_type", title="Unsupported media type")
