"""The console's member pages: look-up, the member page, point adjustments, suspension and reinstatement."""

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from loyalty.auth.models import StaffUser
from loyalty.checkout.models import Redemption
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.ledger.models import JournalTransaction
from loyalty.members import service as members
from loyalty.offers.models import Offer, OfferCode
from loyalty.tiers import service as tiers
from loyalty.tiers.models import MemberTier, TierChange
from tests.conftest import submit, unique_email

STAFF_ROLES = ["admin", "manager", "support", "analyst"]
WRITERS = ["admin", "support"]
READ_ONLY = ["manager", "analyst"]
ACTIONS = ["adjust", "suspend", "reinstate"]


@pytest.fixture
def enrol(in_app):
    """Enrol a member (no password: fast) with `points` available; answers its public id."""

    def make(points: int = 0, **fields) -> str:
        with in_app():
            member = members.enrol(members.NewMember(email=fields.pop("email", None) or unique_email(), **fields),
                                   source="test")
            if points:
                ledger.earn(member.id, points, reference=f"test:{member.public_id}", description="Order",
                            now=now())
            db.session.commit()
            return member.public_id

    return make


@pytest.fixture
def read(in_app):
    """Read a member (by public id) as the database has it now."""

    def member(public_id: str) -> dict:
        with in_app():
            row = members.get_member(public_id)
            return {"status": row.status, **members.summary(row)["points"]}

    return member


def html_of(response, status: int = 200) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def member_path(public_id: str, action: str = "") -> str:
    return f"/console/members/{public_id}" + (f"/{action}" if action else "")


def post(client, public_id: str, action: str, data: dict | None = None):
    return submit(client, member_path(public_id, action), data)


# --- the list ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", STAFF_ROLES)
def test_every_staff_role_lists_members(console_client, enrol, role):
    enrol(points=120, email="ada@example.test", name="Ada Lovelace")
    html = html_of(console_client(role).get("/console/members"))
    assert "<h1>Members</h1>" in html
    assert "ada@example.test" in html and "Ada Lovelace" in html
    assert '<td class="num">120</td>' in html


def test_the_list_shows_each_members_tier_status_and_available_points(console_client, enrol, in_app):
    ada, ben = enrol(points=1500, email="ada@example.test"), enrol(email="ben@example.test")
    with in_app():
        for rank, name in enumerate(["Member", "Gold"]):
            tiers.create_tier({"code": name.lower(), "name": name, "rank": rank, "threshold": rank * 1000,
                               "basis": "points", "window_days": 365, "earn_multiplier": Decimal(1)})
        db.session.add(MemberTier(member_id=members.get_member(ada).id, tier_id=tiers.all_tiers()[1].id, since=now()))
        members.set_status(members.get_member(ben), "suspended")
        db.session.commit()
    html = html_of(console_client("analyst").get("/console/members"))
    rows = {m: re.search(rf'<tr>\s*<th scope="row"><a href="/console/members/{m}">.*?</tr>', html, re.S).group(0)
            for m in (ada, ben)}
    assert "Gold" in rows[ada] and '<td class="num">1,500</td>' in rows[ada] and "badge-ok\">active" in rows[ada]
    assert "Member" in rows[ben] and '<td class="num">0</td>' in rows[ben] and "badge-warn\">suspended" in rows[ben]


@pytest.mark.parametrize("query", ["ADA@exa", "lovel", "ext-42", "{id}"])
def test_search_finds_a_member_by_email_prefix_name_part_external_id_or_id(console_client, enrol, query):
    ada = enrol(email="ada@example.test", name="Ada Lovelace", external_id="ext-42")
    enrol(email="ben@example.test", name="Ben")
    html = html_of(console_client("support").get("/console/members", query_string={"q": query.format(id=ada)}))
    assert f"/console/members/{ada}" in html
    assert "ben@example.test" not in html


def test_search_without_a_match_says_so(console_client, enrol):
    enrol(email="ada@example.test")
    html = html_of(console_client("analyst").get("/console/members?q=zed"))
    assert "No member matches “zed”." in html


def test_an_oversized_search_is_refused_beside_the_field(console_client):
    html = html_of(console_client("analyst").get("/console/members", query_string={"q": "x" * 255}), 422)
    assert 'id="q-error">At most 254 characters.' in html


