"""Configuration per environment, overridden by the process environment.

`LOYALTY_ENV` picks the class (development, testing, production). `DATABASE_URL`
sets the database; any `LOYALTY_<NAME>` sets `<NAME>`, read by Flask's
`Config.from_prefixed_env`: JSON values such as numbers, booleans and lists are
decoded, anything else is taken as a string, and `LOYALTY_<NAME>__<KEY>` sets one
key of a dict setting (`LOYALTY_SQLALCHEMY_ENGINE_OPTIONS__pool_size=20`).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Config as Settings

ROOT_DIR = Path(__file__).resolve().parent.parent
INSTANCE_DIR = ROOT_DIR / "instance"
DEFAULT_SECRET_KEY = "dev-insecure-secret-key-change-me"  # noqa: S105 - refused in production


class Config:
    ENV_NAME = "base"
    SECRET_KEY = DEFAULT_SECRET_KEY
    SQLALCHEMY_DATABASE_URI = f"sqlite:///{INSTANCE_DIR / 'loyalty.db'}"
    # hide_parameters: a logged database error never shows the values it was given (emails, names).
    SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}

    # Request bodies larger than this are answered 413 before any parsing.
    MAX_CONTENT_LENGTH = 1024 * 1024

    SESSION_COOKIE_NAME = "loyalty_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    REMEMBER_COOKIE_HTTPONLY = True
    # Origins besides the app's own whose pages may write to /v1 with a session (`loyalty.auth.cross_site`), e.g.
    # the shop's front end on another host: a JSON list or a comma-separated string of `https://host[:port]`.
    ALLOWED_ORIGINS: list[str] | str = []

    # Werkzeug's scrypt: memory-hard, parameters stored in each hash so they can be raised later.
    PASSWORD_HASH_METHOD = "scrypt:32768:8:1"  # noqa: S105 - a method, not a secret

    # Login throttling (flask-limiter syntax); per client address and per account.
    LOGIN_RATE_LIMIT_PER_ADDRESS = "30 per minute"
    LOGIN_RATE_LIMIT_PER_ACCOUNT = "10 per minute"
    SIGNUP_RATE_LIMIT = "20 per hour"
    # Where the throttle counts. memory:// is per process: each gunicorn worker would count alone and let the limit
    # through once per worker, so production refuses it with more than one worker (`check_shared_rate_limits`).
    # redis://host:6379/0 is shared by every worker and host.
    RATELIMIT_STORAGE_URI = "memory://"
    RATELIMIT_KEY_PREFIX = "loyalty"
    # Redis down: each worker counts in its own memory until it answers again, so sign-in keeps working.
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True
    RATELIMIT_STORAGE_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 1, "socket_timeout": 1}
    RATELIMIT_HEADERS_ENABLED = True

    # How many proxies in front set X-Forwarded-For; 0 trusts none (the client address is the peer).
    PROXY_COUNT = 0

    # The member summary lists points expiring within this many days.
    EXPIRING_SOON_DAYS = 30

    # Who may read /metrics: `Authorization: Bearer <token>`. Unset: open in development, off (404) in production.
    METRICS_TOKEN = ""

    LOG_LEVEL = "INFO"
    LOG_JSON = True

    # Answers to requests sent with an Idempotency-Key are replayed for this long.
    IDEMPOTENCY_KEY_RETENTION_HOURS = 24
    # How long a redemption holds points and a coupon use while the payment runs.
    REDEMPTION_HOLD_MINUTES = 30

    STRIPE_WEBHOOK_SECRET = ""
    # Signatures older than this many seconds are refused (replayed deliveries).
    STRIPE_WEBHOOK_TOLERANCE_SECONDS = 300
    # Optional: only to fetch what a payload lacks (a Checkout Session's line items).
    STRIPE_API_KEY = ""
    # A Stripe event waiting this long for its payment (a refund that came first) is listed as overdue.
    STRIPE_WAITING_OVERDUE_HOURS = 24

    # Outbound webhooks. Private, loopback and link-local URLs are refused in production (SSRF) unless allowed.
    WEBHOOK_ALLOW_PRIVATE_URLS = True
    WEBHOOK_TIMEOUT_SECONDS = 10
    WEBHOOK_CONCURRENCY = 8  # requests a worker has in flight at once
    WEBHOOK_MAX_ATTEMPTS = 8  # with backoff from 30 s doubling, capped at 6 h: about a day of retries
    WEBHOOK_FAILING_AFTER = 5  # consecutive failed attempts that mark an endpoint failing
    # Delivered events and their deliveries are kept this long, then purged.
    WEBHOOK_RETENTION_DAYS = 30
    # `points.expiring` is sent this many days before points expire, once per lot.
    EXPIRY_REMINDER_DAYS = 7

    # The program's calendar: report days, weeks and months begin at local midnight here. An IANA name.
    PROGRAM_TIMEZONE = "UTC"

    API_TITLE = "Loyalty API"
    API_VERSION = "v1"
    OPENAPI_VERSION = "3.0.3"
    OPENAPI_URL_PREFIX = "/"
    OPENAPI_JSON_PATH = "openapi.json"
    OPENAPI_SWAGGER_UI_PATH = "docs"
    # Served from the swagger_ui_bundle package, so /docs needs no network.
    OPENAPI_SWAGGER_UI_URL = "/docs/assets/"

    @staticmethod
    def validate(settings: Mapping[str, Any]) -> None:
        """Refuse settings that must never reach a running service."""
        _check_timezone(settings["PROGRAM_TIMEZONE"])


class DevelopmentConfig(Config):
    ENV_NAME = "development"
    LOG_JSON = False


class TestingConfig(Config):
    ENV_NAME = "testing"
    TESTING = True
    SQLALCHEMY_DATABASE_URI = "sqlite://"
    # Cheap hashing keeps the suite fast; the format is the same as in production.
    PASSWORD_HASH_METHOD = "scrypt:1024:8:1"  # noqa: S105


class ProductionConfig(Config):
    ENV_NAME = "production"
    SECRET_KEY = ""
    SESSION_COOKIE_SECURE = True
    REMEMBER_COOKIE_SECURE = True
    WEBHOOK_ALLOW_PRIVATE_URLS = False

    @staticmethod
    def validate(settings: Mapping[str, Any]) -> None:
        Config.validate(settings)
        secret_key, metrics_token = settings["SECRET_KEY"], settings["METRICS_TOKEN"]
        if not secret_key or secret_key == DEFAULT_SECRET_KEY:
            raise RuntimeError("LOYALTY_SECRET_KEY must be set to a secret of your own in production")
        if len(secret_key) < 32:
            raise RuntimeError("LOYALTY_SECRET_KEY must be at least 32 characters long")
        if metrics_token and len(metrics_token) < 32:
            raise RuntimeError("LOYALTY_METRICS_TOKEN must be at least 32 characters long")


def check_shared_rate_limits(settings: Mapping[str, Any], workers: int) -> None:
    """Refuse several production workers that would each keep their own login throttle (gunicorn.conf.py)."""
    storage = str(settings["RATELIMIT_STORAGE_URI"])
    if settings["ENV_NAME"] == "production" and workers > 1 and storage.startswith("memory://"):
        raise RuntimeError(f"LOYALTY_RATELIMIT_STORAGE_URI is {storage!r}, which each of the {workers} workers keeps "
                           f"apart, letting {workers} times the login limit through: set it to a shared store such "
                           f"as redis://127.0.0.1:6379/0, or run one worker")


def _check_timezone(name: object) -> None:
    """PROGRAM_TIMEZONE must name a zone of the IANA database: a typo must not shift every report's days."""
    if isinstance(name, str) and name:
        try:
            ZoneInfo(name)
            return
        except (ZoneInfoNotFoundError, ValueError):  # ValueError: not even a zone key, such as "../x"
            pass
    raise RuntimeError(f"LOYALTY_PROGRAM_TIMEZONE must be an IANA time zone name such as 'Europe/Paris', "
                       f"not {name!r}")


