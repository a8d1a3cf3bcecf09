"""Errors, request ids, logs, metrics, health and the OpenAPI document."""

import json
import logging
import re

import pytest
from openapi_spec_validator import validate

from loyalty import create_app
from loyalty.observability import JsonFormatter
from tests.conftest import assert_problem

# Port 1 on loopback: refused at once, no traffic leaves the machine.
UNREACHABLE_DATABASE = "postgresql+psycopg://nobody@127.0.0.1:1/none"
METRICS_TOKEN = "m" * 40


@pytest.fixture
def failing_app(database_uri):
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": database_uri})

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals: password=hunter2")

    return app


def test_unexpected_exception_answers_500_without_internals(failing_app, caplog):
    response = failing_app.test_client().get("/boom", headers={"X-Request-Id": "trace-500"})
    body = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.get_data(as_text=True)
    assert "request id" in body["detail"]
    assert response.headers["X-Request-Id"] == "trace-500"


def test_unexpected_exception_is_logged_with_the_request_id(failing_app):
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("loyalty.errors").addHandler(handler)
    try:
        failing_app.test_client().get("/boom", headers={"X-Request-Id": "trace-log"})
    finally:
        logging.getLogger("loyalty.errors").removeHandler(handler)
    [record] = records
    assert record.request_id == "trace-log"
    assert record.exc_info[0] is RuntimeError


def test_unknown_path_is_problem_json_not_found(client):
    assert_problem(client.get("/v1/nothing-here"), 404, "not_found")


def test_wrong_method_is_problem_json_with_allow_header(client):
    response = client.put("/healthz")
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_request_id_is_generated_when_the_client_sends_none(client):
    assert client.get("/healthz").headers["X-Request-Id"].startswith("req_")


def test_request_id_from_the_client_is_echoed(client):
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"


def test_request_id_that_could_forge_log_lines_is_replaced(client):
    response = client.get("/healthz", headers={"X-Request-Id": "x" * 65})
    assert response.headers["X-Request-Id"].startswith("req_")


def test_access_log_carries_request_id_and_route_template_not_raw_path(client, make_member):
    member = make_member()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("loyalty.access").addHandler(handler)
    try:
        client.get(f"/v1/members/{member['id']}", headers={"X-Request-Id": "trace-access"})
    finally:
        logging.getLogger("loyalty.access").removeHandler(handler)
    [record] = records
    assert record.request_id == "trace-access"
    assert record.endpoint == "/v1/members/<string:member_id>"
    assert record.status == 401
    assert member["id"] not in record.getMessage()


def test_json_log_lines_are_one_object_with_extras():
    record = logging.makeLogRecord(
        {"name": "loyalty.test", "levelname": "INFO", "msg": "hello %s", "args": ("world",),
         "request_id": "req_1", "status": 200}
    )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello world"
    assert entry["level"] == "info"
    assert entry["request_id"] == "req_1"
    assert entry["status"] == 200
    assert entry["time"].endswith("Z")


def test_healthz_answers_while_the_process_is_up(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_readyz_checks_the_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_readyz_answers_503_when_the_database_is_unreachable():
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": UNREACHABLE_DATABASE})
    assert_problem(app.test_client().get("/readyz"), 503, "service_unavailable")


def test_readyz_tells_when_to_retry():
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": UNREACHABLE_DATABASE})
    assert app.test_client().get("/readyz").headers["Retry-After"] == "5"


def test_an_api_request_during_a_database_outage_answers_503_with_retry_after(make_api_key):
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": UNREACHABLE_DATABASE})

    response = app.test_client().get("/v1/members/mem_anyone", headers={"Authorization": "Bearer lk_anything"})

    assert_problem(response, 503, "service_unavailable")
    assert response.headers["Retry-After"] == "5"


def test_a_console_page_during_a_database_outage_answers_503():
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": UNREACHABLE_DATABASE})
    client = app.test_client()
    with client.session_transaction() as session:
        session["_user_id"] = "staff:stf_anyone:" + "k" * 32

    response = client.get("/console/")

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "Service unavailable" in response.get_data(as_text=True)


def test_metrics_count_requests_by_route_template(client):
    client.get("/healthz")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    text = response.get_data(as_text=True)
    assert 'loyalty_http_requests_total{endpoint="/healthz",method="GET",status="200"}' in text
    assert "loyalty_http_request_duration_seconds_bucket" in text


def test_openapi_document_is_valid_openapi_3(client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    validate(spec)


def test_openapi_document_lists_every_api_route(app, client):
    documented = client.get("/openapi.json").get_json()["paths"]
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            methods = rule.methods - {"HEAD", "OPTIONS"}
            assert path in documented, path
            assert {m.lower() for m in methods} <= set(documented[path]), path


def test_openapi_documents_errors_as_problem_details(client):
    spec = client.get("/openapi.json").get_json()
    assert set(spec["components"]["schemas"]["Problem"]["properties"]) >= {
        "type", "title", "status", "detail", "code", "errors"}


def test_openapi_documents_both_credentials(client):
    schemes = client.get("/openapi.json").get_json()["components"]["securitySchemes"]
    assert schemes["apiKey"] == {"type": "http", "scheme": "bearer", "description": "An API key with scopes."}
    assert schemes["session"]["in"] == "cookie"


def test_docs_page_loads_its_assets_from_this_server(client):
    page = client.get("/docs").get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower()
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 200


# --- Who may read /metrics ----------------------------------------------------------------------------------

@pytest.fixture
def metrics_token(app):
    app.config["METRICS_TOKEN"] = METRICS_TOKEN
    yield METRICS_TOKEN
    app.config["METRICS_TOKEN"] = ""


def test_metrics_with_a_token_set_are_refused_without_it(client, metrics_token):
    response = client.get("/metrics")
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_metrics_with_a_token_set_are_refused_with_another_token(client, metrics_token):
    assert_problem(client.get("/metrics", headers={"Authorization": "Bearer " + "x" * 40}), 401, "unauthenticated")


def test_metrics_with_a_token_set_are_served_to_its_bearer(client, metrics_token):
    response = client.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert response.status_code == 200
    assert "loyalty_http_requests_total" in response.get_data(as_text=True)


def test_metrics_in_production_without_a_token_are_off(monkeypatch, database_uri):
    monkeypatch.setenv("LOYALTY_SECRET_KEY", "s" * 40)
    app = create_app("production", {"SQLALCHEMY_DATABASE_URI": database_uri})
    assert_problem(app.test_client().get("/metrics"), 404, "not_found")
