"""A tour of every console page, and the member's pages, in a real browser, on a program with real-looking data.

Each page goes through `look`: a full-page screenshot in tests/.screenshots/ (tour-<viewport>-<page>.png) and the
small accessibility audit, and no page may scroll sideways, on a desktop or on a phone. The desktop tour must reach
every GET page the console registers, so a new page without a visit here fails.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from urllib.parse import urlsplit

import pytest
from flask import Flask
from sqlalchemy import select

from loyalty.auth import service as auth
from loyalty.checkout import service as checkout
from loyalty.clock import now
from loyalty.extensions import db
from loyalty.jobs import service as jobs
from loyalty.ledger import service as ledger
from loyalty.members import service as members
from loyalty.offers import rewards as catalog
from loyalty.offers import service as offers
from loyalty.rules import service as rules
from loyalty.tiers import service as tiers
from loyalty.webhooks import inbound, outbound
from loyalty.webhooks.models import WebhookDelivery
from tests import stripe_events as se
from tests.browser import look
from tests.conftest import PASSWORD, StoppedClock, publish_rules

# Not pages: a file download (fetched, not looked at) and the stylesheet.
# Downloads, fetched rather than looked at.
NOT_PAGES = {"console.static", "console.offers_codes_csv", "console.member_export", "account.privacy_export",
             "console.reports_summary_csv", "console.reports_liability_csv"}

RULES = {"earn": {"rates": {"usd": "1", "eur": "1.1"}, "pending_days": 0,
                  "multipliers": [{"id": "shoes", "categories": ["shoes"], "multiplier": "2",
                                   "description": "Double points on shoes"}]},
         "expiry": {"policy": "rolling", "months": 12},
         "events": {"signup": {"points": 100}},
         "redeem": {"point_values": {"usd": "1"}, "max_share_percent": 50}}  # a point pays a cent
DRAFT = {**RULES, "earn": {**RULES["earn"], "rates": {"usd": "1.5", "eur": "1.1"}, "campaigns": [
    {"id": "spring-sale", "name": "Spring sale", "starts_at": "2026-03-20T00:00:00+00:00",
     "ends_at": "2026-04-20T00:00:00+00:00", "multiplier": "2", "min_spend": 5000}]}}
LADDER = [("member", "Member", 0, 0, 1, 0), ("silver", "Silver", 1, 500, "1.25", 5),
          ("gold", "Gold", 2, 2000, "1.5", 10)]  # code, name, rank, threshold, earn multiplier, discount
ORDERING = 12  # members with orders: enough to fill the tiers and the charts, few enough to seed fast
FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken"]
LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Backus", "Hamilton", "Thompson"]


@dataclass
class Program:
    admin: dict
    analyst: dict
    member: str  # the member shown on the member pages: orders, a reward, a redemption, an adjustment
    member_email: str
    tier: str
    published: int
    draft: int
    offer: str
    reward: str
    endpoint: str
    api_key: str
    staff: str


def _lines(n: int) -> list[dict]:
    return [{"sku": f"TEE-{n % 5}", "category": "apparel", "quantity": 1 + n % 3, "unit_amount": 2500},
            {"sku": "RUN-1", "category": "shoes", "quantity": 1, "unit_amount": 8900 + 100 * n}]


def _order(member_id: str, order_id: str, n: int) -> dict:
    lines = _lines(n)
    total = sum(line["quantity"] * line["unit_amount"] for line in lines)
    return {"order_id": order_id, "member_id": member_id, "currency": "usd", "lines": lines, "total_amount": total}


def _seed_members(count: int, clock: StoppedClock) -> list:
    """`count` members, the first few with three, two or one paid orders (some climb to Silver or Gold on the way),
    the others with their signup points only. The first has a password, to sign in to the account pages."""
    made, start = [], clock.at
    for n in range(count):
        clock.set(start + n * timedelta(hours=19))  # joining over the last few weeks
        name = f"{FIRST[n % 10]} {LAST[(n * 3 + n // 10) % 10]}"
        member = members.enrol(members.NewMember(
            email=f"{name.lower().replace(' ', '.')}{n}@example.test", name=name, external_id=f"shop-{1000 + n}",
            password=PASSWORD if n == 0 else None), source="test")  # one password: hashing is slow
        db.session.flush()
        for k in range(3 - n % 3 if n < ORDERING else 0):
            clock.travel(timedelta(hours=5))
            checkout.record_paid_order(_order(member.public_id, f"ord-{n:03d}-{k}", n + k), now=now())
        made.append(member)
    return made


def _seed_webhooks() -> str:
    """An endpoint that heard about everything seeded so far: a few delivered, one failed, the rest pending."""
    endpoint = outbound.create_endpoint({"url": "https://crm.example.test/hooks/loyalty", "description": "CRM sync",
                                         "event_types": ["member.created", "points.earned", "tier.changed"]},
                                        allow_private=True)
    outbound.create_endpoint({"url": "https://mail.example.test/in", "enabled": False}, allow_private=True)
    db.session.commit()
    jobs.dispatch_events(now())
    rows = db.session.scalars(select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id)
                              .order_by(WebhookDelivery.id)).all()
    for row in rows[:5]:
        row.status, row.attempts, row.delivered_at, row.last_status_code = "delivered", 1, now(), 200
    rows[-1].status, rows[-1].attempts, rows[-1].last_status_code = "failed", 8, 500
    rows[-1].last_error = "answered HTTP 500: upstream timed out while talking to the CRM's database"
    return endpoint.public_id


FAILED_STRIPE_EVENT = "evt_1TourPaymentForAnUnknownMember"


def _seed_stripe_events() -> None:
    """A payment that failed (its member is unknown), a refund waiting for its payment, one event ignored."""
    events = [se.event("payment_intent.succeeded", se.payment_intent(amount=4200, metadata={
                  "loyalty_member_id": "mem_unknown", "order_id": "ord-lost"}), event_id=FAILED_STRIPE_EVENT),
              se.event("charge.refunded", se.charge(amount=4200, amount_refunded=4200, payment_intent=se.new_id("pi"))),
              se.event("customer.created", {"id": se.new_id("cus"), "object": "customer"})]
    for event in events:
        inbound.receive(inbound.Verified(event["id"], event["type"], now(), False, event), None, now=now())


@pytest.fixture
def program(app: Flask, make_staff, stop_clock) -> Callable[[int], Program]:
    """`program(members)` seeds the program, with `members` members (more than a page of 25 to see paging)."""
    return lambda count: _seed_program(app, make_staff, stop_clock, count)


def _seed_program(app: Flask, make_staff, stop_clock, count: int) -> Program:
    today = now()
    clock = stop_clock(today - timedelta(days=25))
    admin, analyst = make_staff("admin", "ada.admin@example.test"), make_staff("analyst")
    support = make_staff("support", "sam.support@example.test")
    with app.app_context():
        for code, name, rank, threshold, multiplier, discount in LADDER:
            tier = tiers.create_tier({"code": code, "name": name, "rank": rank, "threshold": threshold,
                                      "basis": "points", "window_days": 365, "earn_multiplier": Decimal(multiplier),
                                      "discount_percent": discount, "early_access_hours": 24 * rank,
                                      "perks": "Free returns" if rank else None})
        published = publish_rules(RULES)
        draft = rules.create_draft(DRAFT, note="Spring: 1.5 points per dollar and a double-points campaign",
                                   staff_id=None).version
        offer = offers.create_offer({"name": "Spring 15% off", "kind": "percent_off", "percent": 15,
                                     "description": "15% off everything but gift cards.", "code": "SPRING15",
                                     "min_order_amount": 5000, "currency": "usd", "eligible_tiers": ["silver", "gold"],
                                     "early_access": {"gold": None}, "usage_limit_total": 500,
                                     "scope": {"exclude_categories": ["gift-cards"]},
                                     "starts_at": now() - timedelta(days=3), "ends_at": now() + timedelta(days=30)})
        offers.generate_codes(offer, 30)
        shipping = offers.create_offer({"name": "Free shipping", "kind": "free_shipping"})
        reward = catalog.create_reward({"offer_id": offer.public_id, "name": "15% off your next order",
                                        "points_cost": 500, "stock": 100, "per_member_limit": 2})
        catalog.create_reward({"offer_id": shipping.public_id, "name": "Free shipping", "points_cost": 150})
        people = _seed_members(count, clock)
        clock.set(today)
        shown = people[0]
        ledger.adjust(shown.id, 750, reason="Sorry the parcel was late", reference="tour:adjust", now=now())
        catalog.claim(reward.public_id, shown, reference="tour:claim", now=now())
        checkout.create_redemption({**_order(shown.public_id, "ord-next", 2), "amount": 14000, "points": 200},
                                   now=now(), hold_for=timedelta(minutes=15))
        key, _ = auth.create_api_key(name="Checkout server", scopes=["checkout"])
        revoked, _ = auth.create_api_key(name="Old import script", scopes=["members:read"])
        auth.revoke_api_key(revoked.public_id)
        db.session.commit()
        endpoint = _seed_webhooks()
        _seed_stripe_events()
        db.session.commit()
        return Program(admin=admin, analyst=analyst, member=shown.public_id, member_email=shown.email,
                       tier=tier.public_id, published=published, draft=draft, offer=offer.public_id,
                       reward=reward.public_id, endpoint=endpoint, api_key=key.public_id, staff=support["id"])


# The innermost elements past the right edge of the screen, outside any .table-wrap (which scrolls on its own).
_STICKING_OUT = """(width) => {
  const out = [...document.body.querySelectorAll("*")].filter(el =>
    el.getBoundingClientRect().right > width + 1 && !el.parentElement.closest(".table-wrap"));
  return out.filter(el => !out.some(other => other !== el && el.contains(other))).slice(0, 3)
    .map(el => `<${el.tagName.toLowerCase()} class="${el.className}"> ${(el.innerText || "").slice(0, 40)}`);
}"""


class Tour:
    """Visits pages in one browser tab, looks at each, and keeps every problem found so one run lists them all."""

    def __init__(self, page, app: Flask, viewport: str) -> None:
        self.page, self.viewport = page, viewport
        self.routes = app.url_map.bind("localhost")
        self.seen: set[str] = set()
        self.problems: list[str] = []

    def sign_in(self, area: str, email: str) -> None:
        self.page.get_by_label("Email").fill(email)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url(f"**/{area}/")

    def visit(self, path: str, name: str, status: int = 200) -> None:
        response = self.page.goto(path)
        if response.status != status:
            self.problems.append(f"{path}: HTTP {response.status}, not {status}")
        if response.ok:  # a page seen, not an error page in its place
            self.seen.add(self.routes.match(urlsplit(self.page.url).path, method="GET")[0])
        self.look(name)

    def look(self, name: str) -> None:
        try:
            look(self.page, f"tour-{self.viewport}-{name}")
        except AssertionError as problem:
            self.problems.append(str(problem).splitlines()[0])
        # A phone browser zooms out to fit a page that is too wide, and window.innerWidth grows with it, so
        # measure against the width the tab was opened with.
        width = self.page.viewport_size["width"]
        if (wide := self.page.evaluate("document.documentElement.scrollWidth")) > width:
            culprits = self.page.evaluate(_STICKING_OUT, width)
            self.problems.append(f"{name}: {wide}px wide on a {width}px screen, past its edge: {culprits}")

    def submit(self, button: str, name: str, status: int) -> None:
        """Press a form's button and look at the answer, which must have `status`."""
        with self.page.expect_navigation() as navigation:
            self.page.get_by_role("button", name=button).click()
        if navigation.value.status != status:
            self.problems.append(f"{name}: HTTP {navigation.value.status}, not {status}")
        if status >= 400 and not self.page.get_by_role("alert").count():
            self.problems.append(f"{name}: refused, and the page does not say why")
        self.look(name)


