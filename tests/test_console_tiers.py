"""The console's tier pages: the ladder for every staff role, and the forms that add and edit tiers."""

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from loyalty.clock import now
from loyalty.extensions import db
from loyalty.members.models import Member
from loyalty.tiers import service as tiers
from loyalty.tiers.models import MemberTier, Tier
from tests.conftest import submit

BASE_FORM = {"code": "member", "name": "Member", "rank": "0", "threshold": "0", "basis": "points",
             "window_days": "365", "earn_multiplier": "1", "discount_percent": "0", "early_access_hours": "0",
             "currency": "", "perks": ""}
GOLD_FORM = {**BASE_FORM, "code": "gold", "name": "Gold", "rank": "1", "threshold": "5000",
             "earn_multiplier": "1.5", "discount_percent": "10", "early_access_hours": "24",
             "perks": "Free shipping"}


@pytest.fixture
def ladder(in_app):
    """A base tier and a gold tier; answers their public ids by code."""
    with in_app():
        base = tiers.create_tier({"code": "member", "name": "Member", "rank": 0, "threshold": 0,
                                  "basis": "points", "window_days": 365})
        gold = tiers.create_tier({"code": "gold", "name": "Gold", "rank": 1, "threshold": 5000, "basis": "points",
                                  "window_days": 365, "earn_multiplier": Decimal("1.5"), "discount_percent": 10,
                                  "early_access_hours": 24, "perks": "Free shipping"})
        db.session.commit()
        return {"member": base.public_id, "gold": gold.public_id}


def stored_tiers(in_app) -> dict[str, dict]:
    with in_app():
        return {t.code: {"name": t.name, "rank": t.rank, "threshold": t.threshold, "basis": t.basis,
                         "currency": t.currency, "window_days": t.window_days, "earn_multiplier": t.earn_multiplier,
                         "discount_percent": t.discount_percent, "early_access_hours": t.early_access_hours,
                         "perks": t.perks}
                for t in db.session.scalars(select(Tier))}


# --- the list -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["admin", "manager", "support", "analyst"])
def test_every_staff_role_sees_the_ladder(console_client, ladder, role):
    page = console_client(role).get("/console/tiers")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<h1>Tiers</h1>" in html
    assert "Member" in html and "Gold" in html
    assert "\N{MULTIPLICATION SIGN}1.5" in html and "10%" in html and "24 h" in html


@pytest.mark.parametrize(("role", "shown"), [("admin", True), ("manager", True), ("support", False),
                                             ("analyst", False)])
def test_only_program_writers_see_the_add_and_edit_links(console_client, ladder, role, shown):
    html = console_client(role).get("/console/tiers").get_data(as_text=True)
    assert ('href="/console/tiers/new"' in html) is shown
    assert (f'href="/console/tiers/{ladder["gold"]}/edit"' in html) is shown


def test_the_list_counts_members_per_tier_and_shows_the_grace(console_client, ladder, make_member):
    make_member()
    make_member()
    html = console_client("analyst").get("/console/tiers").get_data(as_text=True)
    member_row = html.split("<code>member</code>")[1].split("</tr>")[0]
    gold_row = html.split("<code>gold</code>")[1].split("</tr>")[0]
    assert '<td class="num">2</td>' in member_row
    assert '<td class="num">0</td>' in gold_row
    assert "365 days" in gold_row  # the grace defaults to one more window


def test_members_whose_tier_row_says_gold_count_for_gold(console_client, ladder, make_member, in_app):
    member = make_member()
    make_member()
    with in_app():
        row_member = db.session.scalar(select(Member).where(Member.public_id == member["id"]))
        db.session.add(MemberTier(member_id=row_member.id, tier_id=tiers.get_tier(ladder["gold"]).id, since=now()))
        db.session.commit()
    html = console_client("analyst").get("/console/tiers").get_data(as_text=True)
    assert '<td class="num">1</td>' in html.split("<code>member</code>")[1].split("</tr>")[0]
    assert '<td class="num">1</td>' in html.split("<code>gold</code>")[1].split("</tr>")[0]


def test_the_grace_shown_is_the_configured_one(console_client, ladder, app):
    app.config["TIER_GRACE_DAYS"] = 30
    try:
        html = console_client("analyst").get("/console/tiers").get_data(as_text=True)
    finally:
        app.config.pop("TIER_GRACE_DAYS")
    assert '<td class="num">30 days</td>' in html.split("<code>gold</code>")[1].split("</tr>")[0]


def test_a_spend_tier_shows_its_threshold_as_money(console_client, ladder, in_app):
    with in_app():
        tiers.create_tier({"code": "vip", "name": "VIP", "rank": 2, "threshold": 250000, "basis": "spend",
                           "currency": "usd", "window_days": 365})
        db.session.commit()
    html = console_client("analyst").get("/console/tiers").get_data(as_text=True)
    assert "Spend in USD" in html
    assert "2,500.00 USD" in html


