"""Bad input is refused with problem+json and an exact code, and changes nothing.

Every JSON-write endpoint gets the same battery: malformed JSON, the wrong content type,
a body that is not an object, missing, wrong-typed, unknown and oversized fields, and a body
over the 1 MiB limit. List queries and unknown routes are covered at the end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest
from flask import Flask

from loyalty.extensions import db
from loyalty.offers import service as offers
from tests.conftest import PASSWORD, assert_problem, bearer, unique_email

ONE_MIB = 1024 * 1024
LINES = [{"sku": "SKU-1", "quantity": 1, "unit_amount": 1000}]
RULES = {"earn": {"rates": {"usd": "1"}}}


@dataclass(frozen=True)
class Endpoint:
    path: str
    scope: str | None  # the API key scope it is called with, if any
    required: tuple[str, ...]
    wrong_type: tuple[str, object]  # a field and a value of the wrong JSON type
    oversized: str  # a string field
    extra: dict = field(default_factory=dict)  # valid optional fields besides the required ones
    success: int = 201

    def valid_body(self) -> dict:
        values = {
            "email": unique_email("bad-input"),
            "password": PASSWORD,
            "role": "analyst",
            "name": "Shop server",
            "scopes": ["checkout"],
            "points": 10,
            "reason": "Goodwill",
            "order_id": unique_email("order"),
            "member_id": "{member}",  # the member the `post` fixture made
            "currency": "usd",
            "lines": LINES,
            "total_amount": 1000,
            "document": RULES,
            "type": "review",
            "order": {"currency": "usd", "lines": LINES},
            "kind": "percent_off",
            "code": "base",
            "rank": 0,
            "threshold": 0,
            "basis": "points",
            "window_days": 365,
            "offer_id": "{offer}",  # an offer the `post` fixture made
            "points_cost": 100,
        }
        return {**{name: values[name] for name in self.required}, **self.extra}


ENDPOINTS = [
    Endpoint("/v1/signup", None, ("email", "password"), ("email", 42), "name", {"name": "Ada"}),
    Endpoint("/v1/auth/login", None, ("email", "password"), ("email", 42), "email"),
    Endpoint("/v1/auth/staff/login", None, ("email", "password"), ("email", 42), "email"),
    Endpoint("/v1/members", "members:write", ("email",), ("email", 42), "name", {"name": "Ada"}),
    Endpoint("/v1/admin/staff", "admin", ("email", "role", "password"), ("email", 42), "name"),
    Endpoint("/v1/admin/api-keys", "admin", ("name", "scopes"), ("name", 42), "name"),
    Endpoint("/v1/admin/members/{member}/adjustments", "admin", ("points", "reason"), ("points", "ten"), "reason"),
    Endpoint("/v1/members/{member}/events", "members:write", ("type",), ("type", 42), "type"),
    Endpoint("/v1/orders", "checkout", ("order_id", "member_id", "currency", "lines", "total_amount"),
             ("total_amount", "ten"), "order_id"),
    Endpoint("/v1/admin/rules", "admin", ("document",), ("document", "x"), "note"),
    Endpoint("/v1/admin/offers", "admin", ("name", "kind"), ("percent", "ten"), "name", {"percent": 10}),
    Endpoint("/v1/admin/rewards", "admin", ("offer_id", "name", "points_cost"), ("points_cost", "lots"), "name"),
    Endpoint("/v1/admin/tiers", "admin", ("code", "name", "rank", "threshold", "basis", "window_days"),
             ("rank", "first"), "name"),
    Endpoint("/v1/admin/rules/simulate", "admin", ("order",), ("order", "x"), "member_id", {"rules": RULES},
             success=200),
]
BY_PATH = pytest.mark.parametrize("endpoint", ENDPOINTS, ids=[e.path for e in ENDPOINTS])
MISSING = [
    pytest.param(endpoint, name, id=f"{endpoint.path} without {name}")
    for endpoint in ENDPOINTS for name in endpoint.required
]


@pytest.fixture
def post(app: Flask, make_api_key, make_member, endpoint: Endpoint) -> Callable[..., object]:
    """POST to the test's endpoint as a caller it accepts; its API key (and the member a path names)
    exist before the test begins."""
    headers = bearer(make_api_key(endpoint.scope)) if endpoint.scope else {}
    member_id = make_member()["id"]
    with app.app_context():
        offer_id = offers.create_offer({"name": "Ten", "kind": "percent_off", "percent": 10}).public_id
        db.session.commit()
    path = endpoint.path.replace("{member}", member_id)
    client = app.test_client()

    def send(**kwargs):
        body = kwargs.get("json")
        if isinstance(body, dict) and body.get("member_id") == "{member}":
            kwargs["json"] = body = {**body, "member_id": member_id}
        if isinstance(body, dict) and body.get("offer_id") == "{offer}":
            kwargs["json"] = {**body, "offer_id": offer_id}
        return client.post(path, headers=headers, **kwargs)

    return send


# --- The control: each case below spoils this body in exactly one way --------------------------

@BY_PATH
def test_the_unspoilt_body_passes_validation(endpoint, post):
    response = post(json=endpoint.valid_body())

    if endpoint.path.startswith("/v1/auth/"):  # valid, but no such account
        assert_problem(response, 401, "invalid_credentials")
    else:
        assert response.status_code == endpoint.success, response.get_data(as_text=True)


# --- The shape of the body ---------------------------------------------------------------------

@BY_PATH
def test_malformed_json_is_400_invalid_json(endpoint, post, row_counts):
    before = row_counts()
    response = post(data='{"email": "a@example.test",', content_type="application/json")

    assert_problem(response, 400, "invalid_json")
    assert row_counts() == before


@BY_PATH
@pytest.mark.parametrize(("content_type", "encode"), [
    pytest.param("text/plain", json.dumps, id="json sent as text/plain"),
    pytest.param("application/x-www-form-urlencoded", lambda body: urlencode(body, doseq=True), id="form"),
])
def test_a_body_that_is_not_json_is_415_unsupported_media_type(endpoint, content_type, encode, post,
                                                                row_counts):
    before = row_counts()
    response = post(data=encode(endpoint.valid_body()), content_type=content_type)

    assert_problem(response, 415, "unsupported_media_type")
    assert row_counts() == before


@BY_PATH
@pytest.mark.parametrize("body", [[], ["email"], "a string", 42], ids=["empty array", "array", "string",
                                                                         "number"])
def test_a_json_body_that_is_not_an_object_is_422(endpoint, body, post, row_counts):
    before = row_counts()
    response = post(json=body)

    problem = assert_problem(response, 422, "validation_error")
    assert problem["errors"]
    assert row_counts() == before


# --- The fields --------------------------------------------------------------------------------

@pytest.mark.parametrize(("endpoint", "name"), MISSING)
def test_a_missing_required_field_is_422_naming_it(endpoint, name, post, row_counts):
    before = row_counts()
    body = endpoint.valid_body()
    del body[name]
    response = post(json=body)

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {name}
    assert row_counts() == before


@BY_PATH
def test_a_wrong_typed_field_is_422_naming_it(endpoint, post, row_counts):
    before = row_counts()
    name, value = endpoint.wrong_type
    response = post(json={**endpoint.valid_body(), name: value})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {name}
    assert row_counts() == before


@BY_PATH
def test_an_unknown_field_is_422_naming_it(endpoint, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), "nickname": "Ada"})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {"nickname"}
    assert problem["errors"]["nickname"] and all(problem["errors"]["nickname"])
    assert row_counts() == before


@BY_PATH
def test_an_oversized_string_field_is_422_naming_it(endpoint, post, row_counts):
    before = row_counts()
    response = post(json={**endpoint.valid_body(), endpoint.oversized: "x" * 10_000})

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {endpoint.oversized}
    assert row_counts() == before


@BY_PATH
def test_a_body_over_one_mib_is_413_payload_too_large(endpoint, post, row_counts):
    before = row_counts()
    body = {**endpoint.valid_body(), endpoint.oversized: "x" * ONE_MIB}
    response = post(json=body)

    assert_problem(response, 413, "payload_too_large")
    assert row_counts() == before


# --- The list query ----------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "field_name"), [
    pytest.param("limit=0", "limit", id="limit below 1"),
    pytest.param("limit=101", "limit", id="limit above 100"),
    pytest.param("limit=abc", "limit", id="limit not a number"),
    pytest.param("colour=blue", "colour", id="unknown parameter"),
    pytest.param("starting_after=mem_doesnotexist", "starting_after", id="starting_after unknown id"),
])
def test_a_bad_list_query_is_422_naming_the_parameter(query, field_name, client, make_api_key, make_member):
    make_member()
    response = client.get(f"/v1/members?{query}", headers=bearer(make_api_key("members:read")))

    problem = assert_problem(response, 422, "validation_error")
    assert set(problem["errors"]) == {field_name}


# --- Routing -----------------------------------------------------------------------------------

def test_an_unknown_path_is_404_not_found(client):
    response = client.get("/v1/no-such-thing")

    assert_problem(response, 404, "not_found")


def test_a_method_the_path_does_not_take_is_405_with_allow(client, row_counts):
    before = row_counts()
    response = client.delete("/v1/signup")

    assert_problem(response, 405, "method_not_allowed")
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"POST", "OPTIONS"}
    assert row_counts() == before
