"""Staff sign-in, API keys and login throttling."""

from sqlalchemy import select

from loyalty.auth.access import hash_api_key
from loyalty.auth.models import ApiKey
from loyalty.extensions import db
from tests.conftest import PASSWORD, assert_problem, bearer, unique_email


def test_staff_login_answers_the_staff_user_and_role(client, make_staff):
    staff = make_staff("manager")
    response = client.post("/v1/auth/staff/login", json={"email": staff["email"], "password": PASSWORD})
    assert response.status_code == 200
    body = response.get_json()
    assert (body["id"], body["email"], body["role"]) == (staff["id"], staff["email"], "manager")
    assert "password" not in str(body)


def test_staff_login_with_a_wrong_password_is_refused(client, make_staff):
    staff = make_staff("admin")
    response = client.post("/v1/auth/staff/login", json={"email": staff["email"], "password": "nope nope"})
    assert_problem(response, 401, "invalid_credentials")


def test_member_credentials_do_not_sign_in_as_staff(client, make_member):
    member = make_member()
    response = client.post("/v1/auth/staff/login", json={"email": member["email"], "password": PASSWORD})
    assert_problem(response, 401, "invalid_credentials")


def test_admin_creates_a_staff_user_who_can_sign_in(staff_client, client):
    email = unique_email("support")
    response = staff_client("admin").post(
        "/v1/admin/staff", json={"email": email, "role": "support", "password": PASSWORD}
    )
    assert response.status_code == 201
    assert response.get_json()["role"] == "support"
    login = client.post("/v1/auth/staff/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200


def test_staff_email_is_unique_whatever_its_case(staff_client, make_staff, row_counts):
    make_staff("analyst", email="ana@example.test")
    admin = staff_client("admin")
    before = row_counts()
    response = admin.post("/v1/admin/staff", json={"email": "ANA@example.test", "role": "support",
                                                   "password": PASSWORD})
    assert_problem(response, 409, "conflict")
    assert row_counts() == before


def test_staff_role_must_be_known(staff_client, row_counts):
    admin = staff_client("admin")
    before = row_counts()
    response = admin.post("/v1/admin/staff", json={"email": unique_email(), "role": "owner",
                                                   "password": PASSWORD})
    body = assert_problem(response, 422, "validation_error")
    assert list(body["errors"]) == ["role"]
    assert row_counts() == before


def test_api_key_is_shown_once_and_stored_hashed(staff_client, in_app):
    admin = staff_client("admin")
    response = admin.post("/v1/admin/api-keys", json={"name": "checkout", "scopes": ["checkout"]})
    assert response.status_code == 201
    created = response.get_json()
    secret = created["key"]
    assert secret.startswith("lk_") and len(secret) > 40
    assert created["scopes"] == ["checkout"]
    assert secret.startswith(created["prefix"])
    with in_app():
        stored = db.session.scalar(select(ApiKey).where(ApiKey.public_id == created["id"]))
        assert stored.key_hash == hash_api_key(secret)
        assert secret not in (stored.key_hash, stored.prefix, stored.scopes)
    listed = admin.get("/v1/admin/api-keys").get_json()["data"]
    assert [k["id"] for k in listed] == [created["id"]]
    assert "key" not in listed[0]


def test_new_api_key_works_with_its_scope(staff_client, client, make_member):
    admin = staff_client("admin")
    created = admin.post("/v1/admin/api-keys", json={"name": "crm", "scopes": ["members:read"]})
    secret = created.get_json()["key"]
    member = make_member()
    assert client.get(f"/v1/members/{member['id']}", headers=bearer(secret)).status_code == 200


def key_id_of(in_app, secret: str) -> str:
    with in_app():
        return db.session.scalar(select(ApiKey.public_id).where(ApiKey.key_hash == hash_api_key(secret)))


def test_api_key_records_when_it_was_last_used(client, make_api_key, make_member, in_app):
    secret = make_api_key("members:read")
    member = make_member()
    client.get(f"/v1/members/{member['id']}", headers=bearer(secret))
    with in_app():
        key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_api_key(secret)))
        assert key.last_used_at is not None


def test_revoked_api_key_is_refused_at_once(staff_client, client, make_api_key, make_member, in_app):
    secret = make_api_key("members:read")
    key_id = key_id_of(in_app, secret)
    member = make_member()
    assert client.get(f"/v1/members/{member['id']}", headers=bearer(secret)).status_code == 200
    response = staff_client("admin").delete(f"/v1/admin/api-keys/{key_id}")
    assert response.status_code == 200
    assert response.get_json()["revoked_at"] is not None
    assert_problem(client.get(f"/v1/members/{member['id']}", headers=bearer(secret)), 401, "invalid_api_key")


def test_revoking_twice_keeps_the_first_time(staff_client, make_api_key, in_app):
    key_id = key_id_of(in_app, make_api_key("checkout"))
    admin = staff_client("admin")
    first = admin.delete(f"/v1/admin/api-keys/{key_id}").get_json()["revoked_at"]
    assert admin.delete(f"/v1/admin/api-keys/{key_id}").get_json()["revoked_at"] == first


def test_revoking_an_unknown_key_is_not_found(staff_client):
    assert_problem(staff_client("admin").delete("/v1/admin/api-keys/key_nope"), 404, "not_found")


def test_api_key_scopes_must_be_known(staff_client, row_counts):
    admin = staff_client("admin")
    before = row_counts()
    response = admin.post("/v1/admin/api-keys", json={"name": "x", "scopes": ["everything"]})
    assert_problem(response, 422, "validation_error")
    assert row_counts() == before


def test_repeated_failed_logins_for_one_account_are_rate_limited(client, make_member, tight_login_limits):
    member = make_member()
    wrong = {"email": member["email"], "password": "wrong password"}
    for _ in range(3):
        assert_problem(client.post("/v1/auth/login", json=wrong), 401, "invalid_credentials")
    response = client.post("/v1/auth/login", json={"email": member["email"], "password": PASSWORD})
    assert_problem(response, 429, "rate_limited")
    assert int(response.headers["Retry-After"]) > 0


def test_account_limit_ignores_the_case_of_the_email(client, make_member, tight_login_limits):
    member = make_member()
    for email in (member["email"], member["email"].upper(), member["email"].title()):
        client.post("/v1/auth/login", json={"email": email, "password": "wrong password"})
    assert_problem(client.post("/v1/auth/login", json={"email": member["email"], "password": "x"}),
                   429, "rate_limited")


def test_successful_logins_do_not_count_towards_the_limit(client, make_member, tight_login_limits):
    member = make_member()
    for _ in range(6):
        response = client.post("/v1/auth/login", json={"email": member["email"], "password": PASSWORD})
        assert response.status_code == 200


def test_failures_across_many_accounts_from_one_address_are_rate_limited(client, tight_login_limits):
    for n in range(5):
        body = {"email": f"guess{n}@example.test", "password": "wrong password"}
        assert_problem(client.post("/v1/auth/login", json=body), 401, "invalid_credentials")
    response = client.post("/v1/auth/login", json={"email": "guess9@example.test", "password": "x"})
    assert_problem(response, 429, "rate_limited")


def test_staff_login_is_rate_limited_too(client, make_staff, tight_login_limits):
    staff = make_staff("admin")
    for _ in range(3):
        client.post("/v1/auth/staff/login", json={"email": staff["email"], "password": "wrong password"})
    response = client.post("/v1/auth/staff/login", json={"email": staff["email"], "password": PASSWORD})
    assert_problem(response, 429, "rate_limited")
