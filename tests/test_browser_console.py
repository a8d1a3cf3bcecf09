"""Staff at work in a real browser: a manager shapes the program, support looks after a member."""

from __future__ import annotations

import json
import re

from sqlalchemy import select

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.offers.models import Offer
from loyalty.rules import service as rules
from loyalty.tiers import service as tiers
from tests.browser import look
from tests.conftest import PASSWORD, publish_rules

ONE_POINT_A_DOLLAR = {"earn": {"rates": {"usd": "1"}, "pending_days": 14}}
TWO_POINTS_A_DOLLAR = {"earn": {"rates": {"usd": "2"}, "pending_days": 14}}


def sign_in(page, email: str) -> None:
    page.goto("/console/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/")


def flash(page) -> str:
    return page.get_by_role("status").first.inner_text()


def test_a_manager_adds_a_tier_and_an_offer_then_simulates_and_publishes_new_rules(desktop, make_staff, in_app):
    with in_app():
        publish_rules(ONE_POINT_A_DOLLAR)
        tiers.create_tier({"code": "member", "name": "Member", "rank": 0, "threshold": 0, "basis": "points",
                           "window_days": 365})
        db.session.commit()
    sign_in(desktop, make_staff("manager")["email"])
    look(desktop, "manager-dashboard")

    desktop.get_by_role("link", name="Tiers", exact=True).click()
    desktop.get_by_role("link", name="Add a tier").click()
    desktop.get_by_label("Code").fill("gold")
    desktop.get_by_label("Name").fill("Gold")
    desktop.get_by_label("Rank").fill("1")
    desktop.get_by_label("Threshold").fill("2000")
    look(desktop, "manager-tier-form")
    desktop.get_by_role("button", name="Add tier").click()
    desktop.wait_for_url("**/console/tiers/moves")  # who the new tier would move, before the list
    look(desktop, "manager-tier-moves")
    desktop.get_by_role("link", name="Tiers", exact=True).click()
    assert "Gold" in desktop.locator("main table").inner_text()
    look(desktop, "manager-tiers")

    desktop.get_by_role("link", name="Offers", exact=True).click()
    desktop.get_by_role("link", name="New offer").click()
    desktop.get_by_label("Name").fill("Gold weekend")
    desktop.get_by_label("Kind").select_option("percent_off")
    desktop.get_by_label("Percent off").fill("20")
    desktop.get_by_role("checkbox", name="Gold").first.check()
    desktop.get_by_label("Public code (optional)").fill("GOLD20")
    desktop.get_by_role("button", name=re.compile("offer", re.I)).last.click()
    desktop.wait_for_url(re.compile(r"/console/offers/off_"))
    look(desktop, "manager-offer")
    with in_app():
        offer = db.session.scalar(select(Offer).where(Offer.name == "Gold weekend"))
        assert (offer.kind, offer.percent, offer.eligible_tiers) == ("percent_off", 20, ["gold"])

    desktop.get_by_role("link", name="Rules", exact=True).click()
    desktop.get_by_role("link", name="New draft").click()
    desktop.get_by_label(re.compile("Rules document")).fill(json.dumps(TWO_POINTS_A_DOLLAR, indent=2))
    desktop.get_by_label("Note").fill("Double points for the holidays")
    look(desktop, "manager-rules-draft")
    desktop.get_by_role("button", name="Create draft").click()
    desktop.wait_for_url(re.compile(r"/console/rules/2$"))

    desktop.locator('[name="order.currency"]').fill("usd")
    desktop.locator('[name="order.lines.0.sku"]').fill("TEE")
    desktop.locator('[name="order.lines.0.quantity"]').fill("1")
    desktop.locator('[name="order.lines.0.unit_amount"]').fill("4200")
    desktop.get_by_role("button", name="Simulate").click()
    assert "It would earn 84 points" in desktop.locator("main").inner_text()
    look(desktop, "manager-rules-simulated")

    desktop.get_by_role("button", name="Publish version 2").click()
    assert "Version 2 is published" in flash(desktop)
    look(desktop, "manager-rules-published")
    with in_app():
        assert rules.in_force(now()).version == 2
        assert [tier.code for tier in tiers.all_tiers()] == ["member", "gold"]


def test_support_finds_a_member_and_adjusts_their_points(desktop, make_staff, make_member, in_app):
    member = make_member(name="Grace Hopper")
    sign_in(desktop, make_staff("support")["email"])

    desktop.get_by_role("link", name="Members", exact=True).click()
    desktop.get_by_label("Find a member").fill("grace")
    desktop.get_by_role("button", name="Search").click()
    look(desktop, "support-member-search")
    desktop.get_by_role("link", name=member["id"]).or_(desktop.get_by_role("link", name="Grace Hopper")).first.click()
    desktop.wait_for_url(f"**/console/members/{member['id']}")

    desktop.get_by_role("spinbutton", name="Points").fill("250")
    desktop.get_by_label("Reason").fill("Goodwill for a late parcel")
    desktop.get_by_role("button", name="Adjust points").click()
    assert flash(desktop) == "+250 points adjusted. Available now: 250."
    assert "Goodwill for a late parcel" in desktop.locator("main").inner_text()
    look(desktop, "support-member-adjusted")
    with in_app():
        assert ledger.balances(members.get_member(member["id"]).id).available == 250
