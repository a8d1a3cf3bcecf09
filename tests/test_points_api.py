"""Points over HTTP: the summary, the journal, staff adjustments, suspension, and `ledger verify`."""

from datetime import timedelta

import pytest
from sqlalchemy import select, text

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.ledger.models import JournalTransaction
from loyalty.members import service as members
from tests.conftest import PASSWORD, assert_problem, bearer

TRANSACTION_FIELDS = {"id", "kind", "points", "balance_after", "description", "order_id", "rule_version",
                      "created_at"}


@pytest.fixture
def give(in_app):
    """Move points for a member by public id, straight through the ledger."""

    def earn(member_id: str, points: int, **fields) -> None:
        with in_app():
            member = members.get_member(member_id)
            ledger.earn(member.id, points, reference=f"test:{member_id}:{points}:{fields}",
                        description=fields.pop("description", "Order #1"), now=now(), **fields)
            db.session.commit()

    return earn


@pytest.fixture
def support(staff_client):
    return staff_client("support")


def test_summary_shows_points_from_the_ledger(member_client, give):
    client, member = member_client()
    give(member["id"], 300)
    give(member["id"], 120, pending_until=now() + timedelta(days=14))
    points = client.get("/v1/me").get_json()["points"]
    assert points == {"available": 300, "pending": 120, "held": 0, "lifetime_earned": 420}


def test_summary_lists_points_expiring_soon(member_client, give):
    client, member = member_client()
    soon = (now() + timedelta(days=10)).replace(microsecond=0)
    give(member["id"], 40, expires_at=soon)
    give(member["id"], 60, expires_at=now() + timedelta(days=300))
    expiring = client.get("/v1/me").get_json()["expiring"]
    assert expiring == [{"points": 40, "expires_at": soon.isoformat()}]


def test_my_transactions_are_newest_first_and_read_like_a_statement(member_client, give):
    client, member = member_client()
    give(member["id"], 100, description="Order #1")
    give(member["id"], 50, description="Order #2", order_id="ord_2")
    page = client.get("/v1/me/transactions").get_json()
    assert page["has_more"] is False
    newest, oldest = page["data"]
    assert set(newest) >= TRANSACTION_FIELDS
    assert (newest["kind"], newest["points"], newest["balance_after"], newest["order_id"]) == ("earn", 50, 150, "ord_2")
    assert (oldest["points"], oldest["balance_after"], oldest["description"]) == (100, 100, "Order #1")
    assert newest["id"].startswith("txn_")


def test_transactions_page_with_starting_after(member_client, give):
    client, member = member_client()
    for points in (1, 2, 3):
        give(member["id"], points)
    first = client.get("/v1/me/transactions?limit=2").get_json()
    assert ([t["points"] for t in first["data"]], first["has_more"]) == ([3, 2], True)
    rest = client.get(f"/v1/me/transactions?limit=2&starting_after={first['data'][1]['id']}").get_json()
    assert ([t["points"] for t in rest["data"]], rest["has_more"]) == ([1], False)


def test_a_cursor_from_another_members_journal_is_refused(member_client, make_member, make_api_key, give, client):
    other = make_member()
    give(other["id"], 5)
    others_txn = client.get(f"/v1/members/{other['id']}/transactions",
                            headers=bearer(make_api_key("members:read"))).get_json()["data"][0]["id"]
    mine, _ = member_client()
    response = mine.get(f"/v1/me/transactions?starting_after={others_txn}")
    assert_problem(response, 422, "validation_error")


def test_server_reads_a_members_transactions(client, make_member, make_api_key, give):
    member = make_member()
    give(member["id"], 10)
    page = client.get(f"/v1/members/{member['id']}/transactions", headers=bearer(make_api_key("members:read")))
    assert [t["points"] for t in page.get_json()["data"]] == [10]


def test_transactions_of_an_unknown_member_are_not_found(client, make_api_key):
    response = client.get("/v1/members/mem_nope/transactions", headers=bearer(make_api_key("members:read")))
    assert_problem(response, 404, "not_found")


def test_support_adds_points_with_a_reason(support, make_member, in_app):
    member = make_member()
    response = support.post(f"/v1/admin/members/{member['id']}/adjustments",
                            json={"points": 250, "reason": "Late delivery"})
    assert response.status_code == 201
    body = response.get_json()
    assert (body["kind"], body["points"], body["balance_after"]) == ("adjust", 250, 250)
    assert body["description"] == "Adjustment: Late delivery"
    with in_app():
        txn = db.session.scalar(select(JournalTransaction).where(JournalTransaction.public_id == body["id"]))
        assert txn.staff_id is not None


def test_negative_adjustment_below_zero_is_refused_and_changes_nothing(support, make_member, give, row_counts):
    member = make_member()
    give(member["id"], 100)
    before = row_counts()
    response = support.post(f"/v1/admin/members/{member['id']}/adjustments", json={"points": -101, "reason": "x"})
    assert_problem(response, 409, "insufficient_points")
    assert row_counts() == before