def test_the_list_is_paged_25_at_a_time(console_client, in_app):
    with in_app():
        ids = [members.enrol(members.NewMember(email=unique_email()), source="test").public_id for _ in range(26)]
        db.session.commit()
    client = console_client("analyst")
    first = html_of(client.get("/console/members"))
    assert all(f"/console/members/{i}\"" in first for i in ids[:25]) and ids[25] not in first
    next_link = re.search(r'<a rel="next" href="([^"]+)">Next page</a>', first).group(1).replace("&amp;", "&")
    assert next_link == f"/console/members?starting_after={ids[24]}"
    second = html_of(client.get(next_link))
    assert ids[25] in second and ids[24] not in second and "Next page" not in second


# --- the member page ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", STAFF_ROLES)
def test_every_staff_role_reads_the_member_page(console_client, enrol, role):
    member = enrol(points=300, email="ada@example.test", external_id="ext-1")
    html = html_of(console_client(role).get(member_path(member)))
    assert "<h1>Member ada@example.test" in html
    assert re.search(r'<span class="label">Available</span><span class="value">300</span>', html)
    assert "<dd>ext-1</dd>" in html


def test_an_unknown_member_is_a_404_page(console_client):
    response = console_client("analyst").get(member_path("mem_nosuchmember"))
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "No member has this id." in response.get_data(as_text=True)


def test_anonymous_visitors_are_sent_to_the_login_page(client, enrol):
    member = enrol()
    response = client.get(member_path(member))
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/login")


def test_the_member_page_shows_the_summary(console_client, enrol, in_app, stop_clock):
    stop_clock(datetime(2026, 3, 15, 12, tzinfo=UTC))
    member = enrol(email="ada@example.test", name="Ada")
    with in_app():
        internal = members.get_member(member).id
        ledger.earn(internal, 400, reference="e1", description="Order 1", now=now(),
                    expires_at=datetime(2026, 4, 1, tzinfo=UTC))
        ledger.earn(internal, 250, reference="e2", description="Order 2", now=now(),
                    pending_until=now() + timedelta(days=14))
        ledger.hold(internal, 40, reference="h1", expires_at=now() + timedelta(minutes=10), now=now(),
                    description="Checkout")
        for rank, name in enumerate(["Member", "Silver"]):
            tiers.create_tier({"code": name.lower(), "name": name, "rank": rank, "threshold": rank * 1000,
                               "basis": "points", "window_days": 365, "earn_multiplier": Decimal(1)})
        db.session.commit()
    html = html_of(console_client("analyst").get(member_path(member)))
    values = dict(re.findall(r'<span class="label">([^<]+)</span><span class="value">([^<]+)</span>', html))
    assert values == {"Available": "360", "Pending (return window)": "250", "Held by checkouts": "40",
                      "Earned, lifetime": "650"}
    assert "<dt>Tier</dt><dd>Member</dd>" in html
    assert "Silver:\n" in html and "350 more points to earn" in html
    assert "360 points on 2026-04-01 00:00 UTC" in html  # expiring soon


def test_the_journal_is_newest_first_and_paged(console_client, enrol, in_app):
    member = enrol()
    with in_app():
        internal = members.get_member(member).id
        for i in range(26):
            ledger.earn(internal, 10 + i, reference=f"j{i}", description=f"Order {i}", now=now())
        db.session.commit()
        txns = list(db.session.scalars(select(JournalTransaction.public_id).order_by(JournalTransaction.id)))
    client = console_client("analyst")
    first = html_of(client.get(member_path(member)))
    assert first.index("Order 25") < first.index("Order 24")
    assert "Order 0<" not in first and "+35" in first
    assert f'href="{member_path(member)}?starting_after={txns[1]}">Next page' in first
    second = html_of(client.get(f"{member_path(member)}?starting_after={txns[1]}"))
    assert "Order 0<" in second and "Order 1<" not in second
    assert '<td class="num">+10</td>' in second and '<td class="num">10</td>' in second  # points, balance after


def test_redemptions_are_newest_first_ten_at_a_time(console_client, enrol, in_app):
    member = enrol()
    with in_app():
        internal = members.get_member(member).id
        for i in range(11):
            db.session.add(Redemption(member_id=internal, order_id=f"order-{i}", currency="eur", amount=5000,
                                      points=100 + i, points_discount_amount=100 + i, status="captured",
                                      expires_at=now() + timedelta(minutes=15)))
        db.session.commit()
        ids = list(db.session.scalars(select(Redemption.public_id).order_by(Redemption.id)))
    client = console_client("analyst")
    first = html_of(client.get(member_path(member)))
    assert all(i in first for i in ids[1:]) and ids[0] not in first
    assert "1.10 EUR" in first  # order-10's discount, in money
    older = f"{member_path(member)}?redemptions_after={ids[1]}"
    assert f'href="{older}">Older redemptions' in first
    second = html_of(client.get(older))
    assert ids[0] in second and ids[1] not in second and "Newest redemptions" in second


