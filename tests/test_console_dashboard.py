"""The console's dashboard: the program's figures for every staff role, drawn and in numbers."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.tiers import service as tiers
from loyalty.tiers.models import MemberTier
from tests.conftest import unique_email

NOW = datetime(2026, 3, 15, 15, 0, tzinfo=UTC)
STAFF_ROLES = ["admin", "manager", "support", "analyst"]


def page(client, path: str = "/console/") -> str:
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def stat(html: str, label: str) -> str:
    """The value shown in the stat card whose label starts with `label`."""
    match = re.search(rf'<span class="label">{re.escape(label)}[^<]*</span>\s*<span class="value">([^<]*)</span>', html)
    assert match, f"no stat {label!r}"
    return match.group(1)


def chart_row(html: str, label: str) -> list[str]:
    """The numbers of one row of a chart's table."""
    match = re.search(rf'<tr><th scope="row">{re.escape(label)}</th>((?:<td class="num">[^<]*</td>)+)</tr>', html)
    assert match, f"no chart row {label!r}"
    return re.findall(r'<td class="num">([^<]*)</td>', match.group(1))


@pytest.fixture
def program(in_app, stop_clock):
    """Ada earns 1,200 yesterday and spends 200 on a reward today, with 50 held by a checkout;
    Ben earns 300 pending today and is silver; Cy is erased."""
    stop_clock(NOW)
    with in_app():
        for rank, (code, name) in enumerate([("member", "Member"), ("silver", "Silver")]):
            tiers.create_tier({"code": code, "name": name, "rank": rank, "threshold": rank * 1000,
                               "basis": "points", "window_days": 365, "earn_multiplier": Decimal(1)})
        ada, ben, cy = (members.enrol(members.NewMember(email=unique_email(n)), source="test") for n in "abc")
        ledger.earn(ada.id, 1200, reference="a1", description="Order", now=NOW - timedelta(days=1))
        ledger.spend(ada.id, 200, reference="a2", description="Reward", now=NOW)
        ledger.hold(ada.id, 50, reference="a3", expires_at=NOW + timedelta(minutes=15), now=NOW,
                    description="Checkout")
        ledger.earn(ben.id, 300, reference="b1", description="Order", now=NOW, pending_until=NOW + timedelta(days=14))
        db.session.add(MemberTier(member_id=ben.id, tier_id=tiers.all_tiers()[1].id, since=NOW))
        cy.status = "erased"
        db.session.commit()


@pytest.mark.parametrize("role", STAFF_ROLES)
def test_every_staff_role_sees_the_dashboard(console_client, role):
    html = page(console_client(role))
    assert "<h1>Dashboard</h1>" in html
    assert "Points over the last 30 days" in html


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get("/console/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/login")


def test_a_signed_in_member_may_not_see_the_dashboard(account_client):
    response = account_client().get("/console/")
    assert response.status_code == 403
    assert "This page is for staff" in response.get_data(as_text=True)


def test_dashboard_shows_members_activity_liability_and_held_points(console_client, program):
    html = page(console_client("analyst"))
    assert stat(html, "Members") == "2"  # Cy's account was erased
    assert stat(html, "Active members") == "2"
    assert stat(html, "Outstanding liability") == "1,250"  # Ada 950 available, Ben 300 pending
    assert "950 available, 300 pending" in html
    assert stat(html, "Held by checkouts") == "50"


def test_dashboard_charts_points_per_day_with_the_numbers_beside_it(console_client, program):
    html = page(console_client("manager"))
    assert '<svg viewBox="0 0 600 200" role="img" aria-label="Points issued, redeemed and expired per day"' in html
    assert chart_row(html, "2026-03-14") == ["1,200", "0", "0"]  # issued, redeemed, expired
    assert chart_row(html, "2026-03-15") == ["300", "200", "0"]
    assert chart_row(html, "2026-02-14") == ["0", "0", "0"]  # the first of the 30 days
    assert "2026-02-13" not in html
    assert (stat(html, "Issued"), stat(html, "Redeemed"), stat(html, "Expired")) == ("1,500", "200", "0")


def test_dashboard_shows_members_per_tier(console_client, program):
    html = page(console_client("support"))
    assert 'aria-label="Members in each tier, lowest first"' in html
    assert chart_row(html, "Member") == ["1"]  # Ada, who has no tier row
    assert chart_row(html, "Silver") == ["1"]


def test_without_tiers_the_dashboard_says_so(console_client):
    assert "No tiers are defined yet." in page(console_client("admin"))


def test_days_choose_the_period_shown(console_client, program):
    html = page(console_client("analyst"), "/console/?days=7")
    assert "Points over the last 7 days" in html
    assert "Since 2026-03-09" in html
    assert len(re.findall(r'<tr><th scope="row">2026-03-\d\d</th>', html)) == 7
    assert '<a href="/console/?days=7" aria-current="page">7 days</a>' in html


@pytest.mark.parametrize("days", ["0", "91", "abc", "-1", "7.5", "99999999"])
def test_days_outside_the_range_are_refused_with_a_page(console_client, days):
    response = console_client("analyst").get(f"/console/?days={days}")
    assert response.status_code == 422
    assert response.mimetype == "text/html"
    assert "Invalid input" in response.get_data(as_text=True)
