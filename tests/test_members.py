"""Members: signup, sign-in, the member summary, enrolment and look-up by servers."""

from sqlalchemy import select

from loyalty.extensions import db
from loyalty.members import service as members
from loyalty.members.models import Member, MemberConsent
from loyalty.members.service import REFERRAL_ALPHABET, REFERRAL_CODE_LENGTH
from tests.conftest import PASSWORD, assert_problem, bearer, unique_email

SUMMARY_FIELDS = {"id", "email", "name", "status", "tier", "points", "next_tier", "expiring",
                  "referral_code", "created_at"}


def signup(client, **fields):
    body = {"email": unique_email(), "password": PASSWORD, **fields}
    return client.post("/v1/signup", json=body)


def test_signup_creates_a_member_and_answers_the_summary(client):
    response = signup(client, email="Ada@Example.test", name="Ada", birthday="1990-12-10")
    assert response.status_code == 201
    body = response.get_json()
    assert set(body) >= SUMMARY_FIELDS
    assert body["id"].startswith("mem_")
    assert body["email"] == "Ada@Example.test"
    assert body["name"] == "Ada"
    assert body["birthday"] == "1990-12-10"
    assert body["status"] == "active"
    assert body["points"] == {"available": 0, "pending": 0, "held": 0, "lifetime_earned": 0}
    assert body["created_at"].endswith("+00:00")


def test_signup_signs_the_member_in(client):
    member_id = signup(client).get_json()["id"]
    assert client.get("/v1/me").get_json()["id"] == member_id


def test_signup_stores_only_a_modern_hash_of_the_password(client, in_app):
    member_id = signup(client).get_json()["id"]
    with in_app():
        stored = db.session.scalar(select(Member.password_hash).where(Member.public_id == member_id))
    assert stored.startswith("scrypt:")
    assert PASSWORD not in stored


def test_email_is_unique_whatever_its_case(client, row_counts):
    signup(client, email="grace@example.test")
    before = row_counts()
    response = signup(client, email="GRACE@Example.TEST")
    body = assert_problem(response, 409, "conflict")
    assert body["errors"] == {"email": ["Already registered."]}
    assert row_counts() == before


def test_signup_gives_an_unambiguous_referral_code(client):
    code = signup(client).get_json()["referral_code"]
    assert len(code) == REFERRAL_CODE_LENGTH
    assert set(code) <= set(REFERRAL_ALPHABET)
    assert not set(code) & set("01ILOUV")


def test_signup_with_a_referral_code_records_the_referrer(client, make_member, in_app):
    referrer = make_member()
    member_id = signup(client, referral_code=referrer["referral_code"].lower()).get_json()["id"]
    with in_app():
        assert members.get_member(member_id).referred_by_id == members.get_member(referrer["id"]).id


def test_signup_with_an_unknown_referral_code_is_refused(client, row_counts):
    before = row_counts()
    body = assert_problem(signup(client, referral_code="ZZZZZZZZ"), 422, "validation_error")
    assert body["errors"] == {"referral_code": ["No member has this referral code."]}
    assert row_counts() == before


def test_signup_records_marketing_consent_with_its_source(client, in_app):
    member_id = signup(client, marketing_consent=True).get_json()["id"]
    with in_app():
        [consent] = db.session.scalars(select(MemberConsent))
        assert consent.member_id == members.get_member(member_id).id
        assert (consent.purpose, consent.granted, consent.source) == ("marketing_email", True, "signup")


def test_signup_without_a_consent_answer_records_none(client, row_counts):
    signup(client)
    assert row_counts()["member_consents"] == 0


def test_signup_refuses_a_birthday_in_the_future(client):
    body = assert_problem(signup(client, birthday="2999-01-01"), 422, "validation_error")
    assert list(body["errors"]) == ["birthday"]


def test_referral_code_collision_draws_another_code(client, make_member, monkeypatch):
    taken = make_member()["referral_code"]
    draws = iter([taken, "ABCDEFGH"])
    monkeypatch.setattr(members, "new_referral_code", lambda: next(draws))
    assert signup(client).get_json()["referral_code"] == "ABCDEFGH"


def test_login_with_the_right_password_starts_a_session(client, make_member):
    member = make_member()
    response = client.post("/v1/auth/login", json={"email": member["email"].upper(), "password": PASSWORD})
    assert response.status_code == 200
    assert response.get_json()["id"] == member["id"]
    assert client.get("/v1/me").status_code == 200


def test_session_cookie_is_http_only_and_same_site(client, make_member):
    member = make_member()
    response = client.post("/v1/auth/login", json={"email": member["email"], "password": PASSWORD})
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_login_with_a_wrong_password_is_refused(client, make_member):
    member = make_member()
    response = client.post("/v1/auth/login", json={"email": member["email"], "password": "wrong password"})
    assert_problem(response, 401, "invalid_credentials")
    assert_problem(client.get("/v1/me"), 401, "unauthenticated")


