"""The console's offer pages: the list and each offer for every staff role; the forms that create and edit
offers, generate codes and add a public code; the codes as a CSV download."""

import csv
import io
import re
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from markupsafe import escape
from sqlalchemy import select

from loyalty.console.pages.offers import CSV_HEADER, _safe_cell
from loyalty.extensions import db
from loyalty.members import service as members
from loyalty.offers import service as offers
from loyalty.offers.models import Offer, OfferCode
from loyalty.tiers import service as tiers
from tests.conftest import submit

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
BLACK_FRIDAY = {
    "name": "Black Friday", "description": "", "kind": "percent_off", "percent": "20", "amount": "", "currency": "",
    "min_order_amount": "", "include_skus": "", "include_categories": "shoes, bags ,", "exclude_skus": "",
    "exclude_categories": "", "starts_at": "2026-11-27T00:00", "ends_at": "2026-11-30T23:59",
    "eligible_tiers": ["gold"], "early_access_tiers": ["gold"], "early_access_hours.gold": "",
    "early_access_hours.bronze": "", "usage_limit_total": "100", "usage_limit_per_member": "1",
    "combines_with_points": ["false", "true"], "combines_with_tier_discount": "false", "active": ["false", "true"],
    "code": "bf-2026",
}
PLAIN = {"name": "Ten off", "kind": "percent_off", "percent": "10", "active": ["false", "true"]}


