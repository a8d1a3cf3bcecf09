"""`flask --app wsgi loyalty ...`: operator commands."""

from __future__ import annotations

import secrets
import sys
import time
from decimal import Decimal
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

from loyalty.auth import service as auth
from loyalty.auth.models import API_KEY_SCOPES, STAFF_ROLES
from loyalty.checkout import service as checkout
from loyalty.clock import now
from loyalty.errors import Problem
from loyalty.extensions import db
from loyalty.jobs.cli import jobs_cli, worker
from loyalty.ledger import verify as ledger_verify
from loyalty.members import service as members
from loyalty.offers import rewards
from loyalty.offers import service as offers
from loyalty.rules import service as rules
from loyalty.tiers import service as tiers
from loyalty.unit_of_work import unit_of_work

cli = AppGroup("loyalty", help="Loyalty operator commands.")

DEMO_ADMIN_EMAIL = "admin@demo.loyalty.test"
DEMO_MEMBERS = (
    ("ada@demo.loyalty.test", "Ada Lovelace", "shop-1001"),
    ("grace@demo.loyalty.test", "Grace Hopper", "shop-1002"),
    ("alan@demo.loyalty.test", "Alan Turing", "shop-1003"),
)
DEMO_CREDENTIALS_FILE = "demo-credentials.txt"
DEMO_TIERS = (
    {"code": "member", "name": "Member", "rank": 0, "threshold": 0, "basis": "points", "window_days": 365},
    {"code": "silver", "name": "Silver", "rank": 1, "threshold": 500, "basis": "points", "window_days": 365,
     "earn_multiplier": Decimal("1.25"), "early_access_hours": 12},
    {"code": "gold", "name": "Gold", "rank": 2, "threshold": 2000, "basis": "points", "window_days": 365,
     "earn_multiplier": Decimal("1.5"), "discount_percent": 5, "early_access_hours": 24,
     "perks": "Free returns"},
)
DEMO_RULES = {
    "earn": {"rates": {"usd": "1", "eur": "1"}, "pending_days": 14, "first_order_points": 100,
             "multipliers": [{"id": "shoes-x2", "categories": ["shoes"], "multiplier": "2",
                              "description": "Double points on shoes"}],
             "caps": {"per_order": 10000}},
    "expiry": {"policy": "rolling", "months": 12},
    "events": {"signup": {"points": 100}, "birthday": {"points": 200, "timing": "month"},
               "referral": {"referrer_points": 500, "referred_points": 250, "max_per_referrer": 10},
               "review": {"points": 20}},
    "redeem": {"point_values": {"usd": "1", "eur": "1"}, "min_points": 500, "step": 100, "max_share_percent": 50},
}


def _fail(problem: Problem) -> None:
    details = "; ".join(f"{k}: {' '.join(v)}" for k, v in (problem.errors or {}).items())
    raise click.ClickException(f"{problem.detail} {details}".strip())


@cli.command("create-staff")
@click.option("--email", required=True)
@click.option("--role", required=True, type=click.Choice(STAFF_ROLES))
@click.option("--name", default=None)
@click.option("--password", default=None, help="Prompted for when omitted (or generated without a terminal).")
def create_staff(email: str, role: str, name: str | None, password: str | None) -> None:
    """Create a staff user."""
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
        else:
            password, generated = secrets.token_urlsafe(12), True
    if len(password) < 8:
        raise click.ClickException("The password needs at least 8 characters.")
    try:
        with unit_of_work():
            staff = auth.create_staff(email=email, role=role, name=name, password=password)
    except Problem as problem:
        _fail(problem)
    click.echo(f"created staff {staff.public_id} <{staff.email}> role={staff.role}")
    if generated:
        click.echo(f"password: {password}")


@cli.command("create-api-key")
@click.option("--name", required=True)
@click.option("--scopes", required=True, help=f"Comma-separated: {','.join(API_KEY_SCOPES)}")
def create_api_key(name: str, scopes: str) -> None:
    """Create an API key and print it once."""
    try:
        wanted = [s.strip() for s in scopes.split(",") if s.strip()]
        with unit_of_work():
            key, secret = auth.create_api_key(name=name, scopes=wanted)
    except Problem as problem:
        _fail(problem)
    click.echo(f"created API key {key.public_id} scopes={key.scopes.replace(' ', ',')}")
    click.echo(f"key (shown once): {secret}")


