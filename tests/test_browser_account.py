"""A member on a phone, in a real browser: signs in, sees their points, claims a reward, finds the coupon."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.tiers import service as tiers
from tests.browser import look
from tests.conftest import PASSWORD


@pytest.fixture
def member(in_app, make_member) -> dict:
    """Member and Gold tiers, a 10%-off reward for 500 points, and a member given 1,200 points (a gift,
    which does not count towards a tier)."""
    member = make_member(name="Ada Lovelace")
    with in_app():
        for code, name, rank, threshold in (("member", "Member", 0, 0), ("gold", "Gold", 1, 2000)):
            tiers.create_tier({"code": code, "name": name, "rank": rank, "threshold": threshold, "basis": "points",
                               "window_days": 365, "earn_multiplier": Decimal(1)})
        offer = offers.create_offer({"name": "Ten percent", "kind": "percent_off", "percent": 10})
        catalog.create_reward({"offer_id": offer.public_id, "name": "10% off your next order", "points_cost": 500})
        internal = members.get_member(member["id"]).id
        ledger.adjust(internal, 1200, reason="Welcome gift", reference="gift:browser", now=now())
        db.session.commit()
    return member


def test_a_member_on_a_phone_claims_a_reward_and_finds_the_coupon(phone, member, in_app):
    phone.goto("/account/")
    look(phone, "account-login-phone")
    phone.get_by_label("Email").fill(member["email"])
    phone.get_by_label("Password").fill(PASSWORD)
    phone.get_by_role("button", name="Sign in").click()

    phone.wait_for_url("**/account/")
    assert "1,200" in phone.locator(".points-big").inner_text()
    assert "2,000 more points to Gold" in phone.locator("main").inner_text()
    look(phone, "account-home-phone")

    phone.get_by_role("link", name="Rewards", exact=True).click()
    look(phone, "account-rewards-phone")
    phone.get_by_role("button", name=re.compile("Claim 10% off your next order")).click()

    phone.wait_for_url("**/account/coupons")
    notice = phone.get_by_role("status").first.inner_text()
    code = re.search(r"your code is (\S+?)\.?$", notice).group(1)
    assert code in phone.locator("main").inner_text()
    look(phone, "account-coupons-phone")
    with in_app():
        assert ledger.balances(members.get_member(member["id"]).id).available == 700

    phone.get_by_role("link", name="History", exact=True).click()
    assert "Welcome gift" in phone.locator("main").inner_text()
    look(phone, "account-history-phone")
