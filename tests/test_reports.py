"""Reports: the summary and the liability, checked figure by figure against a program worked out by hand.

The program's calendar is Asia/Shanghai (UTC+8, no daylight saving time), so a local day runs from 16:00 UTC
the day before: a movement at 17:00 UTC belongs to the next local day. The window of the main fixture is two
local days, 9 and 10 March 2026: D1 = [8 March 16:00Z, 9 March 16:00Z), D2 = [9 March 16:00Z, 10 March 16:00Z).
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, Integer, MetaData, Table, event, select, text

from config import load_config
from loyalty.clock import now
from loyalty.db import UTCDateTime
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Account
from loyalty.members import service as members
from loyalty.members.models import Member
from loyalty.offers import service as offers
from loyalty.offers.models import Offer
from loyalty.privacy import service as privacy
from loyalty.reports import csv_files, liability
from loyalty.reports.periods import Bucket, Buckets
from loyalty.tiers import service as tiers
from loyalty.tiers.models import MemberTier, Tier, TierChange
from tests.conftest import assert_problem, bearer, publish_rules, unique_email

SHANGHAI = ZoneInfo("Asia/Shanghai")
SUMMARY = "/v1/admin/reports/summary"
LIABILITY = "/v1/admin/reports/liability"
WINDOW = "from=2026-03-09&to=2026-03-11"
AFTER_ALL = datetime(2026, 3, 11, 0, 0, tzinfo=UTC)  # when the reports are read
LADDER = [("member", "Member", 0, 0), ("silver", "Silver", 1, 100_000), ("gold", "Gold", 2, 200_000)]
RULES = {
    "earn": {"rates": {"usd": "1", "eur": "1"},
             "campaigns": [{"id": "spring", "name": "Spring double", "bonus_points": 50,
                            "starts_at": "2026-03-09T16:00:00+00:00", "ends_at": "2026-04-01T00:00:00+00:00"}]},
    "redeem": {"point_values": {"usd": "1", "eur": "0.5"}},
}


def utc(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


@pytest.fixture
def program(app, client, in_app, stop_clock, make_api_key, monkeypatch):
    """Six members in Shanghai, worked out by hand (times UTC; D1 and D2 the window's local days):

    Ann  enrolled 1 Feb; +500 adjustment 15 Feb; order A1 (usd 2,000: 20 points) at 8 Mar 15:59:59 (local 8 Mar:
         outside). D1: redemption R1 (100 points + coupon WELCOME10, 500 off) at 01:50, order A2 paid with it at
         02:00 (usd 3,000, total 2,400: redeems 100, earns 24, coupon used). D2: A2 refunded 1,200 at 06:00
         (12 clawed back, 50 restored); -70 adjustment at 10:00. Silver since D1 (up from member).
    Bob  enrolled 8 Mar 15:59:59 (local 8 Mar: not new). D2: order B1 at 9 Mar 17:00 (usd 1,000: 10 + 50 spring),
         B2 at 10 Mar 03:00 (eur 4,000: 40 + 50), B1 refunded 500 at 05:00 (30 clawed back). Up to gold at
         9 Mar 20:00, down to silver at 10 Mar 12:00.
    Cat  enrolled 8 Mar 16:00 (local 9 Mar 00:00: new in D1). D1: bonus 40 at 16:30 expiring 9 Mar 12:00, expired
         when settled at 13:00. D2: redemption R2 (coupon only) at 15:50 and order C1 paid at 15:59:59 (usd 5,000,
         total 4,500: 45 + 50). Up to silver on 8 Mar 15:00 (before the window).
    Dan  enrolled 9 Mar 17:00 (local 10 Mar 01:00: new in D2). D2: +300 adjustment at 18:00, reward of 120 at
         10 Mar 01:00. After the window: order D1X at 10 Mar 16:00 (usd 1,000: 60), 40 held at 23:50; down to
         member at 16:00.
    Eve  enrolled 10 Mar 15:00 (new in D2), erased at 15:30; her gold tier row is counted nowhere.
    Fay  enrolled 10 Mar 16:00 (local 11 Mar: after the window); 200 pending from 17:00.
    """
    monkeypatch.setitem(app.config, "PROGRAM_TIMEZONE", "Asia/Shanghai")
    clock = stop_clock(utc("2026-02-01T00:00:00"))
    checkout = bearer(make_api_key("checkout"))
    ids: dict[str, int] = {}
    public: dict[str, str] = {}

    def enrol(name: str, when: str) -> None:
        clock.set(utc(when))
        with in_app():
            member = members.enrol(members.NewMember(email=unique_email(name)), source="test")
            db.session.commit()
            ids[name], public[name] = member.id, member.public_id

    def points(when: str, move) -> None:
        clock.set(utc(when))
        with in_app():
            move(ledger, now())
            db.session.commit()

    def call(when: str, path: str, body: dict) -> dict:
        clock.set(utc(when))
        response = client.post(path, json=body, headers={**checkout, "Idempotency-Key": f"{path}:{when}"})
        assert response.status_code in (200, 201), response.get_data(as_text=True)
        return response.get_json()

    def order(when: str, name: str, order_id: str, currency: str, amount: int, total: int | None = None,
              redemption: str | None = None) -> None:
        call(when, "/v1/orders", {"order_id": order_id, "member_id": public[name], "currency": currency,
                                  "lines": [{"sku": "SKU-1", "quantity": 1, "unit_amount": amount}],
                                  "total_amount": total or amount, "redemption_id": redemption})

    with in_app():
        for code, name, rank, threshold in LADDER:
            tiers.create_tier({"code": code, "name": name, "rank": rank, "threshold": threshold, "basis": "points",
                               "window_days": 365, "earn_multiplier": Decimal(1)})
        offers.create_offer({"name": "Welcome", "kind": "amount_off", "amount": 500, "currency": "usd",
                             "code": "WELCOME10"})
        db.session.commit()
        publish_rules(RULES)
    enrol("ann", "2026-02-01T00:00:00")
    points("2026-02-15T00:00:00", lambda lg, t: lg.adjust(ids["ann"], 500, reason="Welcome", reference="ann-1", now=t))
    enrol("bob", "2026-03-08T15:59:59")
    order("2026-03-08T15:59:59", "ann", "A1", "usd", 2000)
    enrol("cat", "2026-03-08T16:00:00")
    points("2026-03-08T16:30:00", lambda lg, t: lg.earn(ids["cat"], 40, kind="bonus", reference="cat-1",
                                                        description="Bonus", now=t,
                                                        expires_at=utc("2026-03-09T12:00:00")))
    r1 = call("2026-03-09T01:50:00", "/v1/redemptions", {"member_id": public["ann"], "order_id": "A2",
                                                        "currency": "usd", "amount": 3000, "points": 100,
                                                        "coupon_code": "WELCOME10"})
    order("2026-03-09T02:00:00", "ann", "A2", "usd", 3000, total=2400, redemption=r1["id"])
    points("2026-03-09T13:00:00", lambda lg, t: lg.settle(ids["cat"], t))
    enrol("dan", "2026-03-09T17:00:00")
    order("2026-03-09T17:00:00", "bob", "B1", "usd", 1000)
    points("2026-03-09T18:00:00", lambda lg, t: lg.adjust(ids["dan"], 300, reason="Sorry", reference="dan-1", now=t))
    points("2026-03-10T01:00:00", lambda lg, t: lg.spend(ids["dan"], 120, reference="dan-2", description="Mug", now=t))
    order("2026-03-10T03:00:00", "bob", "B2", "eur", 4000)
    call("2026-03-10T05:00:00", "/v1/orders/B1/refunds", {"refund_id": "re_b1", "amount": 500})
    call("2026-03-10T06:00:00", "/v1/orders/A2/refunds", {"refund_id": "re_a2", "amount": 1200})
    points("2026-03-10T10:00:00", lambda lg, t: lg.adjust(ids["ann"], -70, reason="Fix", reference="ann-2", now=t))
    enrol("eve", "2026-03-10T15:00:00")
    r2 = call("2026-03-10T15:50:00", "/v1/redemptions", {"member_id": public["cat"], "order_id": "C1",
                                                        "currency": "usd", "amount": 5000, "coupon_code": "WELCOME10"})
    order("2026-03-10T15:59:59", "cat", "C1", "usd", 5000, total=4500, redemption=r2["id"])
    enrol("fay", "2026-03-10T16:00:00")
    order("2026-03-10T16:00:00", "dan", "D1X", "usd", 1000)
    points("2026-03-10T17:00:00", lambda lg, t: lg.earn(ids["fay"], 200, reference="fay-1", description="Order",
                                                        now=t, pending_until=utc("2026-03-25T00:00:00")))
    points("2026-03-10T23:50:00", lambda lg, t: lg.hold(ids["dan"], 40, reference="dan-3", description="Checkout",
                                                        now=t, expires_at=t + timedelta(minutes=30)))
    with in_app():
        tier_id = {t.code: t.id for t in db.session.scalars(select(Tier))}
        moves = [("ann", "member", "silver", "2026-03-08T16:00:00"), ("bob", "member", "gold", "2026-03-09T20:00:00"),
                 ("bob", "gold", "silver", "2026-03-10T12:00:00"), ("cat", "member", "silver", "2026-03-08T15:00:00"),
                 ("dan", "silver", "member", "2026-03-10T16:00:00")]
        db.session.add_all(TierChange(member_id=ids[name], from_tier_id=tier_id[source],
                                      to_tier_id=tier_id[target], reason="Test", qualifying_amount=0, at=utc(at))
                           for name, source, target, at in moves)
        for name, code in (("ann", "silver"), ("bob", "silver"), ("cat", "silver"), ("dan", "member"), ("eve", "gold")):
            db.session.merge(MemberTier(member_id=ids[name], tier_id=tier_id[code], since=utc("2026-03-10T00:00:00")))
        eve = db.session.get(Member, ids["eve"])
        eve.status, eve.erased_at = "erased", utc("2026-03-10T15:30:00")
        db.session.commit()
    clock.set(AFTER_ALL)
    return public


@pytest.fixture
def analyst(staff_client):
    return staff_client("analyst")


def summary_of(client, query: str = WINDOW) -> dict:
    response = client.get(f"{SUMMARY}?{query}")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


# --- the summary, figure by figure ---------------------------------------------------------------------

def test_the_window_is_local_midnights_in_the_program_time_zone(program, analyst):
    body = summary_of(analyst)
    assert (body["from"], body["to"], body["period"], body["timezone"]) == ("2026-03-09", "2026-03-11", "day",
                                                                            "Asia/Shanghai")
    assert (body["starts_at"], body["ends_at"]) == ("2026-03-08T16:00:00+00:00", "2026-03-10T16:00:00+00:00")


def test_members_total_new_and_active(program, analyst):
    # Total: enrolled before the window's end and not erased: Ann, Bob, Cat, Dan (Eve erased, Fay after).
    # New: Cat, Dan and Eve (erased since, still a signup of the window). Active: Ann, Bob, Cat and Dan.
    assert summary_of(analyst)["members"] == {"total": 4, "new": 3, "active": 4}


def test_points_issued_clawed_back_redeemed_restored_expired_and_adjusted(program, analyst):
    assert summary_of(analyst)["points"] == {
        "issued": 40 + 24 + 60 + 90 + 95,  # Cat's bonus, A2; B1, B2 and C1 with 50 spring points each
        "clawed_back": 30 + 12,  # B1's and A2's refunds
        "redeemed": 100 + 120,  # R1, Dan's reward
        "restored": 50,  # A2's refund
        "expired": 40,  # Cat's bonus
        "adjusted": {"added": 300, "removed": 70, "net": 230},  # Dan's +300, Ann's -70
    }


def test_rates_redemption_breakage_and_repeat_purchase(program, analyst):
    # Net issued 309 - 42 = 267; net redeemed 220 - 50 = 170; 170/267 = 0.63670..., 40/267 = 0.14981...
    # Ann, Bob and Cat ordered; Bob twice.
    assert summary_of(analyst)["rates"] == {"redemption": "0.6367", "breakage": "0.1498", "repeat_purchase": "0.3333"}


def test_orders_and_average_order_value_per_currency(program, analyst):
    assert summary_of(analyst)["orders"] == {
        "orders": 4, "members": 3, "repeat_members": 1,
        "currencies": [{"currency": "eur", "orders": 1, "revenue": 4000, "average_value": 4000},
                       # (2,400 + 1,000 + 4,500) / 3 = 2,633.33...
                       {"currency": "usd", "orders": 3, "revenue": 7900, "average_value": 2633}],
    }


def test_tier_distribution_now_and_movements_in_the_window(program, analyst):
    assert summary_of(analyst)["tiers"] == {
        "distribution": [{"code": "member", "name": "Member", "rank": 0, "members": 2},  # Dan, Fay (no row)
                         {"code": "silver", "name": "Silver", "rank": 1, "members": 3},  # Ann, Bob, Cat
                         {"code": "gold", "name": "Gold", "rank": 2, "members": 0}],  # Eve is erased
        "up": 2, "down": 1,
        "changes": [{"from_tier": "gold", "to_tier": "silver", "changes": 1},
                    {"from_tier": "member", "to_tier": "gold", "changes": 1},
                    {"from_tier": "member", "to_tier": "silver", "changes": 1}],
    }


def test_campaign_attribution_from_the_rules_awards(program, analyst):
    # D1X (after the window) earned spring points too, and is left out.
    assert summary_of(analyst)["campaigns"] == [
        {"campaign": "spring", "name": "Spring double", "points": 150, "members": 2, "orders": 3,
         "revenue": [{"currency": "eur", "amount": 4000}, {"currency": "usd", "amount": 1000 + 4500}]},
    ]


def test_offer_attribution_from_coupon_uses_and_orders(program, analyst):
    [offer] = summary_of(analyst)["offers"]
    assert offer["offer_id"].startswith("off_")
    assert {k: v for k, v in offer.items() if k != "offer_id"} == {
        "name": "Welcome", "coupon_uses": 2, "members": 2, "orders": 2,
        "revenue": [{"currency": "usd", "orders": 2, "revenue": 2400 + 4500, "discount": 1000}],
    }


def test_the_series_has_one_bucket_per_local_day(program, analyst):
    assert summary_of(analyst)["series"] == [
        {"start": "2026-03-09", "end": "2026-03-10", "new_members": 1, "active_members": 2, "orders": 1,
         "points": {"issued": 64, "clawed_back": 0, "redeemed": 100, "restored": 0, "expired": 40,
                    "adjusted": {"added": 0, "removed": 0, "net": 0}}},
        {"start": "2026-03-10", "end": "2026-03-11", "new_members": 2, "active_members": 3, "orders": 3,
         "points": {"issued": 245, "clawed_back": 42, "redeemed": 120, "restored": 50, "expired": 0,
                    "adjusted": {"added": 300, "removed": 70, "net": 230}}},
    ]


def test_in_utc_the_same_movements_fall_on_other_days(program, analyst, app, monkeypatch):
    monkeypatch.setitem(app.config, "PROGRAM_TIMEZONE", "UTC")
    body = summary_of(analyst, "from=2026-03-08&to=2026-03-11")
    # UTC 8 March: A1 (20) and Cat's bonus (40); 9 March: A2 (24) and B1 (60); 10 March: B2, C1, D1X and Fay's.
    assert [bucket["points"]["issued"] for bucket in body["series"]] == [60, 84, 90 + 95 + 60 + 200]
    assert [bucket["new_members"] for bucket in body["series"]] == [2, 1, 2]  # Bob, Cat; Dan; Eve, Fay


def test_weeks_start_on_monday_and_are_clipped_to_the_window(program, analyst):
    body = summary_of(analyst, "from=2026-03-01&to=2026-03-20&period=week")
    assert [(b["start"], b["end"]) for b in body["series"]] == [
        ("2026-03-01", "2026-03-02"), ("2026-03-02", "2026-03-09"), ("2026-03-09", "2026-03-16"),
        ("2026-03-16", "2026-03-20")]
    # A1 at 23:59:59 local on Sunday 8 March is the second week's; D1X and Fay's 200 are the third's.
    assert [b["points"]["issued"] for b in body["series"]] == [0, 20, 309 + 60 + 200, 0]
    assert [b["active_members"] for b in body["series"]] == [0, 1, 5, 0]  # Ann; Ann, Bob, Cat, Dan and Fay


def test_months_are_calendar_months(program, analyst):
    body = summary_of(analyst, "from=2026-02-01&to=2026-04-01&period=month")
    assert [(b["start"], b["end"]) for b in body["series"]] == [("2026-02-01", "2026-03-01"),
                                                                 ("2026-03-01", "2026-04-01")]
    assert [b["new_members"] for b in body["series"]] == [1, 5]
    assert [b["points"]["adjusted"]["added"] for b in body["series"]] == [500, 300]
    assert body["members"]["new"] == 6


def test_an_empty_window_has_zeros_and_no_rates(program, analyst):
    body = summary_of(analyst, "from=2025-01-01&to=2025-01-03")
    assert body["members"] == {"total": 0, "new": 0, "active": 0}
    assert body["rates"] == {"redemption": None, "breakage": None, "repeat_purchase": None}
    assert body["orders"] == {"orders": 0, "members": 0, "repeat_members": 0, "currencies": []}
    assert (body["campaigns"], body["offers"], body["tiers"]["up"], body["tiers"]["down"]) == ([], [], 0, 0)
    assert [b["points"]["issued"] for b in body["series"]] == [0, 0]


def test_the_default_window_is_the_last_thirty_local_days(program, analyst, stop_clock):
    stop_clock(utc("2026-03-10T17:00:00"))  # already 11 March in Shanghai
    body = summary_of(analyst, "")
    assert (body["from"], body["to"], len(body["series"])) == ("2026-02-10", "2026-03-12", 30)


def test_from_alone_covers_thirty_days(program, analyst):
    body = summary_of(analyst, "from=2026-03-01")
    assert (body["from"], body["to"]) == ("2026-03-01", "2026-03-31")


def test_erasing_a_member_later_leaves_the_window_s_figures_as_they_were(program, analyst, in_app):
    before = summary_of(analyst)
    with in_app():
        privacy.erase(db.session.scalar(select(Member).where(Member.public_id == program["cat"])), AFTER_ALL, "staff")
        db.session.commit()
    after = summary_of(analyst)
    assert {key: value for key, value in after.items() if key != "tiers"} == \
        {key: value for key, value in before.items() if key != "tiers"}
    # Only what is counted as of now changes: Cat is no longer in a tier, and her 95 points are forfeited.
    assert [t["members"] for t in after["tiers"]["distribution"]] == [2, 2, 0]
    body = analyst.get(LIABILITY).get_json()
    assert (body["points"]["available"], body["members_holding_points"]) == (827 - 95, 4)
    assert summary_of(analyst, "from=2026-03-11&to=2026-03-12")["points"]["expired"] == 95


# --- the liability -----------------------------------------------------------------------------------------

def test_liability_in_points_and_in_money_at_the_current_redemption_value(program, analyst):
    response = analyst.get(LIABILITY)
    assert response.status_code == 200, response.get_data(as_text=True)
    # Available: Ann 500 + 20 - 100 + 24 - 12 + 50 - 70 = 412, Bob 120, Cat 95, Dan 300 - 120 + 60 - 40 = 200.
    assert response.get_json() == {
        "as_of": "2026-03-11T00:00:00+00:00",
        "points": {"available": 827, "pending": 200, "held": 40, "outstanding": 1067},
        "members_holding_points": 5,
        "members_holding": {"available": 4, "pending": 1, "held": 1},  # Ann, Bob, Cat, Dan; Fay; Dan
        "rule_version": 1,
        "money": [{"currency": "eur", "value_per_point": "0.5", "available": 413, "pending": 100, "held": 20,
                   "outstanding": 533},
                  {"currency": "usd", "value_per_point": "1", "available": 827, "pending": 200, "held": 40,
                   "outstanding": 1067}],
    }


def test_liability_without_rules_has_no_money_value(analyst, make_member, in_app):
    member = make_member()
    with in_app():
        ledger.adjust(db.session.scalar(select(Member.id).where(Member.public_id == member["id"])), 25,
                      reason="Gift", reference="gift-1", now=now())
        db.session.commit()
    body = analyst.get(LIABILITY).get_json()
    assert (body["points"], body["members_holding_points"], body["rule_version"], body["money"]) == (
        {"available": 25, "pending": 0, "held": 0, "outstanding": 25}, 1, None, [])
    assert body["members_holding"] == {"available": 1, "pending": 0, "held": 0}


# --- CSV -------------------------------------------------------------------------------------------------

SUMMARY_CSV = """\
scope,start,end,figure,key,currency,value
total,2026-03-09,2026-03-11,members.total,,,4
total,2026-03-09,2026-03-11,members.new,,,3
total,2026-03-09,2026-03-11,members.active,,,4
total,2026-03-09,2026-03-11,points.issued,,,309
total,2026-03-09,2026-03-11,points.clawed_back,,,42
total,2026-03-09,2026-03-11,points.redeemed,,,220
total,2026-03-09,2026-03-11,points.restored,,,50
total,2026-03-09,2026-03-11,points.expired,,,40
total,2026-03-09,2026-03-11,points.adjusted_added,,,300
total,2026-03-09,2026-03-11,points.adjusted_removed,,,70
total,2026-03-09,2026-03-11,points.adjusted_net,,,230
total,2026-03-09,2026-03-11,rates.redemption,,,0.6367
total,2026-03-09,2026-03-11,rates.breakage,,,0.1498
total,2026-03-09,2026-03-11,rates.repeat_purchase,,,0.3333
total,2026-03-09,2026-03-11,orders.orders,,,4
total,2026-03-09,2026-03-11,orders.members,,,3
total,2026-03-09,2026-03-11,orders.repeat_members,,,1
total,2026-03-09,2026-03-11,orders.orders,,eur,1
total,2026-03-09,2026-03-11,orders.revenue,,eur,4000
total,2026-03-09,2026-03-11,orders.average_value,,eur,4000
total,2026-03-09,2026-03-11,orders.orders,,usd,3
total,2026-03-09,2026-03-11,orders.revenue,,usd,7900
total,2026-03-09,2026-03-11,orders.average_value,,usd,2633
now,,,tiers.members,member,,2
now,,,tiers.members,silver,,3
now,,,tiers.members,gold,,0
total,2026-03-09,2026-03-11,tiers.up,,,2
total,2026-03-09,2026-03-11,tiers.down,,,1
total,2026-03-09,2026-03-11,tiers.changes,gold->silver,,1
total,2026-03-09,2026-03-11,tiers.changes,member->gold,,1
total,2026-03-09,2026-03-11,tiers.changes,member->silver,,1
total,2026-03-09,2026-03-11,campaigns.points,spring,,150
total,2026-03-09,2026-03-11,campaigns.members,spring,,2
total,2026-03-09,2026-03-11,campaigns.orders,spring,,3
total,2026-03-09,2026-03-11,campaigns.revenue,spring,eur,4000
total,2026-03-09,2026-03-11,campaigns.revenue,spring,usd,5500
total,2026-03-09,2026-03-11,offers.coupon_uses,{offer},,2
total,2026-03-09,2026-03-11,offers.members,{offer},,2
total,2026-03-09,2026-03-11,offers.orders,{offer},,2
total,2026-03-09,2026-03-11,offers.orders,{offer},usd,2
total,2026-03-09,2026-03-11,offers.revenue,{offer},usd,6900
total,2026-03-09,2026-03-11,offers.discount,{offer},usd,1000
day,2026-03-09,2026-03-10,members.new,,,1
day,2026-03-09,2026-03-10,members.active,,,2
day,2026-03-09,2026-03-10,orders.orders,,,1
day,2026-03-09,2026-03-10,points.issued,,,64
day,2026-03-09,2026-03-10,points.clawed_back,,,0
day,2026-03-09,2026-03-10,points.redeemed,,,100
day,2026-03-09,2026-03-10,points.restored,,,0
day,2026-03-09,2026-03-10,points.expired,,,40
day,2026-03-09,2026-03-10,points.adjusted_added,,,0
day,2026-03-09,2026-03-10,points.adjusted_removed,,,0
day,2026-03-09,2026-03-10,points.adjusted_net,,,0
day,2026-03-10,2026-03-11,members.new,,,2
day,2026-03-10,2026-03-11,members.active,,,3
day,2026-03-10,2026-03-11,orders.orders,,,3
day,2026-03-10,2026-03-11,points.issued,,,245
day,2026-03-10,2026-03-11,points.clawed_back,,,42
day,2026-03-10,2026-03-11,points.redeemed,,,120
day,2026-03-10,2026-03-11,points.restored,,,50
day,2026-03-10,2026-03-11,points.expired,,,0
day,2026-03-10,2026-03-11,points.adjusted_added,,,300
day,2026-03-10,2026-03-11,points.adjusted_removed,,,70
day,2026-03-10,2026-03-11,points.adjusted_net,,,230
"""

LIABILITY_CSV = """\
as_of,figure,currency,value
2026-03-11T00:00:00+00:00,points.available,,827
2026-03-11T00:00:00+00:00,points.pending,,200
2026-03-11T00:00:00+00:00,points.held,,40
2026-03-11T00:00:00+00:00,points.outstanding,,1067
2026-03-11T00:00:00+00:00,members_holding_points,,5
2026-03-11T00:00:00+00:00,members_holding.available,,4
2026-03-11T00:00:00+00:00,members_holding.pending,,1
2026-03-11T00:00:00+00:00,members_holding.held,,1
2026-03-11T00:00:00+00:00,rule_version,,1
2026-03-11T00:00:00+00:00,money.value_per_point,eur,0.5
2026-03-11T00:00:00+00:00,money.available,eur,413
2026-03-11T00:00:00+00:00,money.pending,eur,100
2026-03-11T00:00:00+00:00,money.held,eur,20
2026-03-11T00:00:00+00:00,money.outstanding,eur,533
2026-03-11T00:00:00+00:00,money.value_per_point,usd,1
2026-03-11T00:00:00+00:00,money.available,usd,827
2026-03-11T00:00:00+00:00,money.pending,usd,200
2026-03-11T00:00:00+00:00,money.held,usd,40
2026-03-11T00:00:00+00:00,money.outstanding,usd,1067
"""


def _welcome_offer(in_app) -> str:
    with in_app():
        return db.session.get(Offer, offers.find_code("WELCOME10").offer_id).public_id


def _csv_of(response) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_data(as_text=True).replace("\r\n", "\n")


@pytest.mark.parametrize("how", [{"query": "&format=csv"}, {"headers": {"Accept": "text/csv"}}],
                         ids=["format=csv", "Accept: text/csv"])
def test_the_summary_as_csv(program, analyst, how, in_app):
    response = analyst.get(f"{SUMMARY}?{WINDOW}{how.get('query', '')}", headers=how.get("headers"))
    assert _csv_of(response) == SUMMARY_CSV.replace("{offer}", _welcome_offer(in_app))
    assert response.headers["Content-Disposition"] == \
        'attachment; filename="loyalty-summary_2026-03-09_2026-03-11_day.csv"'


def test_the_liability_as_csv(program, analyst):
    response = analyst.get(f"{LIABILITY}?format=csv")
    assert _csv_of(response) == LIABILITY_CSV
    assert response.headers["Content-Disposition"] == 'attachment; filename="loyalty-liability_20260311T000000Z.csv"'


def test_format_json_wins_over_accept_and_json_is_the_default(program, analyst):
    assert analyst.get(f"{LIABILITY}?format=json", headers={"Accept": "text/csv"}).mimetype == "application/json"
    response = analyst.get(LIABILITY, headers={"Accept": "*/*"})
    assert response.mimetype == "application/json"
    assert "Accept" in response.headers["Vary"].replace(" ", "").split(",")


def test_csv_text_a_spreadsheet_would_run_is_quoted_and_numbers_are_left_alone():
    assert csv_files.csv_text([("=1+1", "@SUM(A1)", "+x", "-x", -5, "-0.25", "0.5", None, True)]) == \
        "'=1+1,'@SUM(A1),'+x,'-x,-5,-0.25,0.5,,1\r\n"


# --- who may read reports ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", [SUMMARY, LIABILITY])
@pytest.mark.parametrize("role", ["analyst", "admin"])
def test_analysts_and_admins_read_reports(staff_client, path, role):
    assert staff_client(role).get(path).status_code == 200


@pytest.mark.parametrize("path", [SUMMARY, LIABILITY])
def test_an_api_key_with_scope_admin_reads_reports(client, make_api_key, path):
    assert client.get(path, headers=bearer(make_api_key("admin"))).status_code == 200


@pytest.mark.parametrize("path", [SUMMARY, LIABILITY])
@pytest.mark.parametrize("role", ["support", "manager"])
def test_other_staff_roles_are_403(staff_client, path, role):
    assert_problem(staff_client(role).get(path), 403, "forbidden")


@pytest.mark.parametrize("path", [SUMMARY, LIABILITY])
def test_members_and_keys_without_scope_admin_are_403(client, member_client, make_api_key, path):
    assert_problem(member_client()[0].get(path), 403, "forbidden")
    for scope in ("members:read", "members:write", "checkout"):
        assert_problem(client.get(path, headers=bearer(make_api_key(scope))), 403, "forbidden")


def test_anonymous_callers_are_401(client):
    assert_problem(client.get(f"{SUMMARY}?format=csv"), 401, "unauthenticated")
    assert_problem(client.get(LIABILITY, headers={"Accept": "text/csv"}), 401, "unauthenticated")


# --- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("query", "field_name"), [
    pytest.param("from=2026-3-1", "from", id="from not zero-padded"),
    pytest.param("from=20260301", "from", id="from without dashes"),
    pytest.param("from=2026-W10-1", "from", id="from as an ISO week"),
    pytest.param("to=yesterday", "to", id="to not a date"),
    pytest.param("to=2026-02-30", "to", id="to not a real day"),
    pytest.param("from=", "from", id="from empty"),
    pytest.param("from=2026-03-01%00", "from", id="from with a NUL"),
    pytest.param("from=" + "9" * 10_000, "from", id="from of 10000 characters"),
    pytest.param("from=2026-03-10&to=2026-03-01", "to", id="to before from"),
    pytest.param("from=2026-03-10&to=2026-03-10", "to", id="to equal to from"),
    pytest.param("from=2025-01-01&to=2026-01-03", "to", id="367 days"),
    pytest.param("from=1999-12-31", "from", id="from before 2000"),
    pytest.param("to=2101-01-01", "to", id="to after 2100"),
    pytest.param("period=year", "period", id="unknown period"),
    pytest.param("period=", "period", id="period empty"),
    pytest.param("format=xml", "format", id="unknown format"),
    pytest.param("colour=blue", "colour", id="unknown parameter"),
])
def test_a_bad_summary_query_is_422_naming_the_parameter(analyst, row_counts, query, field_name):
    before = row_counts()
    problem = assert_problem(analyst.get(f"{SUMMARY}?{query}"), 422, "validation_error")
    assert set(problem["errors"]) == {field_name}
    assert row_counts() == before


def test_a_whole_leap_year_is_allowed(analyst):
    body = summary_of(analyst, "from=2028-01-01&to=2029-01-01&period=month")
    assert len(body["series"]) == 12
    assert len(summary_of(analyst, "from=2028-01-01&to=2029-01-01")["series"]) == 366


@pytest.mark.parametrize(("query", "field_name"), [("format=pdf", "format"), ("from=2026-03-01", "from")])
def test_a_bad_liability_query_is_422(analyst, query, field_name):
    problem = assert_problem(analyst.get(f"{LIABILITY}?{query}"), 422, "validation_error")
    assert set(problem["errors"]) == {field_name}


# --- the console page ----------------------------------------------------------------------------------

def _stat(html: str, label: str) -> str:
    match = re.search(rf'<span class="label">{re.escape(label)}[^<]*</span>\s*<span class="value">([^<]*)</span>', html)
    assert match, f"no stat {label!r}"
    return match.group(1)


def _chart_row(html: str, label: str) -> list[str]:
    match = re.search(rf'<tr><th scope="row">{re.escape(label)}</th>((?:<td class="num">[^<]*</td>)+)</tr>', html)
    assert match, f"no chart row {label!r}"
    return re.findall(r'<td class="num">([^<]*)</td>', match.group(1))


@pytest.mark.parametrize("role", ["admin", "manager", "support", "analyst"])
def test_every_staff_role_reads_the_reports_page(program, console_client, role):
    response = console_client(role).get(f"/console/reports?{WINDOW}")
    assert response.status_code == 200, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    assert (_stat(html, "Members at the end"), _stat(html, "New members"), _stat(html, "Active members")) == (
        "4", "3", "4")
    assert (_stat(html, "Issued"), _stat(html, "Redeemed"), _stat(html, "Expired")) == ("309", "220", "40")
    assert (_stat(html, "Redemption rate"), _stat(html, "Breakage")) == ("0.6367", "0.1498")
    members_section, points_section = html.split('id="points-heading"')
    assert _chart_row(members_section, "2026-03-10") == ["2", "3", "3"]  # new, active, orders on D2
    assert _chart_row(points_section, "2026-03-10") == ["245", "120", "0"]  # issued, redeemed, expired on D2
    assert _stat(html, "Outstanding points") == "1,067"
    assert 'href="/console/reports"' in html  # in the navigation


def test_the_page_links_csv_files_of_what_it_shows(program, console_client, in_app):
    client = console_client("support")
    html = client.get(f"/console/reports?{WINDOW}").get_data(as_text=True)
    link = re.search(r'href="(/console/reports/summary\.csv\?[^"]+)"', html).group(1).replace("&amp;", "&")
    assert _csv_of(client.get(link)) == SUMMARY_CSV.replace("{offer}", _welcome_offer(in_app))
    assert _csv_of(client.get("/console/reports/liability.csv")) == LIABILITY_CSV


def test_a_bad_period_shows_the_form_again_with_422(program, console_client):
    response = console_client("analyst").get("/console/reports?from=2026-03-10&to=2026-03-01&period=year")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert 'role="alert"' in html and 'id="period-error"' in html
    assert _stat(html, "Outstanding points") == "1,067"  # the liability does not depend on the period


def test_an_anonymous_visitor_is_sent_to_sign_in(client):
    for path in ("/console/reports", "/console/reports/summary.csv", "/console/reports/liability.csv"):
        response = client.get(path)
        assert response.status_code == 302 and "/console/login" in response.headers["Location"]


# --- periods and the program's time zone --------------------------------------------------------------------

def test_day_buckets_follow_daylight_saving_time():
    paris = ZoneInfo("Europe/Paris")  # clocks go forward at 02:00 on 29 March 2026
    buckets = Buckets.calendar(date(2026, 3, 28), date(2026, 3, 31), "day", paris)
    assert [(b.starts_at, b.ends_at) for b in buckets.items] == [
        (utc("2026-03-27T23:00:00"), utc("2026-03-28T23:00:00")),
        (utc("2026-03-28T23:00:00"), utc("2026-03-29T22:00:00")),  # a day of 23 hours
        (utc("2026-03-29T22:00:00"), utc("2026-03-30T22:00:00")),
    ]


def test_month_buckets_cross_the_year_and_clip_to_the_window():
    buckets = Buckets.calendar(date(2026, 11, 15), date(2027, 2, 10), "month", SHANGHAI)
    assert [(b.start, b.end) for b in buckets.items] == [
        (date(2026, 11, 15), date(2026, 12, 1)), (date(2026, 12, 1), date(2027, 1, 1)),
        (date(2027, 1, 1), date(2027, 2, 1)), (date(2027, 2, 1), date(2027, 2, 10))]
    assert buckets.items[0] == Bucket(date(2026, 11, 15), date(2026, 12, 1), utc("2026-11-14T16:00:00"),
                                      utc("2026-11-30T16:00:00"))


@pytest.mark.parametrize("count", [1, 2, 3, 7, 31, 366])
def test_the_database_puts_every_moment_of_the_window_in_its_own_bucket(in_app, count):
    """The bucket CASE, evaluated by the database, at both ends of every bucket."""
    buckets = Buckets.calendar(date(2028, 1, 1), date(2028, 1, 1) + timedelta(days=count), "day", SHANGHAI)
    moments = [moment for b in buckets.items for moment in (b.starts_at, b.ends_at - timedelta(microseconds=1))]
    table = Table("report_moments", MetaData(), Column("n", Integer), Column("at", UTCDateTime),
                  prefixes=["TEMPORARY"])
    with in_app():
        connection = db.session.connection()
        table.create(connection)
        connection.execute(table.insert(), [{"n": n, "at": at} for n, at in enumerate(moments)])
        answered = list(db.session.scalars(select(buckets.index(table.c.at)).select_from(table).order_by(table.c.n)))
        db.session.rollback()
    assert answered == [i // 2 for i in range(2 * count)]


@pytest.mark.parametrize("name", ["Mars/Olympus", "../../etc/passwd", "", 8])
def test_an_unknown_program_time_zone_is_refused_at_startup(name, environ):
    environ(LOYALTY_PROGRAM_TIMEZONE=json.dumps(name) if isinstance(name, int) else name)
    with pytest.raises(RuntimeError, match="LOYALTY_PROGRAM_TIMEZONE"):
        load_config("testing")


def test_the_program_time_zone_is_utc_by_default_and_read_from_the_environment(environ):
    environ()
    assert load_config("testing")["PROGRAM_TIMEZONE"] == "UTC"
    environ(LOYALTY_PROGRAM_TIMEZONE="Asia/Shanghai")
    assert load_config("testing")["PROGRAM_TIMEZONE"] == "Asia/Shanghai"


# --- the liability's plan on PostgreSQL at 1,000,000 members ---------------------------------------------------

MILLION = 1_000_000
INDEX = "ix_ledger_accounts_kind_balance_member_id"
# Zero-padded ids keep the unique text indexes appending, which makes the load quicker.
MEMBERS = ("INSERT INTO members (id, public_id, status, referral_code, session_key, created_at, updated_at) "
           "SELECT g, 'mem_r' || lpad(g::text, 7, '0'), 'active', 'R' || lpad(g::text, 7, '0'), md5(g::text), now(), "
           "now() FROM generate_series(1, :n) AS g")
# Members divisible by 3 hold nothing; the others 100 available and 10 pending (issued: -110).
ACCOUNTS = ("INSERT INTO ledger_accounts (id, member_id, kind, balance) "
            "SELECT (m - 1) * 7 + k, m, "
            "       (ARRAY['available', 'pending', 'held', 'issued', 'redeemed', 'expired', 'adjusted'])[k], "
            "       CASE WHEN m % 3 = 0 THEN 0 WHEN k = 1 THEN 100 WHEN k = 2 THEN 10 WHEN k = 4 THEN -110 ELSE 0 END "
            "FROM generate_series(1, :n) AS m, generate_series(1, 7) AS k")


def _plan_nodes(plan: dict) -> list[dict]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


@pytest.mark.slow
def test_the_liability_is_read_from_an_index_at_a_million_members(pg):
    """A million members and their seven accounts, bulk-inserted; two in three hold points. The index is
    built after the load, as the migration builds it on a live table; VACUUM sets the visibility map, without
    which an index-only scan would still visit the table. The queries the service sends are recorded and
    explained as sent, parameters included. The rows go by TRUNCATE, not the fixture's row-by-row DELETE."""
    started = time.perf_counter()
    [index] = [i for i in Account.__table__.indexes if i.name == INDEX]
    with pg.app_context():
        try:
            with db.engine.begin() as connection:
                connection.exec_driver_sql("SET LOCAL session_replication_role = replica")  # no FK triggers
                connection.exec_driver_sql("SET LOCAL synchronous_commit = off")
                connection.execute(text(MEMBERS), {"n": MILLION})
                index.drop(connection)
                connection.execute(text(ACCOUNTS), {"n": MILLION})
                index.create(connection)
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                connection.exec_driver_sql("VACUUM (ANALYZE) members, ledger_accounts")
            loaded = time.perf_counter() - started
            sent: list[tuple[str, object]] = []

            def record(conn, cursor, statement, parameters, context, executemany) -> None:
                sent.append((statement, parameters))

            event.listen(db.engine, "before_cursor_execute", record)
            try:
                timed = time.perf_counter()
                figures = liability.liability(now())
                elapsed = time.perf_counter() - timed
            finally:
                event.remove(db.engine, "before_cursor_execute", record)
            plans = [db.session.connection().exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters)
                     .scalar() for statement, parameters in sent if "ledger_accounts" in statement]
            db.session.rollback()
        finally:
            with db.engine.begin() as connection:
                connection.exec_driver_sql("TRUNCATE members, ledger_accounts CASCADE")
                index.create(connection, checkfirst=True)  # back, should the test have stopped without it
    holders = MILLION - MILLION // 3
    assert figures["points"] == {"available": 100 * holders, "pending": 10 * holders, "held": 0,
                                 "outstanding": 110 * holders}
    assert (figures["members_holding_points"], figures["members_holding"]) == (
        holders, {"available": holders, "pending": holders, "held": 0})
    assert len(plans) == 2  # the balances and holders by kind; the members holding any
    for plan in plans:
        scans = [node for node in _plan_nodes(plan[0]["Plan"]) if node.get("Relation Name") == "ledger_accounts"]
        assert {(node["Node Type"], node.get("Index Name")) for node in scans} == {("Index Only Scan", INDEX)}, \
            json.dumps(plan, indent=1)
    print(f"\nliability at {MILLION:,} members: {elapsed * 1000:.0f} ms "
          f"(bulk load, index build and VACUUM ANALYZE: {loaded:.1f} s)")
