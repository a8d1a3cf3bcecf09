"""The dashboard's figures (loyalty.reports): worked out by hand from a small program with a known week."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from loyalty.errors import ValidationProblem
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.members.models import Member
from loyalty.reports import service as reports
from loyalty.reports.service import DayPoints, TierCount
from loyalty.tiers import service as tiers
from loyalty.tiers.models import MemberTier
from tests.conftest import unique_email

NOW = datetime(2026, 3, 15, 15, 0, tzinfo=UTC)
LADDER = [
    {"code": "member", "name": "Member", "rank": 0, "threshold": 0, "basis": "points", "window_days": 365},
    {"code": "silver", "name": "Silver", "rank": 1, "threshold": 1000, "basis": "points", "window_days": 365},
    {"code": "gold", "name": "Gold", "rank": 2, "threshold": 5000, "basis": "points", "window_days": 365},
]


def at(day: int, hour: int = 12, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


@pytest.fixture
def program(in_app, stop_clock):
    """Six members and a week of movements (the last 7 days end on 15 March):

    A  earns 500 on 1 March (before the week) and 200 on the 10th, spends 100 on a reward on the 12th and
       has 50 held by a checkout today: 550 available, 50 held. Gold.
    B  earns 300 pending at 23:59:59 on the 14th; 100 are clawed back today: 200 pending. In the base tier's row.
    C  earns 100 at 00:00:00 on the 9th, expiring on the 11th; they expire when settled on the 13th.
    D  earns 1,000 at 23:59:59 on the 8th (before the week) and redeems 400 through a checkout on the 11th:
       600 available. Silver.
    E  is suspended and gets a staff adjustment of +70 on the 12th (not activity, not issued).
    F  is erased, with a gold tier row: counted nowhere.
    """
    stop_clock(NOW)
    with in_app():
        tier_ids = {fields["code"]: tiers.create_tier({**fields, "earn_multiplier": Decimal(1)}).id
                    for fields in LADDER}
        ids = {name: members.enrol(members.NewMember(email=unique_email(name)), source="test").id
               for name in "ABCDEF"}
        ledger.earn(ids["A"], 500, reference="a1", description="Order", now=at(1))
        ledger.earn(ids["A"], 200, reference="a2", description="Order", now=at(10, 10))
        ledger.spend(ids["A"], 100, reference="a3", description="Reward", now=at(12))
        ledger.hold(ids["A"], 50, reference="a4", expires_at=NOW + timedelta(minutes=15), now=NOW,
                    description="Checkout")
        earn_b = ledger.earn(ids["B"], 300, reference="b1", description="Order", now=at(14, 23, 59, 59),
                             pending_until=at(28))
        ledger.clawback(earn_b, 100, reference="b2", now=NOW, description="Refund")
        ledger.earn(ids["C"], 100, reference="c1", description="Order", now=at(9, 0), expires_at=at(11, 0))
        ledger.settle(ids["C"], at(13))
        ledger.earn(ids["D"], 1000, reference="d1", description="Order", now=at(8, 23, 59, 59))
        hold = ledger.hold(ids["D"], 400, reference="d2", expires_at=at(11, 13), now=at(11), description="Checkout")
        ledger.capture(hold, now=at(11, 12, 5))
        ledger.adjust(ids["E"], 70, reason="Goodwill", reference="e1", now=at(12))
        members.set_status(db.session.get(Member, ids["E"]), "suspended")
        db.session.get(Member, ids["F"]).status = "erased"
        db.session.add_all([
            MemberTier(member_id=ids["A"], tier_id=tier_ids["gold"], since=NOW),
            MemberTier(member_id=ids["B"], tier_id=tier_ids["member"], since=NOW),
            MemberTier(member_id=ids["D"], tier_id=tier_ids["silver"], since=NOW),
            MemberTier(member_id=ids["F"], tier_id=tier_ids["gold"], since=NOW),
        ])
        db.session.commit()
    return in_app


def test_points_per_day_over_the_last_week(program):
    with program():
        figures = reports.dashboard(NOW, days=7)
    assert figures.days == (
        DayPoints(date(2026, 3, 9), issued=100),
        DayPoints(date(2026, 3, 10), issued=200),
        DayPoints(date(2026, 3, 11), redeemed=400),
        DayPoints(date(2026, 3, 12), redeemed=100),
        DayPoints(date(2026, 3, 13), expired=100),
        DayPoints(date(2026, 3, 14), issued=300),
        DayPoints(date(2026, 3, 15)),
    )
    assert (figures.total("issued"), figures.total("redeemed"), figures.total("expired")) == (600, 500, 100)


def test_the_window_starts_at_midnight_utc_of_its_first_day(program):
    with program():
        figures = reports.dashboard(NOW, days=7)
    assert figures.since == datetime(2026, 3, 9, tzinfo=UTC)


def test_days_are_utc_days_whatever_the_database_session_time_zone(program):
    with program():
        if db.session.get_bind().dialect.name == "postgresql":
            db.session.execute(text("SET LOCAL TIME ZONE 'Pacific/Auckland'"))
        figures = reports.dashboard(NOW, days=7)
    # B's earn at 23:59:59 UTC on the 14th is already the 15th in Auckland; C's at midnight is the 9th.
    assert [day.issued for day in figures.days] == [100, 200, 0, 0, 0, 300, 0]


def test_thirty_days_by_default_include_the_earlier_earns(program):
    with program():
        figures = reports.dashboard(NOW)
    assert len(figures.days) == 30
    assert figures.days[0].day == date(2026, 2, 14)
    assert figures.days[-1].day == date(2026, 3, 15)
    assert figures.total("issued") == 500 + 1000 + 100 + 200 + 300
    assert figures.days[15] == DayPoints(date(2026, 3, 1), issued=500)
    assert figures.days[22] == DayPoints(date(2026, 3, 8), issued=1000)


def test_active_members_earned_or_redeemed_within_the_window(program):
    with program():
        assert reports.dashboard(NOW, days=7).active_members == 4  # A, B, C and D; E was only adjusted
        assert reports.dashboard(NOW, days=1).active_members == 0  # today only a hold and a clawback
        assert reports.dashboard(NOW, days=2).active_members == 1  # B earned on the 14th


def test_members_count_everyone_but_erased_accounts(program):
    with program():
        figures = reports.dashboard(NOW, days=7)
    assert (figures.members, figures.suspended) == (5, 1)


def test_liability_is_available_plus_pending_from_the_cached_balances(program):
    with program():
        figures = reports.dashboard(NOW, days=7)
    assert (figures.available, figures.pending, figures.held) == (550 + 600 + 70, 200, 50)
    assert figures.liability == 1420


def test_tier_distribution_puts_members_without_a_tier_row_in_the_base_tier(program):
    with program():
        figures = reports.dashboard(NOW, days=7)
    assert figures.tiers == (
        TierCount("member", "Member", 0, 3),  # B (row), C and E (no row)
        TierCount("silver", "Silver", 1, 1),
        TierCount("gold", "Gold", 2, 1),  # A; F is erased
    )


def test_an_empty_program_has_zeros_for_every_day(in_app):
    with in_app():
        figures = reports.dashboard(NOW)
    assert figures.days == tuple(DayPoints(date(2026, 2, 14) + timedelta(days=i)) for i in range(30))
    assert (figures.members, figures.active_members, figures.liability, figures.held) == (0, 0, 0, 0)
    assert figures.tiers == ()


@pytest.mark.parametrize("days", [0, -1, 91, True, "30"])
def test_days_outside_one_to_ninety_are_refused(in_app, days):
    with in_app(), pytest.raises(ValidationProblem) as raised:
        reports.dashboard(NOW, days)
    assert raised.value.errors == {"days": ["Must be a whole number from 1 to 90."]}