def test_an_empty_ladder_explains_the_base_tier(console_client):
    html = console_client("manager").get("/console/tiers").get_data(as_text=True)
    assert "No tiers yet" in html


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get("/console/tiers")
    assert response.status_code == 302
    assert "/console/login" in response.headers["Location"]


# --- adding a tier ------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["admin", "manager"])
def test_the_new_tier_form_renders_for_program_writers(console_client, role):
    page = console_client(role).get("/console/tiers/new")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert 'name="code"' in html and 'name="earn_multiplier"' in html
    assert "This is the first tier" in html  # nothing defined yet: the base tier comes first


def test_manager_creates_a_tier_and_sees_it_listed(console_client, in_app):
    manager = console_client("manager")
    response = submit(manager, "/console/tiers/new", BASE_FORM)
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/console/tiers/moves")
    html = manager.get("/console/tiers").get_data(as_text=True)
    assert "Tier Member added." in html
    assert "<code>member</code>" in html
    assert stored_tiers(in_app) == {"member": {
        "name": "Member", "rank": 0, "threshold": 0, "basis": "points", "currency": None, "window_days": 365,
        "earn_multiplier": Decimal(1), "discount_percent": 0, "early_access_hours": 0, "perks": None}}


def test_a_tier_is_created_with_its_benefits(console_client, in_app):
    manager = console_client("manager")
    submit(manager, "/console/tiers/new", BASE_FORM)
    assert submit(manager, "/console/tiers/new", GOLD_FORM).status_code == 303
    assert stored_tiers(in_app)["gold"] == {
        "name": "Gold", "rank": 1, "threshold": 5000, "basis": "points", "currency": None, "window_days": 365,
        "earn_multiplier": Decimal("1.5"), "discount_percent": 10, "early_access_hours": 24,
        "perks": "Free shipping"}


def test_blank_benefits_take_their_defaults(console_client, in_app):
    manager = console_client("manager")
    blank = {**BASE_FORM, "earn_multiplier": "", "discount_percent": "", "early_access_hours": ""}
    assert submit(manager, "/console/tiers/new", blank).status_code == 303
    stored = stored_tiers(in_app)["member"]
    assert (stored["earn_multiplier"], stored["discount_percent"], stored["early_access_hours"]) == (1, 0, 0)


def test_the_flash_says_how_many_members_the_next_evaluation_would_move(console_client, ladder, make_member):
    make_member()
    manager = console_client("manager")
    form = {**GOLD_FORM, "code": "bronze", "name": "Bronze", "rank": "2", "threshold": "0"}
    submit(manager, "/console/tiers/new", form)
    html = manager.get("/console/tiers").get_data(as_text=True)
    assert "at the next evaluation 1 member would move up and 0 down" in html


def test_after_an_edit_the_console_lists_who_would_move_leaving_out_members_inside_their_grace(
        console_client, ladder, make_member, in_app):
    leaving, in_grace = make_member(), make_member()
    with in_app():
        gold = db.session.scalar(select(Tier).where(Tier.code == "gold"))
        for member, retained_until in ((leaving, now()), (in_grace, now() + timedelta(days=10))):
            member_id = db.session.scalar(select(Member.id).where(Member.email == member["email"]))
            db.session.add(MemberTier(member_id=member_id, tier_id=gold.id, since=now(), retained_until=retained_until))
        db.session.commit()
    manager = console_client("manager")
    response = submit(manager, f"/console/tiers/{ladder['gold']}/edit", {**GOLD_FORM, "threshold": "6000"})
    assert response.headers["Location"].endswith("/console/tiers/moves")
    html = manager.get("/console/tiers/moves").get_data(as_text=True)
    assert "0 members would move up and 1 down." in html
    assert leaving["email"] in html and in_grace["email"] not in html
    assert "<td>Gold</td>\n        <td>Member</td>\n        <td>down</td>" in html


@pytest.mark.parametrize("role", ["analyst", "support"])
def test_roles_that_do_not_run_the_program_cannot_add_tiers(console_client, row_counts, role):
    staff = console_client(role)
    before = row_counts()
    assert staff.get("/console/tiers/new").status_code == 403
    assert submit(staff, "/console/tiers/new", BASE_FORM).status_code == 403
    assert row_counts() == before


def test_a_form_without_its_csrf_token_is_refused(console_client, row_counts):
    manager = console_client("manager")
    before = row_counts()
    response = manager.post("/console/tiers/new", data=BASE_FORM)
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert row_counts() == before


def test_invalid_fields_are_shown_beside_their_inputs(console_client, row_counts):
    manager = console_client("manager")
    before = row_counts()
    form = {**BASE_FORM, "code": "Not A Code", "rank": "first", "window_days": "0", "earn_multiplier": "0.5"}
    response = submit(manager, "/console/tiers/new", form)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    for name in ("code", "rank", "window_days", "earn_multiplier"):
        assert f'id="{name}-error"' in html
        assert f'aria-describedby="{name}-help {name}-error" aria-invalid="true"' in html or \
               f'aria-describedby="{name}-error" aria-invalid="true"' in html
    assert "Not a valid integer." in html
    assert 'value="Not A Code"' in html  # what was typed comes back
    assert row_counts() == before


