"""Configuration: environments, overrides from the environment, refusals in production."""

import pytest

from config import DEFAULT_SECRET_KEY, load_config
from loyalty import create_app

LONG_SECRET = "s" * 40


def test_development_is_the_default_environment():
    assert load_config(environ={}).ENV_NAME == "development"


def test_loyalty_env_picks_the_configuration():
    assert load_config(environ={"LOYALTY_ENV": "testing"}).ENV_NAME == "testing"


def test_unknown_environment_is_refused():
    with pytest.raises(RuntimeError, match="unknown LOYALTY_ENV"):
        load_config(environ={"LOYALTY_ENV": "staging"})


def test_embedded_default_database_is_sqlite_under_instance():
    uri = load_config(environ={}).SQLALCHEMY_DATABASE_URI
    assert uri.startswith("sqlite:///") and uri.endswith("/instance/loyalty.db")


def test_database_url_overrides_and_routes_postgres_through_psycopg3():
    config = load_config(environ={"DATABASE_URL": "postgresql://u@db:5432/loyalty"})
    assert config.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://u@db:5432/loyalty"


def test_loyalty_variables_override_settings_with_json_values():
    config = load_config(environ={"LOYALTY_MAX_CONTENT_LENGTH": "2048", "LOYALTY_LOG_JSON": "false"})
    assert config.MAX_CONTENT_LENGTH == 2048
    assert config.LOG_JSON is False


def test_secrets_from_the_environment_stay_strings():
    config = load_config(environ={"LOYALTY_STRIPE_WEBHOOK_SECRET": "12345"})
    assert config.STRIPE_WEBHOOK_SECRET == "12345"


def test_production_refuses_to_start_without_a_secret_key():
    with pytest.raises(RuntimeError, match="LOYALTY_SECRET_KEY"):
        load_config(environ={"LOYALTY_ENV": "production"})


def test_production_refuses_the_default_secret_key():
    with pytest.raises(RuntimeError, match="LOYALTY_SECRET_KEY"):
        load_config(environ={"LOYALTY_ENV": "production", "LOYALTY_SECRET_KEY": DEFAULT_SECRET_KEY})


def test_production_refuses_a_short_secret_key():
    with pytest.raises(RuntimeError, match="at least 32"):
        load_config(environ={"LOYALTY_ENV": "production", "LOYALTY_SECRET_KEY": "short"})


def test_production_starts_with_a_real_secret_and_secure_cookies():
    config = load_config(environ={"LOYALTY_ENV": "production", "LOYALTY_SECRET_KEY": LONG_SECRET})
    assert config.SECRET_KEY == LONG_SECRET
    assert config.SESSION_COOKIE_SECURE is True


def test_create_app_refuses_production_with_the_default_secret(monkeypatch):
    monkeypatch.setenv("LOYALTY_ENV", "production")
    monkeypatch.delenv("LOYALTY_SECRET_KEY", raising=False)
    with pytest.raises(RuntimeError, match="LOYALTY_SECRET_KEY"):
        create_app()


def test_session_cookie_is_http_only_and_same_site_lax():
    config = load_config(environ={})
    assert config.SESSION_COOKIE_HTTPONLY is True
    assert config.SESSION_COOKIE_SAMESITE == "Lax"


def test_production_refuses_a_short_metrics_token():
    with pytest.raises(RuntimeError, match="LOYALTY_METRICS_TOKEN"):
        load_config(environ={"LOYALTY_ENV": "production", "LOYALTY_SECRET_KEY": LONG_SECRET,
                             "LOYALTY_METRICS_TOKEN": "123456"})


def test_a_metrics_token_that_looks_like_a_number_stays_a_string():
    config = load_config(environ={"LOYALTY_METRICS_TOKEN": "1" * 40})
    assert config.METRICS_TOKEN == "1" * 40
