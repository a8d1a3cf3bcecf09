"""The member's own pages at /account/: points and tier, history, coupons, and claiming rewards."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.offers.models import OfferCode, RewardClaim
from loyalty.tiers import service as tiers
from tests.conftest import PASSWORD, csrf_token, submit

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PAGES = ("/account/", "/account/history", "/account/coupons", "/account/rewards")
TEN_OFF = {"name": "Ten percent", "kind": "percent_off", "percent": 10}


@pytest.fixture
def clock(stop_clock):
    return stop_clock(T0)


@pytest.fixture
def ladder(in_app):
    """Two tiers on points earned over a year: Member (everyone) and Gold from 2,000."""
    with in_app():
        tiers.create_tier({"code": "member", "name": "Member", "rank": 0, "threshold": 0, "basis": "points",
                           "window_days": 365, "earn_multiplier": Decimal(1)})
        tiers.create_tier({"code": "gold", "name": "Gold", "rank": 1, "threshold": 2000, "basis": "points",
                           "window_days": 365, "earn_multiplier": Decimal(1)})
        db.session.commit()


@pytest.fixture
def ledger_of(in_app):
    """`with ledger_of(member) as internal_id:` moves a member's points through `ledger`, committed at the end."""
    from contextlib import contextmanager

    @contextmanager
    def opened(member: dict):
        with in_app():
            yield members.get_member(member["id"]).id
            db.session.commit()

    return opened


def give(ledger_of, member: dict, points: int, *, reference: str = "seed") -> None:
    with ledger_of(member) as internal:
        ledger.adjust(internal, points, reason="Welcome gift", reference=f"{reference}:{member['id']}", now=T0)


def balance(in_app, member: dict) -> int:
    with in_app():
        return ledger.balances(members.get_member(member["id"]).id).available


def claims(in_app) -> int:
    with in_app():
        return db.session.scalar(select(func.count()).select_from(RewardClaim))


@pytest.fixture
def reward(in_app):
    """`reward(**fields)` adds a reward (10% off for 500 points unless told) and answers its public id."""

    def make(**fields) -> str:
        with in_app():
            offer = offers.create_offer(dict(TEN_OFF))
            entry = catalog.create_reward({"offer_id": offer.public_id, "name": "10% off your next order",
                                           "points_cost": 500, **fields})
            db.session.commit()
            return entry.public_id

    return make


def claim(client, reward_id: str, **form):
    return submit(client, f"/account/rewards/{reward_id}/claim", form, page="/account/rewards")


# --- who may see the pages ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", PAGES)
def test_an_anonymous_visitor_is_sent_to_the_member_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response.headers["Location"] == f"/account/login?next={path}"


@pytest.mark.parametrize("path", PAGES)
def test_a_staff_session_is_sent_to_the_member_login(console_client, path):
    response = console_client("admin").get(path)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/login")


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_a_member(account_client, path):
    response = account_client().get(path)
    assert response.status_code == 200
    assert response.get_data(as_text=True).count("<h1") == 1


# --- signing in --------------------------------------------------------------------------------------

def test_login_with_a_wrong_password_shows_the_message_with_401(client, make_member):
    member = make_member()
    response = client.post("/account/login", data={"email": member["email"], "password": "not it",
                                                   "csrf_token": csrf_token(client, "/account/login")})
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert "The email or password is wrong." in page
    assert f'value="{member["email"]}"' in page
    assert client.get("/account/").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example/account/", "//evil.example/account/", "/console/"])
def test_login_ignores_a_next_address_outside_the_account_pages(client, make_member, target):
    member = make_member()
    response = client.post("/account/login", data={
        "email": member["email"], "password": PASSWORD, "next": target,
        "csrf_token": csrf_token(client, "/account/login")})
    assert response.status_code == 302
    assert response.headers["Location"] == "/account/"


def test_login_goes_back_to_the_account_page_asked_for(client, make_member):
    member = make_member()
    response = client.post("/account/login", data={
        "email": member["email"], "password": PASSWORD, "next": "/account/coupons",
        "csrf_token": csrf_token(client, "/account/login")})
    assert response.headers["Location"] == "/account/coupons"