class _Rows(HTMLParser):
    """Every table row of a page as the text of its cells."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def table_rows(html: str) -> list[list[str]]:
    parser = _Rows()
    parser.feed(html)
    return parser.rows


@pytest.fixture
def clock(stop_clock):
    return stop_clock(NOW)


@pytest.fixture
def ladder(in_app):
    with in_app():
        tiers.create_tier({"code": "bronze", "name": "Bronze", "rank": 0, "threshold": 0, "basis": "points",
                           "window_days": 365})
        tiers.create_tier({"code": "gold", "name": "Gold", "rank": 1, "threshold": 5000, "basis": "points",
                           "window_days": 365, "earn_multiplier": Decimal(1), "early_access_hours": 24})
        db.session.commit()


@pytest.fixture
def manager(console_client, clock, ladder):
    return console_client("manager")


@pytest.fixture
def offer_id(in_app, clock, ladder):
    """An offer with no codes yet."""
    with in_app():
        offer = offers.create_offer({"name": "Ten off", "kind": "percent_off", "percent": 10})
        db.session.commit()
        return offer.public_id


def stored_offer(in_app, public_id: str) -> dict:
    with in_app():
        offer = offers.get_offer(public_id)
        return {column.key: getattr(offer, column.key) for column in Offer.__table__.columns
                if column.key not in ("id", "public_id", "created_at", "updated_at")}


def codes_of(in_app, public_id: str) -> list[str]:
    with in_app():
        offer = offers.get_offer(public_id)
        return list(db.session.scalars(select(OfferCode.code).where(OfferCode.offer_id == offer.id)
                                       .order_by(OfferCode.id)))


def created_offer_id(response) -> str:
    assert response.status_code == 303, response.get_data(as_text=True)
    match = re.fullmatch(r"/console/offers/(off_\w+)", response.headers["Location"])
    assert match, response.headers["Location"]
    return match.group(1)


# --- reading --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["admin", "manager", "support", "analyst"])
def test_every_staff_role_sees_the_offers_and_an_offer(console_client, offer_id, role):
    client = console_client(role)
    listing = client.get("/console/offers")
    assert listing.status_code == 200
    assert "<h1>Offers</h1>" in listing.get_data(as_text=True)
    page = client.get(f"/console/offers/{offer_id}")
    assert page.status_code == 200
    assert "Ten off" in page.get_data(as_text=True)


def test_an_anonymous_visitor_is_sent_to_the_login(client):
    response = client.get("/console/offers")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/console/login")


@pytest.mark.parametrize(("role", "shown"), [("admin", True), ("manager", True), ("support", False),
                                             ("analyst", False)])
def test_only_program_writers_see_the_write_buttons(console_client, offer_id, role, shown):
    client = console_client(role)
    assert ('href="/console/offers/new"' in client.get("/console/offers").get_data(as_text=True)) is shown
    html = client.get(f"/console/offers/{offer_id}").get_data(as_text=True)
    assert (f'href="/console/offers/{offer_id}/edit"' in html) is shown
    assert (f'href="/console/offers/{offer_id}/codes.csv"' in html) is shown
    assert (f'action="/console/offers/{offer_id}/codes"' in html) is shown


def test_an_unknown_offer_is_a_404_page(console_client, clock):
    response = console_client("analyst").get("/console/offers/off_nope")
    assert response.status_code == 404
    assert response.mimetype == "text/html"


def test_the_list_is_paginated_newest_first(console_client, in_app, clock):
    with in_app():
        for number in range(30):
            offers.create_offer({"name": f"Offer {number:02d}", "kind": "free_shipping"})
        db.session.commit()
    client = console_client("analyst")
    first = client.get("/console/offers").get_data(as_text=True)
    names = [row[0] for row in table_rows(first)[1:]]
    assert names == [f"Offer {n:02d}" for n in range(29, 4, -1)]
    after = re.search(r'href="(/console/offers\?starting_after=off_\w+)"', first).group(1)
    second = client.get(after).get_data(as_text=True)
    assert [row[0] for row in table_rows(second)[1:]] == [f"Offer {n:02d}" for n in range(4, -1, -1)]


def test_the_offer_page_lists_its_codes_page_by_page(console_client, in_app, offer_id):
    with in_app():
        offers.generate_codes(offers.get_offer(offer_id), 30)
        db.session.commit()
    client = console_client("manager")
    first = client.get(f"/console/offers/{offer_id}").get_data(as_text=True)
    codes = codes_of(in_app, offer_id)
    assert [row[0] for row in table_rows(first)[1:]] == codes[:25]
    after = re.search(r'href="([^"]+starting_after=cpn_\w+)"', first).group(1).replace("&amp;", "&")
    second = client.get(after).get_data(as_text=True)
    assert [row[0] for row in table_rows(second)[1:]] == codes[25:]


def test_those_who_cannot_change_an_offer_see_its_unique_codes_masked(console_client, in_app, offer_id):
    with in_app():
        offers.generate_codes(offers.get_offer(offer_id), 1)
        db.session.commit()
    (code,) = codes_of(in_app, offer_id)
    html = console_client("analyst").get(f"/console/offers/{offer_id}").get_data(as_text=True)
    assert code not in html
    assert f"<code>{code[:4]}…</code>" in html


def test_the_offer_page_shows_an_assigned_code_with_its_member_and_uses(console_client, in_app, offer_id):
    with in_app():
        member = members.enrol(members.NewMember(email="owner@example.test"), source="test")
        offers.generate_codes(offers.get_offer(offer_id), 1, member_ids=[member.id])
        db.session.commit()
        member_id = member.public_id
    (code,) = codes_of(in_app, offer_id)
    rows = table_rows(console_client("manager").get(f"/console/offers/{offer_id}").get_data(as_text=True))
    assert rows[1] == [code, "Unique", member_id, "Unused", "Yes", "—", "0", "2026-11-01 12:00 UTC"]


# --- creating and editing -------------------------------------------------------------------------------

def test_a_manager_creates_an_offer_and_the_list_shows_it(manager, in_app):
    response = submit(manager, "/console/offers/new", BLACK_FRIDAY)
    public_id = created_offer_id(response)
    assert stored_offer(in_app, public_id) == {
        "name": "Black Friday", "description": None, "kind": "percent_off", "percent": 20, "amount": None,
        "currency": None, "min_order_amount": 0, "scope": {"include_categories": ["shoes", "bags"]},
        "starts_at": datetime(2026, 11, 27, 0, 0, tzinfo=UTC), "ends_at": datetime(2026, 11, 30, 23, 59, tzinfo=UTC),
        "eligible_tiers": ["gold"], "early_access": {"gold": None}, "usage_limit_total": 100,
        "usage_limit_per_member": 1, "uses_per_code": 1, "combines_with_points": True,
        "combines_with_tier_discount": False, "active": True}
    assert codes_of(in_app, public_id) == ["BF2026"]
    assert "Offer “Black Friday” created." in manager.get(response.headers["Location"]).get_data(as_text=True)
    rows = table_rows(manager.get("/console/offers").get_data(as_text=True))
    assert rows == [
        ["Offer", "Kind", "Value", "Window", "Eligible tiers", "Early access", "Uses", "Status"],
        ["Black Friday BF2026", "Percent off", "20% off", "2026-11-27 00:00 UTC \u2013 2026-11-30 23:59 UTC", "gold",
         "gold (tier's own)", "0 of 100", "Scheduled"]]


def test_an_amount_off_offer_is_in_minor_units_of_its_currency(manager, in_app):
    form = {**PLAIN, "kind": "amount_off", "percent": "", "amount": "1250", "currency": "EUR",
            "min_order_amount": "5000", "early_access_tiers": ["gold"], "early_access_hours.gold": "6",
            "starts_at": "2026-11-23T10:00:30"}
    public_id = created_offer_id(submit(manager, "/console/offers/new", form))
    stored = stored_offer(in_app, public_id)
    assert (stored["kind"], stored["amount"], stored["currency"], stored["min_order_amount"]) == (
        "amount_off", 1250, "eur", 5000)
    assert stored["early_access"] == {"gold": 6}
    assert stored["starts_at"] == datetime(2026, 11, 23, 10, 0, 30, tzinfo=UTC)
    row = table_rows(manager.get("/console/offers").get_data(as_text=True))[1]
    assert row[2:6] == ["12.50 EUR off", "From 2026-11-23 10:00 UTC", "All tiers", "gold 6 h"]


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"starts_at": "2026-02-30T10:00"}, "starts_at", "Not a valid datetime."),
    ({"ends_at": "yesterday"}, "ends_at", "Not a valid datetime."),
    ({"starts_at": "2026-11-30T00:00", "ends_at": "2026-11-29T00:00"}, "ends_at", "Must be after starts_at."),
    ({"percent": "-5"}, "percent", "greater than or equal to 1"),
    ({"percent": "150"}, "percent", "less than or equal to 100"),
    ({"percent": "12.5"}, "percent", "Not a valid integer."),
    ({"percent": ""}, "percent", "A percent_off offer needs a percent"),
    ({"kind": "amount_off", "amount": "-100", "currency": "usd"}, "amount", "greater than or equal to 1"),
    ({"kind": "amount_off", "amount": "100"}, "amount", "needs an amount and a currency"),
    ({"min_order_amount": "-1", "currency": "usd"}, "min_order_amount", "greater than or equal to 0"),
    ({"usage_limit_total": "0"}, "usage_limit_total", "greater than or equal to 1"),
    ({"usage_limit_per_member": "-2"}, "usage_limit_per_member", "greater than or equal to 1"),
    ({"early_access_hours.gold": "-3"}, "early_access_hours.gold", "greater than or equal to 0"),
    ({"name": ""}, "name", "Missing data for required field."),
    ({"name": "x" * 201}, "name", "Length must be between 1 and 200."),
    ({"kind": "bogo"}, "kind", "Must be one of"),
    ({"include_skus": "A, " + "s" * 129}, "include_skus", "Length must be between 1 and 128."),
    ({"eligible_tiers": ["platinum"]}, "eligible_tiers", "Unknown tiers: platinum."),
    ({"code": "no!"}, "code", "String does not match expected pattern."),
], ids=["impossible date", "not a date", "ends before it starts", "negative percent", "percent over 100",
        "fractional percent", "percent missing", "negative amount", "amount without currency", "negative minimum",
        "zero limit", "negative per-member limit", "negative early-access hours", "no name", "name too long",
        "unknown kind", "sku too long", "unknown tier", "bad public code"])
def test_bad_input_is_shown_beside_its_field_and_writes_nothing(manager, row_counts, changes, field, message):
    before = row_counts()
    response = submit(manager, "/console/offers/new", {**BLACK_FRIDAY, **changes})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    error = re.search(rf'<p class="field-error" id="{re.escape(field)}-error">([^<]*)</p>', html)
    assert error, html
    assert message in error.group(1).replace("&#39;", "'")
    assert row_counts() == before
    assert f'value="{escape(changes.get("code", "bf-2026"))}"' in html  # what was typed stays in the form


def test_a_public_code_already_in_use_is_a_conflict(manager, row_counts):
    created_offer_id(submit(manager, "/console/offers/new", BLACK_FRIDAY))
    before = row_counts()
    response = submit(manager, "/console/offers/new", {**BLACK_FRIDAY, "code": "BF 2026"})
    assert response.status_code == 409
    assert '<p class="field-error" id="code-error">Already in use.</p>' in response.get_data(as_text=True)
    assert row_counts() == before


def test_the_edit_form_shows_the_offers_values(manager, in_app):
    public_id = created_offer_id(submit(manager, "/console/offers/new", BLACK_FRIDAY))
    html = manager.get(f"/console/offers/{public_id}/edit").get_data(as_text=True)
    assert 'value="2026-11-27T00:00"' in html
    assert 'value="2026-11-30T23:59"' in html
    assert 'value="shoes, bags"' in html
    assert '<option value="percent_off" selected>' in html
    assert re.search(r'name="eligible_tiers" value="gold"\s+checked', html)
    assert re.search(r'name="early_access_tiers" value="gold"\s+checked', html)
    assert not re.search(r'name="eligible_tiers" value="bronze"\s+checked', html)


def test_a_manager_edits_an_offer_and_blank_inputs_clear_their_fields(manager, in_app):
    public_id = created_offer_id(submit(manager, "/console/offers/new", BLACK_FRIDAY))
    form = {**BLACK_FRIDAY, "percent": "25", "ends_at": "", "include_categories": "", "usage_limit_total": "",
            "eligible_tiers": [], "early_access_tiers": ["gold", "bronze"], "early_access_hours.bronze": "2",
            "active": "false", "combines_with_tier_discount": ["false", "true"]}
    del form["code"]
    response = submit(manager, f"/console/offers/{public_id}/edit", form)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/console/offers/{public_id}"
    stored = stored_offer(in_app, public_id)
    assert {key: stored[key] for key in ("percent", "ends_at", "scope", "usage_limit_total", "eligible_tiers",
                                         "early_access", "active", "combines_with_tier_discount")} == {
        "percent": 25, "ends_at": None, "scope": {}, "usage_limit_total": None, "eligible_tiers": [],
        "early_access": {"gold": None, "bronze": 2}, "active": False, "combines_with_tier_discount": True}
    row = table_rows(manager.get("/console/offers").get_data(as_text=True))[1]
    assert row[2:] == ["25% off", "From 2026-11-27 00:00 UTC", "All tiers", "bronze 2 h, gold (tier's own)", "0",
                       "Inactive"]


def test_a_refused_edit_changes_nothing(manager, in_app):
    public_id = created_offer_id(submit(manager, "/console/offers/new", BLACK_FRIDAY))
    before = stored_offer(in_app, public_id)
    response = submit(manager, f"/console/offers/{public_id}/edit",
                      {**BLACK_FRIDAY, "name": "Renamed", "ends_at": "2026-11-01T00:00"})
    assert response.status_code == 422
    assert '<p class="field-error" id="ends_at-error">Must be after starts_at.</p>' in response.get_data(as_text=True)
    assert stored_offer(in_app, public_id) == before


def test_a_public_code_is_added_from_the_offer_page(manager, in_app, offer_id):
    response = submit(manager, f"/console/offers/{offer_id}/public-code", {"code": "summer sale"})
    assert response.status_code == 303
    assert codes_of(in_app, offer_id) == ["SUMMERSALE"]
    assert "Public code SUMMERSALE added." in manager.get(response.headers["Location"]).get_data(as_text=True)


@pytest.mark.parametrize(("code", "status", "message"), [
    ("", 422, "Type the code"), ("x!", 422, "String does not match expected pattern."),
    ("taken", 409, "Already in use.")])
def test_a_bad_or_taken_public_code_is_refused_on_the_offer_page(manager, in_app, offer_id, row_counts, code,
                                                                  status, message):
    submit(manager, f"/console/offers/{offer_id}/public-code", {"code": "TAKEN"})
    before = row_counts()
    response = submit(manager, f"/console/offers/{offer_id}/public-code", {"code": code})
    assert response.status_code == status
    error = re.search(r'<p class="field-error" id="code-error">([^<]*)</p>', response.get_data(as_text=True))
    assert error and message in error.group(1)
    assert row_counts() == before


# --- codes ----------------------------------------------------------------------------------------------

def test_a_manager_generates_three_codes_and_downloads_exactly_those(manager, in_app, offer_id):
    response = submit(manager, f"/console/offers/{offer_id}/codes", {"count": "3", "expires_at": "2027-01-31T23:59"})
    assert response.status_code == 303
    assert response.headers["Location"] == f"/console/offers/{offer_id}"
    assert "3 unique codes made." in manager.get(response.headers["Location"]).get_data(as_text=True)
    codes = codes_of(in_app, offer_id)
    assert len(set(codes)) == 3

    download = manager.get(f"/console/offers/{offer_id}/codes.csv")
    assert download.status_code == 200
    assert download.mimetype == "text/csv"
    assert download.headers["Content-Disposition"] == f'attachment; filename="codes-{offer_id}.csv"'
    assert download.headers["Cache-Control"] == "no-store"
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert rows == [list(CSV_HEADER)] + [
        [code, "unique", "", "true", "2026-11-01T12:00:00+00:00", "2027-01-31T23:59:00+00:00", "0", "unused", ""]
        for code in codes]


def test_the_csv_is_streamed_in_batches_in_id_order(manager, in_app, offer_id, monkeypatch):
    with in_app():
        offers.generate_codes(offers.get_offer(offer_id), 5)
        db.session.commit()
    batch_sizes = []
    original = offers.code_batches

    def small_batches(offer, *, now):
        for batch in original(offer, now=now, batch_size=2):
            batch_sizes.append(len(batch))
            yield batch

    monkeypatch.setattr(offers, "code_batches", small_batches)
    download = manager.get(f"/console/offers/{offer_id}/codes.csv")
    assert download.is_streamed
    rows = list(csv.reader(io.StringIO(download.get_data(as_text=True))))
    assert [row[0] for row in rows[1:]] == codes_of(in_app, offer_id)
    assert batch_sizes == [2, 2, 1]


@pytest.mark.parametrize(("value", "cell"), [
    ("=HYPERLINK(\"x\")", "'=HYPERLINK(\"x\")"), ("+1", "'+1"), ("-1", "'-1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\tX", "'\tX"), ("ABCD2345EFGH", "ABCD2345EFGH"), (None, ""), (3, "3")])
def test_csv_cells_that_a_spreadsheet_would_run_stay_text(value, cell):
    assert _safe_cell(value) == cell


@pytest.mark.parametrize(("count", "message"), [
    ("", "Say how many codes to make."), ("0", "greater than or equal to 1"), ("-3", "greater than or equal to 1"),
    ("100001", "less than or equal to 100000"), ("many", "Not a valid integer.")])
def test_a_bad_code_count_is_refused_beside_the_field(manager, offer_id, row_counts, count, message):
    before = row_counts()
    response = submit(manager, f"/console/offers/{offer_id}/codes", {"count": count})
    assert response.status_code == 422
    error = re.search(r'<p class="field-error" id="count-error">([^<]*)</p>', response.get_data(as_text=True))
    assert error and message in error.group(1)
    assert row_counts() == before


def test_codes_cannot_be_assigned_to_members_from_the_form(manager, offer_id, row_counts, make_member):
    member = make_member()
    before = row_counts()
    response = submit(manager, f"/console/offers/{offer_id}/codes", {"count": "1", "member_ids": member["id"]})
    assert response.status_code == 422
    assert row_counts() == before


# --- who may write --------------------------------------------------------------------------------------

WRITES = [
    ("get", "/console/offers/new"), ("post", "/console/offers/new"),
    ("get", "/console/offers/{offer}/edit"), ("post", "/console/offers/{offer}/edit"),
    ("post", "/console/offers/{offer}/codes"), ("post", "/console/offers/{offer}/public-code"),
    ("get", "/console/offers/{offer}/codes.csv"),
]


@pytest.mark.parametrize("role", ["analyst", "support"])
@pytest.mark.parametrize(("method", "path"), WRITES)
def test_roles_that_do_not_run_the_program_get_403_on_every_write(console_client, offer_id, row_counts, role,
                                                                   method, path):
    client = console_client(role)
    path = path.format(offer=offer_id)
    before = row_counts()
    if method == "get":
        response = client.get(path)
    else:
        response = submit(client, path, {**BLACK_FRIDAY, "count": "3", "code": "SNEAKY"})
    assert response.status_code == 403
    assert response.mimetype == "text/html"
    assert row_counts() == before


@pytest.mark.parametrize("path", ["/console/offers/new", "/console/offers/{offer}/edit",
                                  "/console/offers/{offer}/codes", "/console/offers/{offer}/public-code"])
def test_a_form_without_its_csrf_token_is_refused(manager, offer_id, row_counts, path):
    before = row_counts()
    response = manager.post(path.format(offer=offer_id), data={**BLACK_FRIDAY, "count": "3"})
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert row_counts() == before


@pytest.mark.parametrize("role", ["admin", "manager"])
def test_program_writers_open_the_forms(console_client, offer_id, role):
    client = console_client(role)
    assert client.get("/console/offers/new").status_code == 200
    assert client.get(f"/console/offers/{offer_id}/edit").status_code == 200