def console_pages(app: Flask) -> set[str]:
    return {rule.endpoint for rule in app.url_map.iter_rules()
            if rule.endpoint.startswith("console.") and "GET" in rule.methods} - NOT_PAGES


def test_an_admin_on_a_desktop_tours_every_console_page(desktop, app, program):
    tour, p = Tour(desktop, app, "desktop"), program(30)
    tour.visit("/console/login", "login")
    tour.sign_in("console", p.admin["email"])

    tour.visit("/console/", "dashboard")
    tour.visit("/console/members", "members")
    tour.visit("/console/members?q=grace", "members-search")
    desktop.get_by_role("link", name="Show everyone").click()
    desktop.get_by_role("link", name="Next page").click()
    tour.look("members-page-2")
    tour.visit(f"/console/members/{p.member}", "member")
    export = desktop.request.get(f"/console/members/{p.member}/export.json")
    assert export.status == 200 and export.headers["content-type"] == "application/json"
    desktop.get_by_role("spinbutton", name="Points").fill("0")
    desktop.get_by_role("textbox", name="Reason").fill("Nothing, by mistake")
    tour.submit("Adjust points", "member-adjust-refused", 422)

    tour.visit("/console/tiers", "tiers")
    tour.visit("/console/tiers/new", "tier-new")
    desktop.get_by_role("textbox", name="Code", exact=True).fill("Platinum!")
    tour.submit("Add tier", "tier-new-refused", 422)
    tour.visit(f"/console/tiers/{p.tier}/edit", "tier-edit")
    tour.visit("/console/tiers/moves", "tier-moves")

    tour.visit("/console/rules", "rules")
    tour.visit(f"/console/rules/{p.published}", "rules-published")
    tour.visit(f"/console/rules/{p.draft}", "rules-draft")
    desktop.get_by_label("SKU").first.fill("RUN-1")
    desktop.get_by_label("Category").first.fill("shoes")
    desktop.get_by_label("Quantity").first.fill("2")
    desktop.get_by_label("Unit amount (minor units)").first.fill("8900")
    tour.submit("Simulate", "rules-draft-simulated", 200)
    tour.visit(f"/console/rules/{p.draft}/impact?last=50", "rules-impact")
    tour.visit("/console/rules/new", "rules-new")
    tour.visit(f"/console/rules/{p.draft}/edit", "rules-edit")
    desktop.get_by_label("Rules document (JSON)").fill(json.dumps({"earn": {"rates": {"usd": "-1"}}}))
    tour.submit("Save draft", "rules-edit-refused", 422)
    tour.visit(f"/console/rules/{p.draft}/settings", "rules-settings")

    tour.visit("/console/reports", "reports")
    tour.visit("/console/reports?period=week", "reports-weekly")
    for report in ("summary", "liability"):
        csv = desktop.request.get(f"/console/reports/{report}.csv")
        assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")

    tour.visit("/console/offers", "offers")
    tour.visit(f"/console/offers/{p.offer}", "offer")
    csv = desktop.request.get(f"/console/offers/{p.offer}/codes.csv")
    assert csv.status == 200 and csv.headers["content-type"].startswith("text/csv")
    tour.visit("/console/offers/new", "offer-new")
    tour.visit(f"/console/offers/{p.offer}/edit", "offer-edit")

    tour.visit("/console/rewards", "rewards")
    tour.visit("/console/rewards/new", "reward-new")
    tour.visit(f"/console/rewards/{p.reward}/edit", "reward-edit")

    tour.visit("/console/webhooks", "webhooks")
    tour.visit(f"/console/webhooks/{p.endpoint}", "webhook")
    tour.visit(f"/console/webhooks/{p.endpoint}?status=failed", "webhook-failed")
    tour.visit("/console/webhooks/new", "webhook-new")
    desktop.get_by_role("textbox", name="URL", exact=True).fill("ftp://crm.example.test")
    tour.submit("Register the endpoint", "webhook-new-refused", 422)
    desktop.get_by_role("textbox", name="URL", exact=True).fill("https://erp.example.test/events")
    tour.submit("Register the endpoint", "webhook-created", 201)
    tour.visit(f"/console/webhooks/{p.endpoint}/edit", "webhook-edit")

    tour.visit("/console/stripe-events", "stripe-events")
    tour.visit("/console/stripe-events?status=failed", "stripe-events-failed")
    tour.submit(f"Retry event {FAILED_STRIPE_EVENT}", "stripe-event-retried", 200)

    tour.visit("/console/api-keys", "api-keys")
    tour.visit("/console/api-keys/new", "api-key-new")
    tour.submit("Create the key", "api-key-new-refused", 422)
    desktop.get_by_role("textbox", name="Name").fill("Stripe webhooks relay")
    desktop.get_by_label("checkout").check()
    tour.submit("Create the key", "api-key-created", 201)
    tour.visit(f"/console/api-keys/{p.api_key}/revoke", "api-key-revoke")

    tour.visit("/console/staff", "staff")
    tour.visit(f"/console/staff/{p.staff}", "staff-user")
    tour.visit("/console/staff/new", "staff-new")

    tour.visit("/console/audit", "audit-log")  # the tour's own writes above are in it
    tour.visit(desktop.locator('main a[href^="/console/audit/"]').first.get_attribute("href"), "audit-entry")

    tour.visit("/console/members/mem_nobody", "not-found", status=404)

    assert not tour.problems, "\n".join(tour.problems)
    assert console_pages(app) - tour.seen == set(), "console pages the tour does not visit"