def test_the_member_page_lists_coupons_the_member_can_use(console_client, enrol, in_app):
    member, someone_else = enrol(), enrol()
    with in_app():
        offer = Offer(name="Spring sale", kind="percent_off", percent=10)
        db.session.add(offer)
        db.session.flush()
        db.session.add_all([OfferCode(offer_id=offer.id, code="SPRING10", kind="public"),
                            OfferCode(offer_id=offer.id, code="ADAONLY", kind="unique",
                                      member_id=members.get_member(member).id),
                            OfferCode(offer_id=offer.id, code="SOMEONEELSE", kind="unique",
                                      member_id=members.get_member(someone_else).id)])
        db.session.commit()
    html = html_of(console_client("support").get(member_path(member)))
    assert "<code>SPRING10</code>" in html and "<code>ADAONLY</code>" in html
    assert "SOMEONEELSE" not in html
    assert "Theirs alone" in html and "Spring sale" in html


def test_the_member_page_shows_the_latest_ten_tier_changes(console_client, enrol, in_app):
    member = enrol()
    with in_app():
        for rank, name in enumerate(["Member", "Gold"]):
            tiers.create_tier({"code": name.lower(), "name": name, "rank": rank, "threshold": rank * 1000,
                               "basis": "points", "window_days": 365, "earn_multiplier": Decimal(1)})
        base, gold = (t.id for t in tiers.all_tiers())
        internal = members.get_member(member).id
        for i in range(12):
            up = i % 2 == 0
            db.session.add(TierChange(member_id=internal, from_tier_id=base if up else gold,
                                      to_tier_id=gold if up else base, reason=f"Change {i}", qualifying_amount=0))
        db.session.commit()
    html = html_of(console_client("analyst").get(member_path(member)))
    assert "Change 11" in html and "Change 2<" in html and "Change 1<" not in html
    assert "2 earlier ones are not shown" in html


# --- who may change a member -------------------------------------------------------------------------------

@pytest.mark.parametrize("role", WRITERS)
def test_writers_see_the_adjust_form_and_the_suspend_button(console_client, enrol, role):
    html = html_of(console_client(role).get(member_path(enrol())))
    assert "Adjust points</button>" in html and "Suspend member</button>" in html


@pytest.mark.parametrize("role", READ_ONLY)
def test_readers_see_no_adjust_form_or_suspend_button(console_client, enrol, role):
    html = html_of(console_client(role).get(member_path(enrol())))
    assert "/adjust" not in html and "/suspend" not in html and "Suspend member" not in html


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("role", READ_ONLY)
def test_readers_get_403_on_every_change_and_nothing_changes(console_client, enrol, read, row_counts, role, action):
    member = enrol(points=100)
    client = console_client(role)
    before, counts = read(member), row_counts()
    response = post(client, member, action, {"points": "50", "reason": "Goodwill"})
    assert response.status_code == 403
    assert read(member) == before and row_counts() == counts


@pytest.mark.parametrize("action", ACTIONS)
def test_a_change_without_the_csrf_token_is_refused_and_changes_nothing(console_client, enrol, read, row_counts,
                                                                       action):
    member = enrol(points=100)
    client = console_client("admin")
    before, counts = read(member), row_counts()
    response = client.post(member_path(member, action), data={"points": "50", "reason": "Goodwill"})
    assert "This form has expired" in html_of(response, 400)
    assert read(member) == before and row_counts() == counts


@pytest.mark.parametrize("action", ACTIONS)
def test_changing_an_unknown_member_is_a_404_page(console_client, action):
    response = post(console_client("support"), "mem_nosuchmember", action, {"points": "5", "reason": "x"})
    assert "No member has this id." in html_of(response, 404)


# --- adjusting points --------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", WRITERS)
def test_adding_points_moves_exactly_those_points_and_records_who_and_why(console_client, enrol, read, in_app, role):
    member = enrol(points=100)
    client = console_client(role)
    response = post(client, member, "adjust", {"points": "250", "reason": "Late delivery"})
    assert response.status_code == 303
    assert response.headers["Location"] == member_path(member)
    assert read(member)["available"] == 350
    with in_app():
        txn = db.session.scalars(select(JournalTransaction).order_by(JournalTransaction.id.desc())).first()
        staff = db.session.scalar(select(StaffUser).where(StaffUser.public_id == client.staff["id"]))
        assert (txn.kind, txn.points, txn.description) == ("adjust", 250, "Adjustment: Late delivery")
        assert txn.staff_id == staff.id
        assert re.fullmatch(r"adjust:req_[0-9a-f]{24}", txn.reference)
    page = html_of(client.get(member_path(member)))
    assert "+250 points adjusted. Available now: 350." in page