def test_zero_point_adjustment_is_invalid(support, make_member):
    member = make_member()
    response = support.post(f"/v1/admin/members/{member['id']}/adjustments", json={"points": 0, "reason": "x"})
    body = assert_problem(response, 422, "validation_error")
    assert list(body["errors"]) == ["points"]


def test_adjustment_for_an_unknown_member_is_not_found(support):
    response = support.post("/v1/admin/members/mem_nope/adjustments", json={"points": 5, "reason": "x"})
    assert_problem(response, 404, "not_found")


def test_adjustment_retried_with_its_idempotency_key_moves_points_once(support, make_member, member_client):
    member = make_member()
    url, headers = f"/v1/admin/members/{member['id']}/adjustments", {"Idempotency-Key": "adj-1"}
    first = support.post(url, json={"points": 30, "reason": "Goodwill"}, headers=headers)
    again = support.post(url, json={"points": 30, "reason": "Goodwill"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.get_json()["id"] == first.get_json()["id"]
    summary = support.get(f"/v1/members/{member['id']}").get_json()
    assert summary["points"]["available"] == 30


def test_idempotency_key_reused_with_another_body_is_refused(support, make_member, row_counts):
    member = make_member()
    url, headers = f"/v1/admin/members/{member['id']}/adjustments", {"Idempotency-Key": "adj-2"}
    support.post(url, json={"points": 30, "reason": "Goodwill"}, headers=headers)
    before = row_counts()
    response = support.post(url, json={"points": 31, "reason": "Goodwill"}, headers=headers)
    assert_problem(response, 409, "idempotency_key_reused")
    assert row_counts() == before


def test_oversized_idempotency_key_is_refused(support, make_member):
    member = make_member()
    response = support.post(f"/v1/admin/members/{member['id']}/adjustments", json={"points": 1, "reason": "x"},
                            headers={"Idempotency-Key": "k" * 129})
    body = assert_problem(response, 422, "validation_error")
    assert list(body["errors"]) == ["Idempotency-Key"]


def test_suspended_member_keeps_points_but_cannot_spend_them(support, make_member, give, in_app):
    member = make_member()
    give(member["id"], 100)
    response = support.post(f"/v1/admin/members/{member['id']}/suspend")
    assert response.status_code == 200
    assert (response.get_json()["status"], response.get_json()["points"]["available"]) == ("suspended", 100)
    with in_app():
        internal_id = members.get_member(member["id"]).id
        with pytest.raises(Exception, match="suspended"):
            ledger.hold(internal_id, 10, reference="h", expires_at=now() + timedelta(minutes=5),
                        now=now(), description="x")


def test_suspended_member_can_still_sign_in(support, make_member, client):
    member = make_member()
    support.post(f"/v1/admin/members/{member['id']}/suspend")
    response = client.post("/v1/auth/login", json={"email": member["email"], "password": PASSWORD})
    assert response.get_json()["status"] == "suspended"


def test_reinstate_lifts_a_suspension(support, make_member):
    member = make_member()
    support.post(f"/v1/admin/members/{member['id']}/suspend")
    assert support.post(f"/v1/admin/members/{member['id']}/reinstate").get_json()["status"] == "active"


def test_staff_search_finds_members_by_email_prefix_name_and_ids(support, make_member):
    ada = make_member(email="ada.lovelace@example.test", name="Ada Lovelace", external_id="crm-ada")
    make_member(email="grace@example.test", name="Grace Hopper")
    for q in ("ADA.love", "lovelace", "crm-ada", ada["id"]):
        found = support.get(f"/v1/admin/members?q={q}").get_json()["data"]
        assert [m["id"] for m in found] == [ada["id"]], q


def test_staff_search_treats_wildcards_literally(support, make_member):
    make_member(email="someone@example.test")
    assert support.get("/v1/admin/members?q=%25").get_json()["data"] == []


def test_ledger_verify_passes_on_a_consistent_database(runner, make_member, give):
    give(make_member()["id"], 100)
    result = runner.invoke(args=["loyalty", "ledger", "verify"])
    assert result.exit_code == 0, result.output
    assert "13 checks, 0 breached" in result.output
    assert "ok     transactions_balance" in result.output
    assert "issued=-100" in result.output


def test_ledger_verify_reports_a_breach_and_exits_non_zero(runner, make_member, give, in_app):
    give(make_member()["id"], 100)
    with in_app():
        db.session.execute(text("UPDATE ledger_accounts SET balance = balance + 1 WHERE kind = 'available'"))
        db.session.commit()
    result = runner.invoke(args=["loyalty", "ledger", "verify"])
    assert result.exit_code == 1
    assert "BREACH cached_balances" in result.output
    assert "BREACH available_equals_active_lots" in result.output
