"""What a checkout request costs, in SQL statements: the figure profiling drove down (see BENCHMARKS.md), and
one that must not grow with a member's history. Counts, not timings: they are the same on every machine."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.tiers import service as tiers
from tests.conftest import bearer, publish_rules
from tests.queries import counting_queries

RULES = {"earn": {"rates": {"usd": "1"}}, "redeem": {"point_values": {"usd": "1"}, "max_share_percent": 100}}


@pytest.fixture(autouse=True)
def program(app):
    with app.app_context():
        publish_rules(RULES, at=now() - timedelta(seconds=1))
        for rank, (code, threshold) in enumerate([("member", 0), ("silver", 500), ("gold", 2000)]):
            tiers.create_tier({"code": code, "name": code.title(), "rank": rank, "threshold": threshold,
                               "basis": "points", "window_days": 365})
        db.session.commit()


@pytest.fixture
def shop(client, make_api_key):
    headers = bearer(make_api_key("members:read", "checkout"))
    # The key's first use writes last_used_at, once an hour: not what is counted.
    assert client.get("/v1/members/mem_nobody", headers=headers).status_code == 404

    class Shop:
        def get(self, path: str):
            return client.get(path, headers=headers)

        def post(self, path: str, body: dict, **extra: str):
            return client.post(path, json=body, headers={**headers, **extra})

    return Shop()


@pytest.fixture
def member_with_earns(make_member, app):
    """A member with `earns` separate earns of 10 points: as many lots and journal transactions."""

    def make(earns: int) -> str:
        member = make_member()
        with app.app_context():
            internal = members.get_member(member["id"]).id
            for n in range(earns):
                ledger.earn(internal, 10, reference=f"seed:{member['id']}:{n}", now=now(),
                            description="Seed")
            db.session.commit()
        return member["id"]

    return make


def _statements(app, request) -> tuple[int, object]:
    with app.app_context(), counting_queries() as statements:
        response = request()
    return len(statements), response


def test_a_member_summary_sends_eight_statements_whatever_the_history(app, shop, member_with_earns):
    short, long = member_with_earns(1), member_with_earns(40)

    counts = [_statements(app, lambda m=m: shop.get(f"/v1/members/{m}")) for m in (short, long)]

    # The key, the member, balances, the tier, the next tier, its qualifying points, the rules in force (is
    # expiry by inactivity?), points expiring soon.
    assert [(count, response.status_code) for count, response in counts] == [(8, 200), (8, 200)]
    assert counts[1][1].get_json()["points"]["available"] == 400


def _hold(shop, member_id: str):
    return shop.post("/v1/redemptions", {"member_id": member_id, "order_id": f"ord-{uuid.uuid4().hex}",
                                         "currency": "usd", "amount": 1000, "points": 10},
                     **{"Idempotency-Key": uuid.uuid4().hex})


def test_a_points_hold_sends_the_same_statements_whatever_the_history(app, shop, member_with_earns):
    _hold(shop, member_with_earns(1))  # the process's first checkout also reads the rules' document, once

    counts = [_statements(app, lambda m=member: _hold(shop, m)) for member in (member_with_earns(1),
                                                                                member_with_earns(40))]

    assert [(count, response.status_code) for count, response in counts] == [(18, 201), (18, 201)]


def test_a_capture_sends_sixteen_statements(app, shop, member_with_earns):
    held = _hold(shop, member_with_earns(3)).get_json()

    count, response = _statements(app, lambda: shop.post(f"/v1/redemptions/{held['id']}/capture", {}))

    # The redemption with its member, the hold, then again under the member's lock, and the hold's journal entry;
    # the member's last activity is written on their available account.
    assert (count, response.status_code, response.get_json()["member_id"]) == (16, 200, held["member_id"])
