"""`flask loyalty ...` operator commands."""

from sqlalchemy import func, select

from loyalty.auth.models import ApiKey, StaffUser
from loyalty.cli import DEMO_ADMIN_EMAIL, DEMO_MEMBERS
from loyalty.extensions import db
from loyalty.members.models import Member
from tests.conftest import assert_problem, bearer


def _line_value(output: str, label: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(label)]
    return line.split(label, 1)[1].strip()


def test_create_staff_with_a_password(runner, client):
    result = runner.invoke(args=["loyalty", "create-staff", "--email", "ops@example.test", "--role",
                                 "support", "--password", "a long password"])
    assert result.exit_code == 0, result.output
    assert "role=support" in result.output
    credentials = {"email": "ops@example.test", "password": "a long password"}
    login = client.post("/v1/auth/staff/login", json=credentials)
    assert login.get_json()["role"] == "support"


def test_create_staff_without_a_terminal_prints_a_generated_password(runner, client):
    result = runner.invoke(args=["loyalty", "create-staff", "--email", "gen@example.test", "--role", "admin"])
    assert result.exit_code == 0, result.output
    password = _line_value(result.output, "password:")
    login = client.post("/v1/auth/staff/login", json={"email": "gen@example.test", "password": password})
    assert login.status_code == 200


def test_create_staff_refuses_a_taken_email(runner):
    args = ["loyalty", "create-staff", "--email", "dup@example.test", "--role", "admin",
            "--password", "pw123456"]
    runner.invoke(args=args)
    result = runner.invoke(args=[*args[:3], "DUP@example.test", *args[4:]])
    assert result.exit_code == 1
    assert "already exists" in result.output


def test_create_staff_refuses_an_unknown_role(runner, in_app):
    result = runner.invoke(args=["loyalty", "create-staff", "--email", "x@example.test", "--role", "owner"])
    assert result.exit_code == 2
    with in_app():
        assert db.session.scalar(select(func.count()).select_from(StaffUser)) == 0


def test_create_api_key_prints_a_working_key_once(runner, client, make_member):
    result = runner.invoke(args=["loyalty", "create-api-key", "--name", "shop", "--scopes",
                                 "members:read,checkout"])
    assert result.exit_code == 0, result.output
    assert "scopes=checkout,members:read" in result.output
    key = _line_value(result.output, "key (shown once):")
    member = make_member()
    assert client.get(f"/v1/members/{member['id']}", headers=bearer(key)).status_code == 200


def test_create_api_key_refuses_unknown_scopes(runner, in_app):
    result = runner.invoke(args=["loyalty", "create-api-key", "--name", "x", "--scopes", "root"])
    assert result.exit_code == 1
    assert "Give one or more of" in result.output
    with in_app():
        assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 0


def test_seed_demo_creates_a_program_whose_credentials_work(runner, client, app, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "instance_path", str(tmp_path))
    result = runner.invoke(args=["loyalty", "seed-demo"])
    assert result.exit_code == 0, result.output
    email, password = _line_value(result.output, "staff login:").split(" / ")
    key = _line_value(result.output, "api key:")
    assert email == DEMO_ADMIN_EMAIL
    assert client.post("/v1/auth/staff/login", json={"email": email, "password": password}).status_code == 200
    page = client.get("/v1/members", headers=bearer(key)).get_json()
    assert [m["email"] for m in page["data"]] == [email for email, _, _ in DEMO_MEMBERS]
    member_password = _line_value(result.output, "members:").split(" / ")[1]
    login = client.post("/v1/auth/login", json={"email": DEMO_MEMBERS[0][0], "password": member_password})
    assert login.status_code == 200
    assert (tmp_path / "demo-credentials.txt").stat().st_mode & 0o777 == 0o600


def test_seed_demo_runs_once_and_reprints_the_same_credentials(runner, app, tmp_path, in_app, monkeypatch):
    monkeypatch.setattr(app, "instance_path", str(tmp_path))
    first = runner.invoke(args=["loyalty", "seed-demo"]).output
    second = runner.invoke(args=["loyalty", "seed-demo"]).output
    assert "already seeded" in second
    assert _line_value(first, "api key:") == _line_value(second, "api key:")
    with in_app():
        assert db.session.scalar(select(func.count()).select_from(Member)) == len(DEMO_MEMBERS)
        assert db.session.scalar(select(func.count()).select_from(ApiKey)) == 1


def test_revoked_demo_key_stops_working(runner, client, app, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "instance_path", str(tmp_path))
    key = _line_value(runner.invoke(args=["loyalty", "seed-demo"]).output, "api key:")
    key_id = client.get("/v1/admin/api-keys", headers=bearer(key)).get_json()["data"][0]["id"]
    client.delete(f"/v1/admin/api-keys/{key_id}", headers=bearer(key))
    assert_problem(client.get("/v1/members", headers=bearer(key)), 401, "invalid_api_key")


def test_seed_demo_publishes_rules_and_members_earn_by_them(runner, client, app, tmp_path, monkeypatch):
    monkeypatch.setattr(app, "instance_path", str(tmp_path))
    result = runner.invoke(args=["loyalty", "seed-demo"])
    assert "Published demo rules as version 1." in result.output
    key = _line_value(result.output, "api key:")
    ada = client.get("/v1/members?email=" + DEMO_MEMBERS[0][0], headers=bearer(key)).get_json()["data"][0]
    # 100 welcome points now; USD 42.00 at 1 point per dollar plus the first-order bonus, pending.
    assert ada["points"] == {"available": 100, "pending": 142, "held": 0, "lifetime_earned": 242}
    assert ada["tier"] == {"code": "member", "name": "Member"}
    assert ada["next_tier"] == {"code": "silver", "name": "Silver", "remaining": 258, "basis": "points"}
    assert "Published demo rules" not in runner.invoke(args=["loyalty", "seed-demo"]).output