CONFIGS: dict[str, type[Config]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


_SECRETS = ("SECRET", "SECRET_KEY", "API_KEY", "TOKEN")


def load_config(name: str | None = None) -> Settings:
    """The settings for `name` (default: `LOYALTY_ENV`, else development): its class's defaults, then the
    process environment's `LOYALTY_*` variables and `DATABASE_URL`; refused when unfit to run."""
    name = name or os.environ.get("LOYALTY_ENV") or "development"
    if name not in CONFIGS:
        raise RuntimeError(f"unknown LOYALTY_ENV {name!r}; expected one of {', '.join(CONFIGS)}")
    settings = Settings(str(ROOT_DIR))
    settings.from_object(CONFIGS[name])
    # A copy of the class's dicts and lists: `LOYALTY_X__KEY` sets a key in place, which must not reach the class.
    settings.update(copy.deepcopy(dict(settings)))
    settings.from_prefixed_env("LOYALTY")
    # Where Flask's reading differs from ours, three small steps:
    # - LOYALTY_ENV picks the class above; it is no setting (Flask would store it as ENV).
    settings.pop("ENV", None)
    # - Flask decodes every value as JSON: a secret made of digits would become a number. Secrets stay strings.
    for key, raw in os.environ.items():
        if key.startswith("LOYALTY_") and key.endswith(_SECRETS) and "__" not in key:
            settings[key.removeprefix("LOYALTY_")] = raw
    # - DATABASE_URL is the name every host and platform uses for the database, so it carries no prefix.
    if os.environ.get("DATABASE_URL"):
        settings["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(os.environ["DATABASE_URL"])
    CONFIGS[name].validate(settings)
    return settings


def normalise_database_url(url: str) -> str:
    """Route plain postgres URLs through psycopg 3, the driver we ship."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url