@cli.command("seed-demo")
def seed_demo() -> None:
    """Seed a demo program once: tiers, offers, rewards, rules, an admin, an API key with every scope, and a
    few members with an order.

    The credentials go to instance/demo-credentials.txt (the key cannot be shown again
    otherwise) and are printed on every run.
    """
    credentials = Path(current_app.instance_path) / DEMO_CREDENTIALS_FILE
    if not tiers.all_tiers():
        with unit_of_work():
            for fields in DEMO_TIERS:
                tiers.create_tier(dict(fields))
            offer = offers.create_offer({"name": "Gold members: 15% off", "kind": "percent_off", "percent": 15,
                                         "eligible_tiers": ["gold"], "code": "GOLD15"})
            rewards.create_reward({"offer_id": offer.public_id, "name": "15% off for Gold", "points_cost": 500})
            welcome = offers.create_offer({"name": "USD 5 off", "kind": "amount_off", "amount": 500,
                                           "currency": "usd", "min_order_amount": 2500})
            rewards.create_reward({"offer_id": welcome.public_id, "name": "USD 5 off your next order",
                                   "points_cost": 500, "per_member_limit": 3})
        click.echo("Created demo tiers, offers and rewards.")
    if not rules.list_versions(limit=1)["data"]:
        with unit_of_work():
            draft = rules.create_draft(DEMO_RULES, note="Demo program", staff_id=None)
            rules.publish(draft.version, effective_from=None, staff_id=None, now=now())
        click.echo(f"Published demo rules as version {draft.version}.")
    if auth.find_staff_by_email(DEMO_ADMIN_EMAIL) is None:
        password = secrets.token_urlsafe(9)
        member_password = secrets.token_urlsafe(9)
        with unit_of_work():
            auth.create_staff(email=DEMO_ADMIN_EMAIL, role="admin", name="Demo Admin", password=password)
            _, key = auth.create_api_key(name="demo", scopes=API_KEY_SCOPES)
            for n, (email, name, external_id) in enumerate(DEMO_MEMBERS, start=1):
                member = members.enrol(
                    members.NewMember(email=email, name=name, external_id=external_id,
                                      password=member_password, marketing_consent=True),
                    source="seed",
                )
                checkout.record_paid_order({
                    "order_id": f"demo-{n}", "member_id": member.public_id, "currency": "usd",
                    "total_amount": 4200 * n,
                    "lines": [{"sku": "DEMO-TEE", "category": "apparel", "quantity": n, "unit_amount": 4200}],
                }, now=now())
        credentials.parent.mkdir(parents=True, exist_ok=True)
        credentials.write_text(
            f"staff login:  {DEMO_ADMIN_EMAIL} / {password}\n"
            f"api key:      {key}\n"
            f"members:      {', '.join(e for e, _, _ in DEMO_MEMBERS)} / {member_password}\n"
        )
        credentials.chmod(0o600)
        click.echo("Seeded the demo program.")
    else:
        click.echo("The demo program is already seeded.")
    if credentials.exists():
        click.echo(credentials.read_text().rstrip())


ledger_cli = AppGroup("ledger", help="The points ledger.")
cli.add_command(ledger_cli)
cli.add_command(jobs_cli)
cli.add_command(worker)


@ledger_cli.command("verify")
def verify_ledger() -> None:
    """Check every ledger invariant over the whole database; exit 1 on any breach."""
    started = time.perf_counter()
    results = ledger_verify.verify(db.session)
    for result in results:
        click.echo(f"{'ok' if result.ok else 'BREACH':6} {result.check.name}: {result.check.description}")
        if not result.ok:
            click.echo(f"       {result.breaches} breaching rows; first {len(result.examples)}:")
            for example in result.examples:
                click.echo(f"         {example}")
    totals = ledger_verify.program_totals(db.session)
    click.echo("program totals: " + ", ".join(f"{kind}={total}" for kind, total in totals.items()))
    breaches = [r for r in results if not r.ok]
    click.echo(f"{len(results)} checks, {len(breaches)} breached, in {time.perf_counter() - started:.2f} s")
    if breaches:
        sys.exit(1)