def test_an_analyst_on_a_desktop_reads_pages_and_is_refused_a_form(desktop, app, program):
    tour, p = Tour(desktop, app, "analyst"), program(4)
    desktop.goto("/console/login")
    tour.sign_in("console", p.analyst["email"])
    tour.visit(f"/console/members/{p.member}", "member")
    tour.visit(f"/console/offers/{p.offer}", "offer")
    assert desktop.get_by_role("link", name="Edit offer").count() == 0
    tour.visit("/console/tiers/new", "forbidden", status=403)
    assert "Your role may not use this page." in desktop.locator("main").inner_text()
    assert not tour.problems, "\n".join(tour.problems)


def test_the_main_pages_fit_a_phone(phone, app, program):
    tour, p = Tour(phone, app, "phone"), program(12)
    phone.goto("/console/login")
    tour.sign_in("console", p.admin["email"])
    tour.visit("/console/", "dashboard")
    tour.visit("/console/members", "members")
    tour.visit(f"/console/members/{p.member}", "member")
    tour.visit("/console/tiers", "tiers")
    tour.visit(f"/console/rules/{p.draft}", "rules-draft")
    tour.visit(f"/console/offers/{p.offer}", "offer")
    tour.visit("/console/offers/new", "offer-new")
    tour.visit(f"/console/webhooks/{p.endpoint}", "webhook")
    assert not tour.problems, "\n".join(tour.problems)


def test_a_member_with_history_on_a_phone_sees_every_account_page(phone, app, program):
    tour, p = Tour(phone, app, "account"), program(4)
    tour.visit("/account/login", "login")
    tour.sign_in("account", p.member_email)
    for path, name in (("/account/", "home"), ("/account/history", "history"), ("/account/coupons", "coupons"),
                       ("/account/rewards", "rewards"), ("/account/privacy", "privacy")):
        tour.visit(path, name)
    export = phone.request.get("/account/privacy/export.json")
    assert export.status == 200 and export.headers["content-type"] == "application/json"
    account_pages = {rule.endpoint for rule in app.url_map.iter_rules()
                     if rule.endpoint.startswith("account.") and "GET" in rule.methods} - NOT_PAGES
    assert not tour.problems, "\n".join(tour.problems)
    assert account_pages - tour.seen == set()