def test_missing_required_fields_are_named(console_client, row_counts):
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, "/console/tiers/new", {**BASE_FORM, "code": "", "name": "  "})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert 'id="code-error">Missing data for required field.' in html
    assert 'id="name-error">Missing data for required field.' in html
    assert row_counts() == before


def test_an_oversized_name_is_refused(console_client, row_counts):
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, "/console/tiers/new", {**BASE_FORM, "name": "x" * 101})
    assert response.status_code == 422
    assert 'id="name-error"' in response.get_data(as_text=True)
    assert row_counts() == before


def test_unknown_fields_are_refused(console_client, row_counts):
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, "/console/tiers/new", {**BASE_FORM, "id": "tier_mine"})
    assert response.status_code == 422
    assert "<code>id</code>: Unknown field." in response.get_data(as_text=True)
    assert row_counts() == before


def test_the_first_tier_must_be_the_base_tier(console_client, row_counts):
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, "/console/tiers/new", GOLD_FORM)
    assert response.status_code == 422
    assert 'id="rank-error">Define the base tier (rank 0, threshold 0) first.' in response.get_data(as_text=True)
    assert row_counts() == before


def test_a_spend_tier_needs_a_currency(console_client, ladder, row_counts):
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, "/console/tiers/new", {**GOLD_FORM, "code": "vip", "rank": "2", "basis": "spend"})
    assert response.status_code == 422
    assert 'id="currency-error">A spend-based tier counts orders in one currency.' in response.get_data(as_text=True)
    assert row_counts() == before


def test_a_taken_code_or_rank_is_a_conflict(console_client, ladder, row_counts):
    manager = console_client("manager")
    before = row_counts()
    response = submit(manager, "/console/tiers/new", {**GOLD_FORM, "rank": "7"})
    html = response.get_data(as_text=True)
    assert response.status_code == 409
    assert "Another tier already has this code or rank." in html
    assert 'id="code-error">Must be unique.' in html
    assert row_counts() == before


# --- editing a tier -----------------------------------------------------------------------------------

def test_the_edit_form_shows_the_tiers_values(console_client, ladder):
    page = console_client("admin").get(f"/console/tiers/{ladder['gold']}/edit")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<h1>Edit tier Gold</h1>" in html
    assert 'value="5000"' in html and 'value="1.5"' in html
    assert "Free shipping</textarea>" in html


def test_manager_edits_a_tier(console_client, ladder, in_app):
    manager = console_client("manager")
    form = {**GOLD_FORM, "threshold": "8000", "name": "Golden", "perks": ""}
    response = submit(manager, f"/console/tiers/{ladder['gold']}/edit", form)
    assert response.status_code == 303
    assert "Tier Golden saved. Nobody moves now" in manager.get("/console/tiers").get_data(as_text=True)
    gold = stored_tiers(in_app)["gold"]
    assert (gold["name"], gold["threshold"], gold["perks"]) == ("Golden", 8000, None)


def test_a_blank_benefit_keeps_its_value_when_editing(console_client, ladder, in_app):
    manager = console_client("manager")
    submit(manager, f"/console/tiers/{ladder['gold']}/edit", {**GOLD_FORM, "discount_percent": ""})
    assert stored_tiers(in_app)["gold"]["discount_percent"] == 10


def test_the_base_tier_keeps_rank_zero(console_client, ladder, in_app):
    manager = console_client("manager")
    response = submit(manager, f"/console/tiers/{ladder['member']}/edit", {**BASE_FORM, "rank": "3"})
    assert response.status_code == 422
    assert 'id="rank-error">The base tier keeps rank 0.' in response.get_data(as_text=True)
    assert stored_tiers(in_app)["member"]["rank"] == 0


def test_moving_onto_a_taken_rank_is_a_conflict_and_changes_nothing(console_client, ladder, in_app):
    manager = console_client("manager")
    response = submit(manager, f"/console/tiers/{ladder['gold']}/edit", {**GOLD_FORM, "code": "member"})
    assert response.status_code == 409
    assert "Another tier already has this code or rank." in response.get_data(as_text=True)
    assert stored_tiers(in_app)["gold"]["name"] == "Gold"


@pytest.mark.parametrize("role", ["analyst", "support"])
def test_roles_that_do_not_run_the_program_cannot_edit_tiers(console_client, ladder, in_app, role):
    staff = console_client(role)
    path = f"/console/tiers/{ladder['gold']}/edit"
    assert staff.get(path).status_code == 403
    assert submit(staff, path, {**GOLD_FORM, "threshold": "1"}).status_code == 403
    assert stored_tiers(in_app)["gold"]["threshold"] == 5000


def test_editing_an_unknown_tier_is_not_found(console_client):
    response = console_client("manager").get("/console/tiers/tier_nope/edit")
    assert response.status_code == 404
    assert "No tier has this id." in response.get_data(as_text=True)
