"""The settings services are handed: built once from the configuration, each checked against its type."""

from __future__ import annotations

import pytest

from loyalty.settings import Settings


def test_the_settings_are_read_from_the_configuration(app):
    built = Settings.from_config(app.config)
    assert built.webhook_max_attempts == app.config["WEBHOOK_MAX_ATTEMPTS"]
    assert built.webhook_timeout_seconds == float(app.config["WEBHOOK_TIMEOUT_SECONDS"])


@pytest.mark.parametrize(("key", "value"), [("WEBHOOK_MAX_ATTEMPTS", "eight"), ("WEBHOOK_MAX_ATTEMPTS", True),
                                            ("WEBHOOK_ALLOW_PRIVATE_URLS", 1), ("STRIPE_API_KEY", None)])
def test_a_setting_of_the_wrong_type_stops_the_app_at_start(app, key, value):
    with pytest.raises(RuntimeError, match=f"LOYALTY_{key} must be"):
        Settings.from_config({**app.config, key: value})


def test_an_optional_setting_may_be_unset(app):
    assert Settings.from_config({**app.config, "STRIPE_API_BASE": None}).stripe_api_base is None
