"""The settings services need, typed and checked once.

`create_app` builds one `Settings` from the app's configuration (`init_app`); the composition roots (views,
console pages, the job runner, the CLI) reach it with `settings()` and hand services what they need as
arguments, so no service reads the Flask configuration itself. Web-only configuration (the secret key, cookies,
allowed origins, rate limits, the metrics token, idempotency key retention) stays in `app.config`, read by the
request layer. A test that changes a setting rebuilds the app's `Settings` from the changed configuration.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, get_type_hints

from flask import Flask, current_app

EXTENSION = "loyalty.settings"  # where the app keeps its Settings


@dataclass(frozen=True)
class Settings:
    """Each field is the configuration key of the same name, upper-cased (`LOYALTY_<KEY>` in the environment)."""

    expiry_reminder_days: int
    redemption_hold_minutes: int
    stripe_api_key: str
    stripe_api_base: str | None  # tests point it at a local server
    stripe_webhook_secret: str
    stripe_webhook_tolerance_seconds: int
    stripe_waiting_overdue_hours: int
    webhook_allow_private_urls: bool
    webhook_timeout_seconds: float
    webhook_concurrency: int
    webhook_max_attempts: int
    webhook_failing_after: int
    webhook_retention_days: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """The settings in `config`, each checked against its type: a wrong one stops the app at start."""
        values = {}
        for name, kind in get_type_hints(cls).items():
            key = name.upper()
            value = config.get(key)
            if not _is(value, kind):
                raise RuntimeError(f"LOYALTY_{key} must be {_describe(kind)}, not {value!r}")
            values[name] = float(value) if kind is float else value
        return cls(**values)


def _is(value: Any, kind: Any) -> bool:
    if isinstance(kind, types.UnionType):
        return any(_is(value, option) for option in kind.__args__)
    if kind is type(None):
        return value is None
    if isinstance(value, bool):  # a bool is an int to Python, never to a setting
        return kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


def _describe(kind: Any) -> str:
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false", type(None): "unset"}
    options = kind.__args__ if isinstance(kind, types.UnionType) else (kind,)
    return " or ".join(names[option] for option in options)


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = Settings.from_config(app.config)


def settings() -> Settings:
    """The current app's settings, for the composition roots to hand to services."""
    return current_app.extensions[EXTENSION]

