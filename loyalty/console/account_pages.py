"""The member's own pages: sign in, points and tier, history, coupons, rewards, and privacy (consent, a copy of
everything held on them, erasure)."""

from __future__ import annotations

import re
import secrets

from flask import redirect, render_template, request, url_for
from flask_login import current_user, logout_user

from loyalty.auth.sessions import sign_out
from loyalty.auth.throttling import login_throttled, password_confirmation_throttled
from loyalty.clock import now
from loyalty.console.access import member_page
from loyalty.console.blueprints import account
from loyalty.console.forms import attempt, page_args
from loyalty.console.sign_in import sign_in
from loyalty.console.views import done, member_data_download, render_form
from loyalty.errors import Problem
from loyalty.members import service as members
from loyalty.members.models import Member
from loyalty.offers import rewards
from loyalty.offers import service as offers
from loyalty.privacy import service as privacy
from loyalty.tiers import service as tiers

ACCOUNT_NAV = (("account.home", "Points"), ("account.history", "History"), ("account.coupons", "Coupons"),
               ("account.rewards", "Rewards"), ("account.privacy", "Privacy"))
CONSENT_LABELS = {"marketing_email": "Emails about offers and my points",
                  "sms": "Text messages about offers and my points",
                  "personalised_offers": "Offers chosen for me from what I buy"}

# What the rewards page puts in each claim form: a resent form (a double tap, a reload) claims once.
_CLAIM_KEY = re.compile(r"[A-Za-z0-9_-]{16,64}")


@account.route("/login", methods=["GET", "POST"])
@login_throttled
def login():
    return sign_in(area="account", heading="Sign in to your rewards", kind=Member,
                   authenticate=members.authenticate, home="account.home")


@account.post("/logout")
def logout():
    sign_out()
    return redirect(url_for("account.login"))


@account.get("/", endpoint="home")
@member_page
def home():
    summary = members.summary(current_user)
    return render_template("account/home.html", title="Your points", summary=summary,
                           progress=tiers.progress(summary["next_tier"]))


@account.get("/history", endpoint="history")
@member_page
def history():
    page = members.transactions(current_user, **page_args())
    return render_template("account/history.html", title="Your history", page=page)


@account.get("/coupons", endpoint="coupons")
@member_page
def coupons():
    wallet = offers.member_wallet(current_user, now())
    return render_template("account/coupons.html", title="Your coupons", wallet=wallet)


@account.get("/rewards", endpoint="rewards")
@member_page
def rewards_page():
    return _render_rewards()


@account.post("/rewards/<string:reward_id>/claim", endpoint="claim_reward")
@member_page
def claim_reward(reward_id: str):
    reference = f"{current_user.public_id}:{_claim_key()}"  # like the API's claim reference

    def claim() -> tuple[str, str]:
        _, code = rewards.claim(reward_id, current_user, reference=reference, now=now())
        return rewards.get_reward(reward_id).name, code.code

    result, problem = attempt(claim)
    if problem is not None:
        if problem.status == 404:
            raise problem  # no such reward: the error page, not the catalog
        return _render_rewards(problem)
    name, code = result
    return done(f"You claimed {name}: your code is {code}.", "account.coupons")


def _claim_key() -> str:
    """The key the rewards page gave this claim's form; a fresh one when the form sent none (or a malformed one)."""
    key = request.form.get("claim_key", "")
    return key if _CLAIM_KEY.fullmatch(key) else secrets.token_urlsafe(16)


def _render_rewards(problem: Problem | None = None):
    catalog = rewards.catalog_for(current_user, **page_args(), now=now())
    claim_keys = {entry.reward.public_id: secrets.token_urlsafe(16) for entry in catalog["data"]}
    return render_form("account/rewards.html", problem, title="Rewards", catalog=catalog, claim_keys=claim_keys)


# --- privacy: consent, a copy of everything, erasure ---------------------------------------------------------

@account.get("/privacy", endpoint="privacy")
@member_page
def privacy_page():
    return _privacy_page()


@account.post("/privacy/consents", endpoint="privacy_consents")
@member_page
def record_consents():
    """Each purpose as ticked; only a changed answer is recorded (the service skips the answer in force)."""
    wanted = set(request.form.getlist("granted"))

    def action():
        for purpose in CONSENT_LABELS:
            privacy.record_consent(current_user, purpose, purpose in wanted, source="member")

    _, problem = attempt(action)
    if problem:
        return _privacy_page(problem)
    return done("Your choices are saved.", "account.privacy")


@account.get("/privacy/export.json", endpoint="privacy_export")
@member_page
def export():
    return member_data_download(current_user)


@account.post("/privacy/erase", endpoint="privacy_erase")
@password_confirmation_throttled
@member_page
def erase():
    """Erase the account for good, once the member has typed their password again."""
    member = current_user._get_current_object()

    def action():
        members.confirm_password(member, request.form.get("password", "")[:1024])
        privacy.erase(member, now(), by="member")

    _, problem = attempt(action)
    if problem:
        return _privacy_page(problem)
    logout_user()
    return done("Your account is erased: we no longer hold your personal data.", "account.login")


def _privacy_page(problem: Problem | None = None):
    state = privacy.consent_state(current_user)
    return render_form("account/privacy.html", problem, title="Privacy", labels=CONSENT_LABELS,
                       current=state["current"], history=state["history"][:20])
