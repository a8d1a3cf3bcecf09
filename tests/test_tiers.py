"""Tiers: qualification over a rolling window, instant upgrades, downgrades after the grace period."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.jobs import service as jobs
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.rules import engine
from loyalty.rules import service as rules
from loyalty.tiers import service as tiers
from loyalty.tiers.models import MemberTier, TierChange
from tests.conftest import assert_problem, bearer, unique_email

T0 = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
LADDER = [
    {"code": "member", "name": "Member", "rank": 0, "threshold": 0, "basis": "points", "window_days": 365},
    {"code": "silver", "name": "Silver", "rank": 1, "threshold": 1000, "basis": "points", "window_days": 365},
    {"code": "gold", "name": "Gold", "rank": 2, "threshold": 5000, "basis": "points", "window_days": 365,
     "earn_multiplier": "1.5", "discount_percent": 10, "early_access_hours": 24},
]
_refs = iter(range(10**9))


@pytest.fixture
def world(in_app, app):
    """The ladder above, a member, and helpers acting at a given moment, inside one app context."""
    with in_app():
        for fields in LADDER:
            tiers.create_tier({**fields, "earn_multiplier": Decimal(fields.get("earn_multiplier", "1"))})
        member = members.enrol(members.NewMember(email=unique_email()), source="test")
        db.session.commit()

        class World:
            id = member.id

            def earn(self, points: int, at: datetime):
                txn = ledger.earn(member.id, points, reference=f"t:{next(_refs)}", description="Order",
                                  now=at)
                tiers.upgrade_if_qualified(member, at)
                db.session.commit()
                return txn

            def evaluate(self, at: datetime) -> dict:
                counts = tiers.evaluate([member.id], at)
                db.session.commit()
                return counts

            def tier(self) -> str:
                return tiers.current_tier(member)[0].code

            def history(self) -> list[tuple]:
                return [(h["from"], h["to"]) for h in tiers.history(member)]

            def summary(self, at: datetime) -> dict:
                return tiers.summary(member, at)

        yield World()
        db.session.rollback()


@pytest.fixture
def grace(app):
    app.config["TIER_GRACE_DAYS"] = 30
    yield
    app.config.pop("TIER_GRACE_DAYS")


def test_a_new_member_is_in_the_base_tier(world):
    assert world.tier() == "member"
    assert world.history() == []


def test_one_point_short_of_the_threshold_is_not_enough(world):
    world.earn(999, T0)
    assert world.tier() == "member"


def test_reaching_the_threshold_upgrades_at_once(world):
    world.earn(999, T0)
    world.earn(1, T0 + DAY)
    assert world.tier() == "silver"
    assert world.history() == [("member", "silver")]


def test_crossing_two_thresholds_at_once_lands_in_the_highest(world):
    world.earn(6000, T0)
    assert world.tier() == "gold"
    assert world.history() == [("member", "gold")]


def test_points_earned_before_the_window_do_not_count(world):
    world.earn(600, T0)
    world.earn(600, T0 + 366 * DAY)
    assert world.tier() == "member"


def test_spending_points_never_reduces_progress(world, grace):
    world.earn(1000, T0)
    hold = ledger.hold(world.id, 900, reference="spend", expires_at=T0 + DAY, now=T0, description="Checkout")
    ledger.capture(hold, now=T0)
    db.session.commit()
    world.evaluate(T0 + 100 * DAY)
    assert world.tier() == "silver"


def test_downgrade_waits_for_the_grace_period(world, grace):
    world.earn(1000, T0)
    assert world.evaluate(T0 + 364 * DAY)["downgraded"] == 0  # still qualifies: grace now runs to day 394
    assert world.evaluate(T0 + 370 * DAY)["downgraded"] == 0  # no longer qualifies, inside the grace
    assert world.tier() == "silver"
    assert world.evaluate(T0 + 394 * DAY)["downgraded"] == 1
    assert world.tier() == "member"
    assert world.history() == [("silver", "member"), ("member", "silver")]


def test_grace_defaults_to_one_more_window_after_last_qualifying(world):
    world.earn(1000, T0)
    world.evaluate(T0 + 364 * DAY)  # the last day the earn is in the window: kept until day 364 + 365
    world.evaluate(T0 + 728 * DAY)
    assert world.tier() == "silver"
    world.evaluate(T0 + 729 * DAY)
    assert world.tier() == "member"


def test_a_refund_that_takes_points_back_under_the_threshold_downgrades_after_grace(world, grace):
    order = world.earn(1000, T0)
    ledger.clawback(order, 10, reference="refund", now=T0 + DAY, description="Partial refund")
    db.session.commit()
    world.evaluate(T0 + 2 * DAY)
    assert world.tier() == "silver"  # kept through the grace
    world.evaluate(T0 + 31 * DAY)
    assert world.tier() == "member"


def test_evaluation_never_writes_history_for_a_member_who_stays(world):
    world.evaluate(T0)
    world.evaluate(T0 + DAY)
    assert world.history() == []


def test_summary_shows_the_way_to_the_next_tier(world):
    world.earn(1200, T0)
    summary = world.summary(T0)
    assert summary["tier"] == {"code": "silver", "name": "Silver"}
    assert summary["next_tier"] == {"code": "gold", "name": "Gold", "remaining": 3800, "basis": "points"}
    assert summary["tier_retained_until"] == T0 + 365 * DAY


def test_staff_read_a_members_tier_history(world, staff_client):
    world.earn(1000, T0)
    public_id = db.session.get(members.Member, world.id).public_id
    db.session.commit()
    page = staff_client("support").get(f"/v1/admin/members/{public_id}/tier-history").get_json()
    [change] = page["data"]
    assert (change["from"], change["to"]) == ("member", "silver")
    assert change["reason"] == "Upgraded: 1000 points earned in 365 days; Silver needs 1000"


def test_the_top_tier_has_no_next_tier(world):
    world.earn(5000, T0)
    assert world.summary(T0)["next_tier"] is None


def test_the_tier_multiplier_feeds_the_rules_engine(world, in_app):
    world.earn(5000, T0)
    member = db.session.get(members.Member, world.id)
    context = rules.member_context(member, T0)
    assert (context.tier, context.tier_multiplier) == ("gold", 1.5)
    document = rules.validated({"earn": {"rates": {"usd": "1"}}})
    order = engine.Order(currency="usd", lines=(engine.Line(sku="A", quantity=1, unit_amount=10000),))
    assert engine.evaluate_earn(order, context, document, T0).points == 150


def test_a_higher_threshold_moves_nobody_now_and_says_who_would_move(world, staff_client, app):
    app.config["TIER_GRACE_DAYS"] = 0  # no grace: the next evaluation moves a member who stops qualifying
    world.earn(1000, T0)
    silver = db.session.scalar(select(tiers.Tier).where(tiers.Tier.code == "silver"))
    member = db.session.get(members.Member, world.id)
    db.session.commit()
    response = staff_client("manager").patch(f"/v1/admin/tiers/{silver.public_id}", json={"threshold": 2000})
    app.config.pop("TIER_GRACE_DAYS")
    assert response.status_code == 200
    assert response.get_json()["would_move"] == {"up": 0, "down": 1, "has_more": False, "data": [
        {"member_id": member.public_id, "email": member.email, "from_tier": "silver", "to_tier": "member",
         "direction": "down"}]}
    assert world.tier() == "silver"


def test_an_edit_does_not_count_a_member_inside_their_grace_as_moving_down(world, staff_client):
    world.earn(1000, T0)  # silver, kept a window after T0: inside the grace today
    silver = db.session.scalar(select(tiers.Tier).where(tiers.Tier.code == "silver"))
    db.session.commit()
    response = staff_client("manager").patch(f"/v1/admin/tiers/{silver.public_id}", json={"threshold": 2000})
    assert response.get_json()["would_move"] == {"up": 0, "down": 0, "data": [], "has_more": False}
    assert jobs.evaluate_tiers(now()) == {
        "evaluated": 1, "upgraded": 0, "downgraded": 0}


def _raise_silver_to(threshold: int) -> None:
    db.session.scalar(select(tiers.Tier).where(tiers.Tier.code == "silver")).threshold = threshold
    db.session.flush()


def test_the_preview_waits_for_the_grace_as_the_evaluation_does(world, grace):
    world.earn(1000, T0)  # silver, kept until day 30
    _raise_silver_to(2000)
    assert tiers.preview(T0 + 29 * DAY) == {"up": 0, "down": 0, "data": [], "has_more": False}
    assert world.evaluate(T0 + 29 * DAY)["downgraded"] == 0
    preview = tiers.preview(T0 + 30 * DAY)
    assert (preview["up"], preview["down"]) == (0, 1)
    assert [(m["from_tier"].code, m["to_tier"].code) for m in preview["data"]] == [("silver", "member")]
    assert world.evaluate(T0 + 30 * DAY)["downgraded"] == 1


def test_the_preview_counts_exactly_what_the_evaluation_then_does_and_writes_nothing(world, grace):
    at = T0 + 40 * DAY
    ids = {}
    for name, points, earned_at in [("up", 1200, T0), ("grace", 1000, at - 5 * DAY), ("down", 1000, T0),
                                    ("stays", 6000, T0), ("base", 10, T0)]:
        member = members.enrol(members.NewMember(email=unique_email()), source="test")
        ledger.earn(member.id, points, reference=f"p:{member.id}", description="Order", now=earned_at)
        if name != "up":  # the others were upgraded when they earned; "up" is upgraded by the evaluation
            tiers.upgrade_if_qualified(member, earned_at)
        ids[member.id] = name
    _raise_silver_to(1100)  # "grace" and "down" no longer qualify; "grace" is still inside its grace
    db.session.commit()
    rows_before = db.session.execute(select(MemberTier.member_id, MemberTier.tier_id,
                                            MemberTier.retained_until).order_by(MemberTier.member_id)).all()
    preview = tiers.preview(at)
    assert db.session.execute(select(MemberTier.member_id, MemberTier.tier_id,
                                     MemberTier.retained_until).order_by(MemberTier.member_id)).all() == rows_before
    assert sorted(ids[m["member"].id] for m in preview["data"]) == ["down", "up"]
    counts = tiers.evaluate([*ids, world.id], at)
    assert (preview["up"], preview["down"]) == (counts["upgraded"], counts["downgraded"]) == (1, 1)
    moved = db.session.scalars(select(TierChange.member_id).where(TierChange.at == at)).all()
    assert sorted(moved) == sorted(m["member"].id for m in preview["data"])


def test_the_members_who_would_move_come_a_page_at_a_time(world, staff_client):
    movers = []
    for _ in range(3):
        member = members.enrol(members.NewMember(email=unique_email()), source="test")
        ledger.earn(member.id, 1500, reference=f"m:{member.id}", description="Order", now=T0)
        movers.append(member.public_id)  # not upgraded yet: the evaluation would move them up
    db.session.commit()
    manager = staff_client("manager")
    first = manager.get("/v1/admin/tiers/moves?limit=2").get_json()
    assert (first["up"], first["down"], first["has_more"]) == (3, 0, True)
    assert [m["member_id"] for m in first["data"]] == movers[:2]
    assert {(m["from_tier"], m["to_tier"], m["direction"]) for m in first["data"]} == {("member", "silver", "up")}
    second = manager.get(f"/v1/admin/tiers/moves?limit=2&starting_after={movers[1]}").get_json()
    assert ([m["member_id"] for m in second["data"]], second["has_more"]) == (movers[2:], False)
    assert second["up"] == 3


def test_an_unknown_cursor_is_refused(staff_client):
    response = staff_client("manager").get("/v1/admin/tiers/moves?starting_after=mem_nobody")
    body = assert_problem(response, 422, "validation_error")
    assert body["errors"] == {"starting_after": ["No such id in this list."]}


def test_the_evaluation_job_runs_every_member_in_batches(world, runner, app):
    for _ in range(3):
        member = members.enrol(members.NewMember(email=unique_email()), source="test")
        ledger.earn(member.id, 1500, reference=f"j:{member.id}", description="Order", now=T0)
    db.session.commit()
    result = runner.invoke(args=["loyalty", "jobs", "run", "evaluate-tiers", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "evaluated=4, upgraded=3, downgraded=0" in result.output
    assert db.session.scalar(select(func.count()).select_from(TierChange)) == 3


# --- administration -----------------------------------------------------------------------------

BASE = {"code": "base", "name": "Member", "rank": 0, "threshold": 0, "basis": "points", "window_days": 365}


def test_the_first_tier_must_be_the_base_tier(staff_client):
    manager = staff_client("manager")
    response = manager.post("/v1/admin/tiers", json={**BASE, "code": "silver", "rank": 1, "threshold": 100})
    body = assert_problem(response, 422, "validation_error")
    assert list(body["errors"]) == ["rank"]


def test_a_tier_is_created_with_its_benefits(staff_client):
    manager = staff_client("manager")
    manager.post("/v1/admin/tiers", json=BASE)
    response = manager.post("/v1/admin/tiers", json={
        "code": "gold", "name": "Gold", "rank": 1, "threshold": 500, "basis": "spend", "currency": "usd",
        "window_days": 365, "benefits": {"earn_multiplier": "1.5", "discount_percent": 10,
                                         "early_access_hours": 48, "perks": "Free returns"}})
    assert response.status_code == 201
    body = response.get_json()
    assert body["id"].startswith("tier_")
    assert body["benefits"] == {"earn_multiplier": "1.5", "discount_percent": 10, "early_access_hours": 48,
                                "perks": "Free returns"}
    assert body["would_move"] == {"up": 0, "down": 0, "data": [], "has_more": False}
    assert [t["code"] for t in manager.get("/v1/admin/tiers").get_json()["data"]] == ["base", "gold"]


def test_the_base_tier_has_threshold_zero(staff_client):
    body = assert_problem(staff_client("manager").post("/v1/admin/tiers", json={**BASE, "threshold": 5}),
                          422, "validation_error")
    assert list(body["errors"]) == ["threshold"]


def test_ranks_and_codes_are_unique(staff_client, row_counts):
    manager = staff_client("manager")
    manager.post("/v1/admin/tiers", json=BASE)
    before = row_counts()
    assert_problem(manager.post("/v1/admin/tiers", json={**BASE, "code": "other"}), 409, "conflict")
    assert row_counts() == before


def test_a_spend_tier_needs_a_currency(staff_client):
    manager = staff_client("manager")
    manager.post("/v1/admin/tiers", json=BASE)
    body = assert_problem(manager.post("/v1/admin/tiers", json={**BASE, "code": "s", "rank": 1, "threshold": 9,
                                                                "basis": "spend"}), 422, "validation_error")
    assert list(body["errors"]) == ["currency"]


def test_a_float_multiplier_is_refused(staff_client):
    manager = staff_client("manager")
    manager.post("/v1/admin/tiers", json=BASE)
    response = manager.post("/v1/admin/tiers", json={**BASE, "code": "g", "rank": 1, "threshold": 9,
                                                     "benefits": {"earn_multiplier": 1.5}})
    body = assert_problem(response, 422, "validation_error")
    assert list(body["errors"]) == ["benefits.earn_multiplier"]


def test_a_paid_order_on_a_spend_tier_upgrades_at_once(staff_client, client, make_member, make_api_key):
    manager = staff_client("manager")
    manager.post("/v1/admin/tiers", json=BASE)
    manager.post("/v1/admin/tiers", json={**BASE, "code": "vip", "name": "VIP", "rank": 1, "threshold": 10000,
                                          "basis": "spend", "currency": "usd"})
    member = make_member()
    order = {"order_id": "big-1", "member_id": member["id"], "currency": "usd", "total_amount": 10000,
             "lines": [{"sku": "A", "quantity": 1, "unit_amount": 10000}]}
    client.post("/v1/orders", json=order, headers=bearer(make_api_key("checkout")))
    summary = client.get(f"/v1/members/{member['id']}", headers=bearer(make_api_key("members:read"))).get_json()
    assert summary["tier"] == {"code": "vip", "name": "VIP"}


def test_unknown_tier_is_not_found(staff_client):
    assert_problem(staff_client("manager").get("/v1/admin/tiers/tier_nope"), 404, "not_found")


def test_member_tier_rows_are_created_by_evaluation_only_for_members(world):
    world.evaluate(T0)
    assert db.session.scalar(select(func.count()).select_from(MemberTier)) == 1


def test_concurrent_earn_and_evaluation_leave_one_tier_and_one_history_row(pg):
    """On PostgreSQL: an earn crossing the threshold races the evaluation job, for 12 members at once."""
    with pg.app_context():
        for fields in LADDER:
            tiers.create_tier({**fields, "earn_multiplier": Decimal(fields.get("earn_multiplier", "1"))})
        ids = []
        for _ in range(12):
            member = members.enrol(members.NewMember(email=unique_email()), source="test")
            ledger.earn(member.id, 999, reference=f"c:{member.id}", description="Order", now=T0)
            ids.append(member.id)
        db.session.commit()
    barrier = threading.Barrier(2 * len(ids))

    def earn_one(member_id: int) -> None:
        with pg.app_context():
            barrier.wait()
            ledger.earn(member_id, 1, reference=f"cross:{member_id}", description="Order", now=T0)
            tiers.upgrade_if_qualified(db.session.get(members.Member, member_id), T0)
            db.session.commit()

    def evaluate_one(member_id: int) -> None:
        with pg.app_context():
            barrier.wait()
            tiers.evaluate([member_id], T0)
            db.session.commit()

    with ThreadPoolExecutor(max_workers=2 * len(ids)) as pool:
        futures = [pool.submit(job, m) for m in ids for job in (earn_one, evaluate_one)]
        for future in futures:
            future.result()
    with pg.app_context():
        for member_id in ids:
            assert tiers.current_tier(db.session.get(members.Member, member_id))[0].code == "silver"
            changes = db.session.scalar(select(func.count()).select_from(TierChange)
                                        .where(TierChange.member_id == member_id))
            assert changes == 1


def test_a_tier_change_is_announced_for_the_outbox(world, app):
    announced = []

    def listen(sender, **event):
        announced.append(event)

    tiers.tier_changed.connect(listen)
    try:
        world.earn(1000, T0)
    finally:
        tiers.tier_changed.disconnect(listen)
    [event] = announced
    assert (event["member_id"], event["from_tier"], event["to_tier"], event["at"]) == (world.id, "member", "silver",
                                                                                     T0)
