"""Configuration: environments, overrides from the environment, refusals in production."""

import pytest

from config import DEFAULT_SECRET_KEY, Config, load_config
from loyalty import create_app

LONG_SECRET = "s" * 40


def test_development_is_the_default_environment(environ):
    environ()
    assert load_config()["ENV_NAME"] == "development"


def test_loyalty_env_picks_the_configuration_and_is_no_setting(environ):
    environ(LOYALTY_ENV="testing")
    settings = load_config()
    assert settings["ENV_NAME"] == "testing"
    assert "ENV" not in settings


def test_unknown_environment_is_refused(environ):
    environ(LOYALTY_ENV="staging")
    with pytest.raises(RuntimeError, match="unknown LOYALTY_ENV"):
        load_config()


def test_embedded_default_database_is_sqlite_under_instance(environ):
    environ()
    uri = load_config()["SQLALCHEMY_DATABASE_URI"]
    assert uri.startswith("sqlite:///") and uri.endswith("/instance/loyalty.db")


def test_database_url_overrides_and_routes_postgres_through_psycopg3(environ):
    environ(DATABASE_URL="postgresql://u@db:5432/loyalty")
    assert load_config()["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db:5432/loyalty"


def test_loyalty_variables_override_settings_with_json_values(environ):
    environ(LOYALTY_MAX_CONTENT_LENGTH="2048", LOYALTY_LOG_JSON="false")
    settings = load_config()
    assert settings["MAX_CONTENT_LENGTH"] == 2048
    assert settings["LOG_JSON"] is False


def test_a_value_that_is_not_json_is_taken_as_a_string(environ):
    environ(LOYALTY_LOGIN_RATE_LIMIT_PER_ACCOUNT="5 per minute")
    assert load_config()["LOGIN_RATE_LIMIT_PER_ACCOUNT"] == "5 per minute"


@pytest.mark.parametrize(("value", "expected"), [
    ('["https://shop.example"]', ["https://shop.example"]),
    ("https://a.example,https://b.example", "https://a.example,https://b.example"),
], ids=["a JSON list", "a comma-separated string"])
def test_allowed_origins_are_a_json_list_or_a_comma_separated_string(environ, value, expected):
    environ(LOYALTY_ALLOWED_ORIGINS=value)
    assert load_config()["ALLOWED_ORIGINS"] == expected


def test_one_key_of_a_dict_setting_is_set_with_a_double_underscore(environ):
    environ(LOYALTY_SQLALCHEMY_ENGINE_OPTIONS__pool_size="20")
    options = load_config()["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options == {**Config.SQLALCHEMY_ENGINE_OPTIONS, "pool_size": 20}
    assert "pool_size" not in Config.SQLALCHEMY_ENGINE_OPTIONS  # the defaults themselves are left alone


def test_secrets_from_the_environment_stay_strings(environ):
    environ(LOYALTY_STRIPE_WEBHOOK_SECRET="12345")
    assert load_config()["STRIPE_WEBHOOK_SECRET"] == "12345"


def test_production_refuses_to_start_without_a_secret_key(environ):
    environ(LOYALTY_ENV="production")
    with pytest.raises(RuntimeError, match="LOYALTY_SECRET_KEY"):
        load_config()


def test_production_refuses_the_default_secret_key(environ):
    environ(LOYALTY_ENV="production", LOYALTY_SECRET_KEY=DEFAULT_SECRET_KEY)
    with pytest.raises(RuntimeError, match="LOYALTY_SECRET_KEY"):
        load_config()


def test_production_refuses_a_short_secret_key(environ):
    environ(LOYALTY_ENV="production", LOYALTY_SECRET_KEY="short")
    with pytest.raises(RuntimeError, match="at least 32"):
        load_config()


def test_production_starts_with_a_real_secret_and_secure_cookies(environ):
    environ(LOYALTY_ENV="production", LOYALTY_SECRET_KEY=LONG_SECRET)
    settings = load_config()
    assert settings["SECRET_KEY"] == LONG_SECRET
    assert settings["SESSION_COOKIE_SECURE"] is True


def test_create_app_refuses_production_with_the_default_secret(environ):
    environ(LOYALTY_ENV="production")
    with pytest.raises(RuntimeError, match="LOYALTY_SECRET_KEY"):
        create_app()


def test_create_app_reads_the_environment(environ):
    environ(LOYALTY_ENV="testing", LOYALTY_EXPIRING_SOON_DAYS="14", LOYALTY_METRICS_TOKEN="0042")
    app = create_app()
    assert (app.config["ENV_NAME"], app.config["EXPIRING_SOON_DAYS"], app.config["METRICS_TOKEN"]) == (
        "testing", 14, "0042")


def test_session_cookie_is_http_only_and_same_site_lax(environ):
    environ()
    settings = load_config()
    assert settings["SESSION_COOKIE_HTTPONLY"] is True
    assert settings["SESSION_COOKIE_SAMESITE"] == "Lax"


def test_production_refuses_a_short_metrics_token(environ):
    environ(LOYALTY_ENV="production", LOYALTY_SECRET_KEY=LONG_SECRET, LOYALTY_METRICS_TOKEN="123456")
    with pytest.raises(RuntimeError, match="LOYALTY_METRICS_TOKEN"):
        load_config()


def test_a_metrics_token_that_looks_like_a_number_stays_a_string(environ):
    environ(LOYALTY_METRICS_TOKEN="1" * 40)
    assert load_config()["METRICS_TOKEN"] == "1" * 40