def test_login_without_a_csrf_token_is_refused(client, make_member):
    member = make_member()
    response = client.post("/account/login", data={"email": member["email"], "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/account/").status_code == 302


def test_sign_out_ends_the_session(account_client):
    client = account_client()
    assert submit(client, "/account/logout").headers["Location"] == "/account/login"
    assert client.get("/account/").status_code == 302


# --- home ------------------------------------------------------------------------------------------

def test_home_shows_the_exact_balances(account_client, ledger_of, clock):
    client = account_client()
    with ledger_of(client.member) as internal:
        ledger.earn(internal, 1234, reference="order:1", description="Order 1", now=T0)
        ledger.earn(internal, 150, reference="order:2", description="Order 2", now=T0,
                    pending_until=T0 + timedelta(days=14))
        ledger.hold(internal, 100, reference="hold:1", expires_at=T0 + timedelta(minutes=30), now=T0,
                    description="Checkout")
    page = client.get("/account/").get_data(as_text=True)
    assert '<p class="points-big">1,134</p>' in page
    assert "<dt>Pending</dt>\n    <dd>150 " in page
    assert "<dt>Held</dt>\n    <dd>100 " in page


def test_home_shows_the_way_to_the_next_tier(account_client, ladder, ledger_of, clock):
    client = account_client()
    with ledger_of(client.member) as internal:
        ledger.earn(internal, 800, reference="order:1", description="Order 1", now=T0)
    page = client.get("/account/").get_data(as_text=True)
    assert "Your tier: Member" in page
    assert '<p id="tier-progress-text" class="tier-next">1,200 more points to Gold</p>' in page
    assert '<progress value="800" max="2000" aria-labelledby="tier-progress-text">' in page


def test_home_in_the_top_tier_says_so_and_until_when_it_is_kept(account_client, ladder, ledger_of, clock, in_app):
    client = account_client()
    with ledger_of(client.member) as internal:
        ledger.earn(internal, 2500, reference="order:1", description="Order 1", now=T0)
        tiers.upgrade_if_qualified(members.get_member(client.member["id"]), T0)
    page = client.get("/account/").get_data(as_text=True)
    assert "Your tier: Gold" in page
    assert "You are in our top tier." in page
    assert "<progress" not in page
    assert "You keep Gold until at least 02 Mar 2027." in page


def test_home_lists_the_points_expiring_soon_with_their_dates(account_client, ledger_of, clock):
    client = account_client()
    with ledger_of(client.member) as internal:
        ledger.earn(internal, 300, reference="order:1", description="Order 1", now=T0,
                    expires_at=datetime(2026, 3, 20, tzinfo=UTC))
        ledger.earn(internal, 700, reference="order:2", description="Order 2", now=T0,
                    expires_at=datetime(2027, 3, 20, tzinfo=UTC))
    page = client.get("/account/").get_data(as_text=True)
    assert "<strong>300 points</strong> expire 2026-03-20 00:00 UTC" in page
    assert "2027-03-20" not in page


def suspend_and_sign_in_again(client, in_app) -> None:
    """Suspending ends the member's sessions; a suspended member may sign in again."""
    with in_app():
        members.set_status(members.get_member(client.member["id"]), "suspended")
        db.session.commit()
    assert client.get("/account/").status_code == 302
    client.post("/account/login", data={"email": client.member["email"], "password": PASSWORD,
                                        "csrf_token": csrf_token(client, "/account/login")})


def test_home_tells_a_suspended_member(account_client, in_app):
    client = account_client()
    suspend_and_sign_in_again(client, in_app)
    assert "Your account is suspended." in client.get("/account/").get_data(as_text=True)


# --- history ---------------------------------------------------------------------------------------

def test_history_lists_the_journal_newest_first_with_signed_points(account_client, ledger_of, clock):
    client = account_client()
    with ledger_of(client.member) as internal:
        ledger.earn(internal, 1200, reference="order:1", description="Order 1001", now=T0)
        ledger.spend(internal, 500, reference="reward:x", description="Reward: Tote bag", now=T0)
    page = client.get("/account/history").get_data(as_text=True)
    assert page.index("Reward: Tote bag") < page.index("Order 1001")
    assert '<span class="loss">&minus;500</span>' in page
    assert '<span class="gain">+1,200</span>' in page
    assert "02 Mar 2026" in page


def test_history_pages_through_more_than_25_transactions(account_client, ledger_of, clock):
    client = account_client()
    with ledger_of(client.member) as internal:
        for n in range(1, 31):
            ledger.adjust(internal, n, reason=f"Gift number {n}", reference=f"gift:{n}", now=T0)
    first = client.get("/account/history").get_data(as_text=True)
    assert first.count("Adjustment: Gift number") == 25
    assert "Gift number 30<" in first and "Gift number 6<" in first and "Gift number 5<" not in first
    next_link = first.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(next_link).get_data(as_text=True)
    assert second.count("Adjustment: Gift number") == 5
    assert "Gift number 5<" in second and "Gift number 1<" in second
    assert 'rel="next"' not in second


def test_history_with_a_cursor_from_elsewhere_is_refused(account_client):
    assert account_client().get("/account/history?starting_after=txn_nope").status_code == 422


def test_history_never_shows_another_members_transactions(account_client, make_member, ledger_of):
    client = account_client()
    other = make_member()
    give(ledger_of, other, 999)
    assert "Welcome gift" not in client.get("/account/history").get_data(as_text=True)


# --- coupons ---------------------------------------------------------------------------------------

def test_coupons_show_early_access_with_when_it_opens_for_the_member_and_for_everyone(
        account_client, ladder, in_app, clock):
    client = account_client()
    with in_app():
        offers.create_offer({**TEN_OFF, "code": "LAUNCH", "starts_at": T0 + timedelta(days=2),
                             "early_access": {"member": 24}})
        db.session.commit()
    page = client.get("/account/coupons").get_data(as_text=True)
    assert "<code>LAUNCH</code>" in page
    assert "Early access" in page and "Not open yet" in page
    assert "<dt>Opens for you</dt><dd>2026-03-03 10:00 UTC</dd>" in page
    assert "<dt>Opens to everyone</dt><dd>2026-03-04 10:00 UTC</dd>" in page


def test_coupons_say_what_they_give_and_until_when(account_client, in_app, clock):
    client = account_client()
    with in_app():
        offers.create_offer({"name": "Five off", "kind": "amount_off", "amount": 500, "currency": "eur",
                             "min_order_amount": 3000, "code": "FIVE", "ends_at": T0 + timedelta(days=10)})
        db.session.commit()
    page = client.get("/account/coupons").get_data(as_text=True)
    assert "<strong>5.00 EUR off on orders of 30.00 EUR or more</strong>" in page
    assert "<dt>Valid until</dt><dd>2026-03-12 10:00 UTC</dd>" in page
    assert "Ready to use" in page


def test_an_expired_reward_coupon_is_marked_expired(account_client, reward, ledger_of, clock):
    client = account_client()
    give(ledger_of, client.member, 500)
    claim(client, reward(coupon_valid_days=30))
    clock.travel(timedelta(days=31))
    page = client.get("/account/coupons").get_data(as_text=True)
    assert "You have no coupons to use right now." in page
    past = page.split("<h2>Used and expired</h2>")[1]
    assert "Expired</span>" in past and "<dt>Expired</dt><dd>2026-04-01 10:00 UTC</dd>" in past


def test_a_coupon_used_as_often_as_allowed_is_marked_used(account_client, in_app, clock):
    client = account_client()
    with in_app():
        offers.create_offer({**TEN_OFF, "code": "ONCE", "usage_limit_per_member": 1})
        offers.reserve("ONCE", members.get_member(client.member["id"]), offers.engine.Cart(
            currency="usd", lines=(offers.engine.CartLine(sku="A", quantity=1, unit_amount=5000),)),
            reference="checkout:1", expires_at=T0 + timedelta(hours=1), now=T0)
        offers.consume("checkout:1", now=T0)
        db.session.commit()
    past = client.get("/account/coupons").get_data(as_text=True).split("<h2>Used and expired</h2>")[1]
    assert "<code>ONCE</code>" in past and '<span class="badge">Used</span>' in past


# --- rewards ---------------------------------------------------------------------------------------

def test_rewards_show_cost_and_whether_the_member_can_afford_them(account_client, reward, ledger_of):
    client = account_client()
    give(ledger_of, client.member, 700)
    cheap = reward(name="Tote bag", points_cost=700)
    reward(name="Weekend away", points_cost=900)
    page = client.get("/account/rewards").get_data(as_text=True)
    assert "You have <strong>700</strong> points to spend." in page
    assert f'action="/account/rewards/{cheap}/claim"' in page
    assert "Claim Tote bag for 700 points</button>" in page
    assert "You need 200 more points." in page
    assert "Claim Weekend away" not in page


def test_rewards_page_through_a_long_catalog(account_client, reward):
    client = account_client()
    for n in range(1, 28):
        reward(name=f"Reward number {n}")
    first = client.get("/account/rewards").get_data(as_text=True)
    assert first.count('class="reward-name"') == 25
    next_link = first.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
    second = client.get(next_link).get_data(as_text=True)
    assert "Reward number 26<" in second and "Reward number 27<" in second
    assert second.count('class="reward-name"') == 2


def test_rewards_leave_out_inactive_ones(account_client, reward, in_app):
    client = account_client()
    hidden = reward(name="Gone")
    with in_app():
        catalog.update_reward(catalog.get_reward(hidden), {"active": False})
        db.session.commit()
    assert "Gone" not in client.get("/account/rewards").get_data(as_text=True)


def test_a_reward_for_another_tier_is_shown_locked_and_cannot_be_claimed(account_client, ladder, ledger_of, in_app,
                                                                         row_counts):
    client = account_client()
    give(ledger_of, client.member, 700)
    with in_app():
        offer = offers.create_offer({**TEN_OFF, "eligible_tiers": ["gold"]})
        reward_id = catalog.create_reward({"offer_id": offer.public_id, "name": "15% off for Gold",
                                           "points_cost": 500}).public_id
        db.session.commit()
    page = client.get("/account/rewards").get_data(as_text=True)
    assert "Locked</span> Only for Gold members: you could not use this coupon now." in page
    assert "Claim 15% off for Gold" not in page
    before = row_counts()
    response = claim(client, reward_id)
    assert response.status_code == 409
    assert "Only for Gold members: you could not use this reward&#39;s coupon now." in response.get_data(as_text=True)
    assert row_counts() == before
    assert balance(in_app, client.member) == 700


def test_claiming_spends_exactly_the_cost_and_the_coupon_is_listed(account_client, reward, ledger_of, in_app):
    client = account_client()
    give(ledger_of, client.member, 800)
    reward_id = reward(points_cost=500)
    response = claim(client, reward_id)
    assert response.status_code == 303
    assert response.headers["Location"] == "/account/coupons"
    assert balance(in_app, client.member) == 300
    assert claims(in_app) == 1
    with in_app():
        code = db.session.scalar(select(OfferCode.code).where(
            OfferCode.member_id == members.get_member(client.member["id"]).id))
    page = client.get("/account/coupons").get_data(as_text=True)
    assert f"You claimed 10% off your next order: your code is {code}." in page
    assert f"<code>{code}</code>" in page
    assert "Ready to use" in page and "just for you" in page


def test_claiming_without_enough_points_is_refused_with_409_and_changes_nothing(
        account_client, reward, ledger_of, in_app, row_counts):
    client = account_client()
    give(ledger_of, client.member, 499)
    reward_id = reward(points_cost=500)
    before = row_counts()
    response = claim(client, reward_id)
    assert response.status_code == 409
    assert "Insufficient points" in response.get_data(as_text=True)
    assert row_counts() == before
    assert balance(in_app, client.member) == 499
    assert claims(in_app) == 0


def test_claiming_past_the_per_member_limit_is_refused_with_409(account_client, reward, ledger_of, in_app,
                                                                 row_counts):
    client = account_client()
    give(ledger_of, client.member, 2000)
    reward_id = reward(per_member_limit=1)
    assert claim(client, reward_id).status_code == 303
    before = row_counts()
    response = claim(client, reward_id)
    assert response.status_code == 409
    assert "You have claimed this reward as many times as allowed." in response.get_data(as_text=True)
    assert row_counts() == before
    assert balance(in_app, client.member) == 1500


def test_a_suspended_member_is_shown_the_refusal(account_client, reward, ledger_of, in_app, row_counts):
    client = account_client()
    give(ledger_of, client.member, 2000)
    suspend_and_sign_in_again(client, in_app)
    reward_id = reward()
    before = row_counts()
    response = claim(client, reward_id)
    assert response.status_code == 409
    assert "The member is suspended and cannot spend points." in response.get_data(as_text=True)
    assert row_counts() == before


def test_a_claim_without_a_csrf_token_is_refused_and_changes_nothing(account_client, reward, ledger_of, in_app,
                                                                     row_counts):
    client = account_client()
    give(ledger_of, client.member, 800)
    reward_id = reward()
    before = row_counts()
    response = client.post(f"/account/rewards/{reward_id}/claim")
    assert response.status_code == 400
    assert "This form has expired" in response.get_data(as_text=True)
    assert row_counts() == before
    assert balance(in_app, client.member) == 800


def test_claiming_a_reward_that_does_not_exist_is_a_404_page(account_client, row_counts):
    client = account_client()
    before = row_counts()
    response = claim(client, "rwd_nope")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "No reward has this id." in response.get_data(as_text=True)
    assert row_counts() == before


def test_the_same_claim_form_sent_twice_claims_once(account_client, reward, ledger_of, in_app):
    client = account_client()
    give(ledger_of, client.member, 2000)
    reward_id = reward(points_cost=500)
    first = claim(client, reward_id, claim_key="k" * 22)
    again = claim(client, reward_id, claim_key="k" * 22)
    assert (first.status_code, again.status_code) == (303, 303)
    assert balance(in_app, client.member) == 1500
    assert claims(in_app) == 1


def test_a_staff_session_cannot_claim(console_client, reward, row_counts, app):
    client = console_client("admin")
    reward_id = reward()
    before = row_counts()
    token = csrf_token(client, "/console/")
    response = client.post(f"/account/rewards/{reward_id}/claim", data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/account/login")
    assert row_counts() == before