def test_removing_points_takes_exactly_those_points(console_client, enrol, read):
    member = enrol(points=100)
    response = post(console_client("support"), member, "adjust", {"points": "-40", "reason": "Duplicate order"})
    assert response.status_code == 303
    assert read(member)["available"] == 60


def test_two_adjustments_are_two_movements(console_client, enrol, read):
    member = enrol()
    client = console_client("support")
    for _ in range(2):
        assert post(client, member, "adjust", {"points": "5", "reason": "Survey"}).status_code == 303
    assert read(member)["available"] == 10


def test_removing_more_than_available_shows_the_problem_on_the_form_and_changes_nothing(
        console_client, enrol, read, row_counts):
    member = enrol(points=100)
    client = console_client("support")
    counts = row_counts()
    html = html_of(post(client, member, "adjust", {"points": "-150", "reason": "Fraud"}), 409)
    assert "Insufficient points" in html and "The member has 100 points available; 150 were asked for." in html
    assert 'name="points" type="number" value="-150"' in html and 'value="Fraud"' in html
    assert read(member)["available"] == 100 and row_counts() == counts


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"points": "0", "reason": "Oops"}, "points", "Must not be zero."),
    ({"points": "", "reason": "Oops"}, "points", "Missing data for required field."),
    ({"points": "ten", "reason": "Oops"}, "points", "Not a valid integer."),
    ({"points": "1.5", "reason": "Oops"}, "points", "Not a valid integer."),
    ({"points": "1000000001", "reason": "Oops"}, "points", "Must be greater than or equal to -1000000000 and less "
                                                           "than or equal to 1000000000."),
    ({"points": "10", "reason": "  "}, "reason", "Missing data for required field."),
    ({"points": "10"}, "reason", "Missing data for required field."),
    ({"points": "10", "reason": "x" * 301}, "reason", "Length must be between 1 and 300."),
])
def test_invalid_adjustments_are_shown_beside_the_field_and_change_nothing(
        console_client, enrol, read, row_counts, data, field, message):
    member = enrol(points=100)
    client = console_client("admin")
    counts = row_counts()
    html = html_of(post(client, member, "adjust", data), 422)
    assert re.search(rf'id="{field}-error">[^<]*{re.escape(message)}', html)
    assert read(member)["available"] == 100 and row_counts() == counts


def test_adjusting_an_erased_member_is_refused(console_client, enrol, read, in_app, row_counts):
    member = enrol(points=100)
    with in_app():
        members.get_member(member).status = "erased"
        db.session.commit()
    client = console_client("support")
    counts = row_counts()
    html = html_of(post(client, member, "adjust", {"points": "10", "reason": "x"}), 409)
    assert "The member&#39;s account was erased." in html
    assert row_counts() == counts


# --- suspending and reinstating ----------------------------------------------------------------------------

@pytest.mark.parametrize("role", WRITERS)
def test_suspending_a_member_keeps_their_points(console_client, enrol, read, role):
    member = enrol(points=100)
    client = console_client(role)
    response = post(client, member, "suspend")
    assert response.status_code == 303 and response.headers["Location"] == member_path(member)
    assert read(member) == {"status": "suspended", "available": 100, "pending": 0, "held": 0, "lifetime_earned": 100}
    page = html_of(client.get(member_path(member)))
    assert "Member suspended" in page and "Reinstate member</button>" in page and "Suspend member" not in page


def test_reinstating_lifts_the_suspension(console_client, enrol, read):
    member = enrol()
    client = console_client("support")
    post(client, member, "suspend")
    response = post(client, member, "reinstate")
    assert response.status_code == 303
    assert read(member)["status"] == "active"
    assert "Member reinstated" in html_of(client.get(member_path(member)))


@pytest.mark.parametrize("action", ["suspend", "reinstate"])
def test_an_erased_member_cannot_be_suspended_or_reinstated(console_client, enrol, read, in_app, action):
    member = enrol()
    with in_app():
        members.get_member(member).status = "erased"
        db.session.commit()
    client = console_client("admin")
    html = html_of(post(client, member, action), 409)
    assert "The member&#39;s account was erased." in html
    assert read(member)["status"] == "erased"
    assert "its status cannot change" in html