def test_login_for_an_unknown_email_answers_like_a_wrong_password(client):
    response = client.post("/v1/auth/login", json={"email": "nobody@example.test", "password": PASSWORD})
    body = assert_problem(response, 401, "invalid_credentials")
    assert body["detail"] == "The email or password is wrong."


def test_member_enrolled_by_the_shop_cannot_log_in_without_a_password(client, make_api_key):
    key = make_api_key("members:write")
    email = unique_email()
    client.post("/v1/members", json={"email": email}, headers=bearer(key))
    response = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert_problem(response, 401, "invalid_credentials")


def test_staff_credentials_do_not_sign_in_as_a_member(client, make_staff):
    staff = make_staff("admin")
    response = client.post("/v1/auth/login", json={"email": staff["email"], "password": PASSWORD})
    assert_problem(response, 401, "invalid_credentials")


def test_logout_ends_the_session(client, make_member):
    member = make_member()
    client.post("/v1/auth/login", json={"email": member["email"], "password": PASSWORD})
    assert client.post("/v1/auth/logout").status_code == 204
    assert_problem(client.get("/v1/me"), 401, "unauthenticated")


def test_logout_without_a_session_is_harmless(client):
    assert client.post("/v1/auth/logout").status_code == 204


def test_me_refuses_a_staff_session(staff_client):
    assert_problem(staff_client("admin").get("/v1/me"), 403, "forbidden")


def test_shop_enrols_a_member_with_an_external_id(client, make_api_key, in_app):
    key = make_api_key("members:write")
    response = client.post(
        "/v1/members", json={"email": "shop@example.test", "external_id": "cust-42", "name": "Shop"},
        headers=bearer(key),
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["external_id"] == "cust-42"
    with in_app():
        assert members.get_member(body["id"]).password_hash is None


def test_enrolling_a_taken_external_id_conflicts(client, make_api_key, row_counts):
    key = make_api_key("members:write")
    client.post("/v1/members", json={"email": unique_email(), "external_id": "cust-1"}, headers=bearer(key))
    before = row_counts()
    response = client.post(
        "/v1/members", json={"email": unique_email(), "external_id": "cust-1"}, headers=bearer(key)
    )
    body = assert_problem(response, 409, "conflict")
    assert body["errors"] == {"external_id": ["Already registered."]}
    assert row_counts() == before


def test_get_member_by_id(client, make_member, make_api_key):
    member = make_member(name="Alan")
    response = client.get(f"/v1/members/{member['id']}", headers=bearer(make_api_key("members:read")))
    assert response.status_code == 200
    assert (response.get_json()["id"], response.get_json()["name"]) == (member["id"], "Alan")


def test_get_unknown_member_is_not_found(client, make_api_key):
    response = client.get("/v1/members/mem_doesnotexist", headers=bearer(make_api_key("members:read")))
    assert_problem(response, 404, "not_found")


def test_find_member_by_email_ignores_case(client, make_member, make_api_key):
    member = make_member(email="Mixed.Case@Example.test")
    make_member()
    headers = bearer(make_api_key("members:read"))
    page = client.get("/v1/members?email=mixed.case@EXAMPLE.test", headers=headers).get_json()
    assert ([m["id"] for m in page["data"]], page["has_more"]) == ([member["id"]], False)


def test_find_member_by_external_id(client, make_member, make_api_key):
    member = make_member(external_id="crm-7")
    make_member(external_id="crm-8")
    response = client.get("/v1/members?external_id=crm-7", headers=bearer(make_api_key("members:read")))
    assert [m["id"] for m in response.get_json()["data"]] == [member["id"]]


def test_find_member_with_no_match_answers_an_empty_list(client, make_api_key):
    response = client.get("/v1/members?email=none@example.test", headers=bearer(make_api_key("members:read")))
    assert response.get_json() == {"data": [], "has_more": False}


def test_members_list_pages_with_limit_and_starting_after(client, make_member, make_api_key):
    ids = [make_member()["id"] for _ in range(5)]
    headers = bearer(make_api_key("members:read"))
    first = client.get("/v1/members?limit=2", headers=headers).get_json()
    assert ([m["id"] for m in first["data"]], first["has_more"]) == (ids[:2], True)
    second = client.get(f"/v1/members?limit=2&starting_after={ids[1]}", headers=headers).get_json()
    assert ([m["id"] for m in second["data"]], second["has_more"]) == (ids[2:4], True)
    last = client.get(f"/v1/members?limit=2&starting_after={ids[3]}", headers=headers).get_json()
    assert ([m["id"] for m in last["data"]], last["has_more"]) == (ids[4:], False)


def test_members_list_defaults_to_twenty(client, make_api_key, in_app):
    with in_app():
        for _ in range(21):
            members.enrol(members.NewMember(email=unique_email()), source="test")
        db.session.commit()
    page = client.get("/v1/members", headers=bearer(make_api_key("members:read"))).get_json()
    assert (len(page["data"]), page["has_more"]) == (20, True)
