"""Rule versions over HTTP, and earning wired end to end: orders, events, signup and referral rewards."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger.models import JournalTransaction
from loyalty.rules.models import RuleAward
from tests.conftest import PASSWORD, assert_problem, bearer, publish_rules, unique_email

REDEEM = {"point_values": {"usd": "1"}}
BASE = {"earn": {"rates": {"usd": "1"}, "pending_days": 14}, "redeem": REDEEM}
LINES = [{"sku": "TEE-1", "category": "apparel", "quantity": 2, "unit_amount": 2500}]


@pytest.fixture
def manager(staff_client):
    return staff_client("manager")


@pytest.fixture
def publish(app):
    """Publish a rules document now; answers its version number."""

    def publish_now(document: dict) -> int:
        with app.app_context():
            return publish_rules(document)

    return publish_now


@pytest.fixture
def checkout(client, make_api_key):
    headers = bearer(make_api_key("checkout"))

    def post_order(member_id: str, order_id: str | None = None, **fields):
        body = {"order_id": order_id or unique_email("ord"), "member_id": member_id, "currency": "usd",
                "lines": LINES, "total_amount": 5000, **fields}
        return client.post("/v1/orders", json=body, headers=headers)

    return post_order


def points_of(client, make_api_key, member_id: str) -> dict:
    return client.get(f"/v1/members/{member_id}", headers=bearer(make_api_key("members:read"))).get_json()["points"]


# --- versions ---------------------------------------------------------------------------------------

def test_manager_creates_a_draft(manager):
    response = manager.post("/v1/admin/rules", json={"document": BASE, "note": "Launch"})
    assert response.status_code == 201
    body = response.get_json()
    assert (body["version"], body["status"], body["note"], body["in_force"]) == (1, "draft", "Launch", False)
    assert body["document"]["earn"]["rates"] == {"usd": "1"}


def test_an_invalid_document_is_refused_naming_the_exact_path(manager, row_counts):
    before = row_counts()
    response = manager.post("/v1/admin/rules", json={"document": {"earn": {"rates": {"usd": 1.5}}}})
    body = assert_problem(response, 422, "validation_error")
    assert list(body["errors"]) == ["document.earn.rates.usd"]
    assert row_counts() == before


def test_drafts_can_be_edited_and_published_versions_cannot(manager):
    manager.post("/v1/admin/rules", json={"document": BASE})
    changed = {**BASE, "earn": {"rates": {"usd": "2"}}}
    assert manager.put("/v1/admin/rules/1", json={"document": changed}).get_json()["document"]["earn"]["rates"] == {
        "usd": "2"}
    assert manager.post("/v1/admin/rules/1/publish", json={}).status_code == 200
    assert_problem(manager.put("/v1/admin/rules/1", json={"document": BASE}), 409, "version_published")
    assert_problem(manager.post("/v1/admin/rules/1/publish", json={}), 409, "version_published")


def test_the_latest_published_version_is_in_force(manager):
    for _ in range(2):
        manager.post("/v1/admin/rules", json={"document": BASE})
        manager.post(f"/v1/admin/rules/{manager.get('/v1/admin/rules').get_json()['data'][0]['version']}/publish",
                     json={})
    versions = manager.get("/v1/admin/rules").get_json()["data"]
    assert [(v["version"], v["status"], v["in_force"]) for v in versions] == [
        (2, "published", True), (1, "published", False)]


def test_a_version_published_for_later_is_not_in_force_yet(manager):
    manager.post("/v1/admin/rules", json={"document": BASE})
    manager.post("/v1/admin/rules/1/publish", json={})
    manager.post("/v1/admin/rules", json={"document": BASE})
    later = (now() + timedelta(hours=1)).isoformat()
    assert manager.post("/v1/admin/rules/2/publish", json={"effective_from": later}).get_json()["in_force"] is False
    assert [v["in_force"] for v in manager.get("/v1/admin/rules").get_json()["data"]] == [False, True]


def test_publishing_in_the_past_is_refused(manager):
    manager.post("/v1/admin/rules", json={"document": BASE})
    past = (now() - timedelta(days=1)).isoformat()
    body = assert_problem(manager.post("/v1/admin/rules/1/publish", json={"effective_from": past}),
                          422, "validation_error")
    assert list(body["errors"]) == ["effective_from"]


def test_unknown_version_is_not_found(manager):
    assert_problem(manager.get("/v1/admin/rules/99"), 404, "not_found")


def test_simulate_a_document_against_a_sample_order(manager):
    response = manager.post("/v1/admin/rules/simulate", json={"rules": BASE, "order": {"currency": "usd",
                                                                                        "lines": LINES}})
    body = response.get_json()
    assert response.status_code == 200
    assert body["points"] == 50
    assert sum(item["points"] for item in body["breakdown"]) == 50
    assert body["rule_version"] is None


def test_simulate_without_rules_in_force_asks_for_some(manager):
    response = manager.post("/v1/admin/rules/simulate", json={"order": {"currency": "usd", "lines": LINES}})
    assert_problem(response, 422, "validation_error")


def test_simulate_an_invalid_document_names_the_path_under_rules(manager):
    response = manager.post("/v1/admin/rules/simulate", json={"rules": {"earn": {}}, "order": {
        "currency": "usd", "lines": LINES}})
    body = assert_problem(response, 422, "validation_error")
    assert all(path.startswith("rules.") for path in body["errors"])


def test_impact_replays_recent_orders_under_a_draft(manager, publish, make_member, checkout):
    publish(BASE)
    member = make_member()
    for _ in range(3):
        checkout(member["id"])
    manager.post("/v1/admin/rules", json={"document": {**BASE, "earn": {"rates": {"usd": "3"}}}})
    impact = manager.get("/v1/admin/rules/2/impact?last=10").get_json()
    assert impact == {"version": 2, "orders": 3, "current_points": 150, "proposed_points": 450, "change": 300}


# --- orders earn ------------------------------------------------------------------------------------

def test_a_paid_order_earns_pending_points_with_a_breakdown(publish, make_member, checkout, client, make_api_key):
    version = publish(BASE)
    member = make_member()
    response = checkout(member["id"], order_id="ord_1", channel="store")
    assert response.status_code == 201
    body = response.get_json()
    assert (body["order_id"], body["status"], body["channel"], body["points_earned"]) == ("ord_1", "paid", "store",
                                                                                          50)
    assert body["rule_version"] == version
    assert body["breakdown"][0]["rule"] == "base"
    assert body["transaction_id"].startswith("txn_")
    assert points_of(client, make_api_key, member["id"])["pending"] == 50


def test_the_journal_records_the_rule_version_and_the_order(publish, make_member, checkout, in_app):
    version = publish(BASE)
    member = make_member()
    txn_id = checkout(member["id"], order_id="ord_7").get_json()["transaction_id"]
    with in_app():
        txn = db.session.scalar(select(JournalTransaction).where(JournalTransaction.public_id == txn_id))
        assert (txn.rule_version, txn.order_id, txn.kind) == (version, "ord_7", "earn")
        assert db.session.scalar(select(func.sum(RuleAward.points)).where(RuleAward.transaction_id == txn.id)) == 50


def test_the_same_order_twice_earns_once_and_answers_the_same(publish, make_member, checkout, client, make_api_key):
    publish(BASE)
    member = make_member()
    first = checkout(member["id"], order_id="ord_2")
    again = checkout(member["id"], order_id="ord_2")
    assert again.status_code == first.status_code == 201
    assert again.get_json() == first.get_json()
    assert points_of(client, make_api_key, member["id"])["pending"] == 50


def test_the_same_order_id_with_other_details_conflicts(publish, make_member, checkout, row_counts):
    publish(BASE)
    member = make_member()
    checkout(member["id"], order_id="ord_3")
    before = row_counts()
    assert_problem(checkout(member["id"], order_id="ord_3", total_amount=1), 409, "order_conflict")
    assert row_counts() == before


def test_an_order_for_an_unknown_member_is_refused(checkout, row_counts):
    before = row_counts()
    body = assert_problem(checkout("mem_nobody"), 422, "validation_error")
    assert list(body["errors"]) == ["member_id"]
    assert row_counts() == before


def test_an_order_paid_in_the_future_is_refused(make_member, checkout):
    member = make_member()
    later = (now() + timedelta(days=1)).isoformat()
    assert_problem(checkout(member["id"], paid_at=later), 422, "validation_error")


def test_without_rules_in_force_an_order_is_recorded_and_earns_nothing(make_member, checkout):
    member = make_member()
    body = checkout(member["id"]).get_json()
    assert (body["points_earned"], body["transaction_id"], body["rule_version"]) == (0, None, None)
    assert body["breakdown"] == [{"rule": "rules", "points": 0, "detail": "No rules are in force."}]


def test_first_order_bonus_is_paid_once(publish, make_member, checkout):
    publish({**BASE, "earn": {**BASE["earn"], "first_order_points": 100}})
    member = make_member()
    assert checkout(member["id"]).get_json()["points_earned"] == 150
    assert checkout(member["id"]).get_json()["points_earned"] == 50


# --- events, signup and referrals -----------------------------------------------------------------

EVENTS = {**BASE, "events": {"signup": {"points": 200}, "review": {"points": 20},
                             "referral": {"referrer_points": 500, "referred_points": 250, "max_per_referrer": 1},
                             "custom": {"newsletter": {"points": 50, "once": True}}}}


def test_signup_pays_the_welcome_bonus(publish, client):
    publish(EVENTS)
    response = client.post("/v1/signup", json={"email": unique_email(), "password": PASSWORD})
    assert response.get_json()["points"]["available"] == 200


def test_a_review_event_pays_every_time(publish, make_member, client, make_api_key):
    publish(EVENTS)
    member = make_member()
    headers = bearer(make_api_key("members:write"))
    for n in range(2):
        response = client.post(f"/v1/members/{member['id']}/events", json={"type": "review"},
                               headers={**headers, "Idempotency-Key": f"review-{n}"})
        assert response.status_code == 201
        assert response.get_json()["points"] == 20
    assert points_of(client, make_api_key, member["id"])["available"] == 200 + 40


def _review(client, headers: dict, member_id: str, **fields):
    return client.post(f"/v1/members/{member_id}/events", json={"type": "review", **fields},
                       headers={**headers, "Idempotency-Key": unique_email("key")})


def test_reviews_past_the_daily_limit_pay_nothing_until_the_next_day(publish, make_member, client, make_api_key,
                                                                     stop_clock):
    clock = stop_clock(datetime(2026, 12, 4, 23, 0, tzinfo=UTC))
    publish({**EVENTS, "events": {**EVENTS["events"], "review": {"points": 20, "max_per_day": 2}}})
    member = make_member()
    headers = bearer(make_api_key("members:write"))
    answers = [_review(client, headers, member["id"]).get_json() for _ in range(3)]
    assert [a["points"] for a in answers] == [20, 20, 0]
    assert answers[2]["breakdown"] == [{"rule": "event.review", "points": 0,
                                        "detail": "Daily limit reached: at most 2 reviews rewarded a day"}]
    clock.travel(timedelta(hours=1))  # midnight UTC: a new day
    assert _review(client, headers, member["id"]).get_json()["points"] == 20
    assert points_of(client, make_api_key, member["id"])["available"] == 200 + 60


def test_the_daily_review_limit_counts_the_utc_day_whatever_the_offset_an_event_is_sent_with(
        publish, make_member, client, make_api_key, stop_clock):
    clock = stop_clock(datetime(2026, 12, 4, 1, 0, tzinfo=UTC))
    publish({**EVENTS, "events": {**EVENTS["events"], "review": {"points": 20, "max_per_day": 1}}})
    member = make_member()
    clock.travel(timedelta(hours=22))
    headers = bearer(make_api_key("members:write"))
    assert _review(client, headers, member["id"], occurred_at="2026-12-04T02:00:00Z").get_json()["points"] == 20
    # 10:00 UTC the same day, sent as midnight at -10:00
    later = _review(client, headers, member["id"], occurred_at="2026-12-04T00:00:00-10:00").get_json()
    assert later["points"] == 0


def test_a_review_of_one_reference_pays_once_and_answers_the_same_again(publish, make_member, client, make_api_key):
    publish(EVENTS)
    member, other = make_member(), make_member()
    headers = bearer(make_api_key("members:write"))
    first = _review(client, headers, member["id"], reference="product:TEE-1")
    again = _review(client, headers, member["id"], reference="product:TEE-1")
    assert first.status_code == again.status_code == 201
    assert again.get_json() == first.get_json()
    assert first.get_json()["points"] == 20
    assert _review(client, headers, member["id"], reference="product:TEE-2").get_json()["points"] == 20
    assert _review(client, headers, other["id"], reference="product:TEE-1").get_json()["points"] == 20
    assert points_of(client, make_api_key, member["id"])["available"] == 200 + 40
    with client.application.app_context():
        assert db.session.scalar(select(func.count()).select_from(JournalTransaction).where(
            JournalTransaction.reference.like("%:review:ref:product:TEE-1"))) == 2  # one per member


def test_an_event_reference_out_of_bounds_is_refused(make_member, client, make_api_key, row_counts):
    member = make_member()
    headers = bearer(make_api_key("members:write"))
    before = row_counts()
    for reference in ("", "x" * 101, "two words", 7):
        body = assert_problem(_review(client, headers, member["id"], reference=reference), 422, "validation_error")
        assert list(body["errors"]) == ["reference"]
    assert row_counts() == before


def test_an_event_retried_with_its_key_pays_once(publish, make_member, client, make_api_key):
    publish(EVENTS)
    member = make_member()
    headers = {**bearer(make_api_key("members:write")), "Idempotency-Key": "review-x"}
    first = client.post(f"/v1/members/{member['id']}/events", json={"type": "review"}, headers=headers)
    again = client.post(f"/v1/members/{member['id']}/events", json={"type": "review"}, headers=headers)
    assert again.get_json()["transaction_id"] == first.get_json()["transaction_id"]
    assert points_of(client, make_api_key, member["id"])["available"] == 220


def test_a_once_only_custom_event_pays_once(publish, make_member, client, make_api_key):
    publish(EVENTS)
    member = make_member()
    headers = bearer(make_api_key("members:write"))
    paid = [client.post(f"/v1/members/{member['id']}/events", json={"type": "custom:newsletter"},
                        headers=headers).get_json()["points"] for _ in range(2)]
    assert paid == [50, 0]


def test_an_unknown_event_type_is_refused(make_member, client, make_api_key):
    member = make_member()
    response = client.post(f"/v1/members/{member['id']}/events", json={"type": "purchase"},
                           headers=bearer(make_api_key("members:write")))
    body = assert_problem(response, 422, "validation_error")
    assert list(body["errors"]) == ["type"]


def test_referral_pays_both_sides_at_the_referred_members_first_order(publish, make_member, checkout, client,
                                                                       make_api_key):
    publish(EVENTS)
    referrer = make_member()
    friend = make_member(referral_code=referrer["referral_code"])
    assert points_of(client, make_api_key, referrer["id"])["available"] == 200
    checkout(friend["id"])
    checkout(friend["id"])
    # Pending, like the order's own points, while the order can be returned.
    assert points_of(client, make_api_key, referrer["id"])["pending"] == 500
    assert points_of(client, make_api_key, friend["id"])["pending"] == 50 + 250 + 50


def test_referrals_stop_paying_the_referrer_past_the_limit(publish, make_member, checkout, client, make_api_key):
    publish(EVENTS)
    referrer = make_member()
    for _ in range(2):
        checkout(make_member(referral_code=referrer["referral_code"])["id"])
    assert points_of(client, make_api_key, referrer["id"])["pending"] == 500


# --- races (PostgreSQL) --------------------------------------------------------------------------------

def test_reviews_of_one_reference_at_once_pay_once_and_all_answer_the_same(pg):
    from loyalty.members import service as members

    racers = 10
    with pg.app_context():
        publish_rules({**EVENTS, "events": {"review": {"points": 20, "max_per_day": 5}}},
                      at=now() - timedelta(seconds=1))
        member_id = members.enrol(members.NewMember(email=unique_email()), source="test").public_id
        db.session.commit()
    barrier = threading.Barrier(racers)

    def review(n: int) -> str | None:
        with pg.app_context():
            barrier.wait()
            # Half review one product, half a product each: the daily limit of 5 holds across both.
            reference = "product:TEE-1" if n % 2 else f"product:P-{n}"
            _, txn = members.record_event(members.get_member(member_id), "review", occurred_at=None,
                                          reference=reference)
            answer = (reference, txn.public_id if txn else None)
            db.session.commit()
            return answer

    with ThreadPoolExecutor(max_workers=racers) as pool:
        answers = list(pool.map(review, range(racers)))
    assert len({txn for reference, txn in answers if reference == "product:TEE-1"}) == 1  # all answer the first
    with pg.app_context():
        paid = db.session.scalars(select(JournalTransaction.reference).where(
            JournalTransaction.reference.like("event:%:review:ref:%"))).all()
        assert len(paid) == 5  # six references for a daily limit of five
        assert len([reference for reference in paid if reference.endswith(":product:TEE-1")]) <= 1
