"""Members: look-up, the member page (points, tier, journal, coupons, redemptions), point adjustments,
suspension, and the member's data: export and erasure. Every staff role reads; support and admins change."""

from __future__ import annotations

import secrets
from typing import Any

from flask import render_template, request
from flask_login import current_user

from loyalty.checkout import service as checkout
from loyalty.clock import now
from loyalty.console.access import MEMBER_WRITERS, READERS, staff_page
from loyalty.console.blueprints import console
from loyalty.console.forms import attempt, cursor, form_data, page_args
from loyalty.console.views import done, member_data_download, render_form
from loyalty.errors import Problem, ValidationProblem
from loyalty.members import service as members
from loyalty.members.models import Member
from loyalty.members.schemas import AdjustmentSchema
from loyalty.offers import service as offers
from loyalty.privacy import service as privacy
from loyalty.tiers import service as tiers

MAX_QUERY = 254  # as the API's member search
REDEMPTIONS_PAGE = 10
TIER_CHANGES_SHOWN = 10
COUPONS_SHOWN = 20


@console.get("/members", endpoint="members")
@staff_page(READERS)
def members_list():
    q = request.args.get("q", "").strip()
    if len(q) > MAX_QUERY:
        return render_template("console/members/index.html", title="Members", q=q, page=None, standings={},
                               errors={"q": [f"At most {MAX_QUERY} characters."]}), 422
    page = members.search(q=q or None, **page_args())
    return render_template("console/members/index.html", title="Members", q=q, page=page,
                           standings=members.standings(page["data"]), errors={})


@console.get("/members/<member_id>", endpoint="member")
@staff_page(READERS)
def member_page(member_id: str):
    return _member_page(members.get_member(member_id))


@console.post("/members/<member_id>/adjust", endpoint="member_adjust")
@staff_page(MEMBER_WRITERS)
def adjust(member_id: str):
    member = members.get_member(member_id)

    def action():
        data = form_data(AdjustmentSchema())
        # A fresh reference per submission, as the API's: the redirect after success keeps a reload from
        # sending it again.
        return members.adjust_points(member, data["points"], data["reason"],
                                     reference=f"adjust:req_{secrets.token_hex(12)}", staff_id=current_user.id,
                                     expires_at=data.get("expires_at"))

    txn, problem = attempt(action)
    if problem:
        return _member_page(member, problem, problem_form="adjust", adjustment=request.form)
    return done(f"{txn.points:+,} points adjusted. Available now: {txn.available_after:,}.", "console.member",
                member_id=member.public_id)


@console.post("/members/<member_id>/suspend", endpoint="member_suspend")
@staff_page(MEMBER_WRITERS)
def suspend(member_id: str):
    return _set_status(member_id, "suspended", "Member suspended: they keep their points but may not spend them.")


@console.post("/members/<member_id>/reinstate", endpoint="member_reinstate")
@staff_page(MEMBER_WRITERS)
def reinstate(member_id: str):
    return _set_status(member_id, "active", "Member reinstated: they may spend their points again.")


@console.get("/members/<member_id>/export.json", endpoint="member_export")
@staff_page(MEMBER_WRITERS)
def export(member_id: str):
    """Everything held on the member, to answer their access request: as the API's export."""
    return member_data_download(members.get_member(member_id))


@console.post("/members/<member_id>/erase", endpoint="member_erase")
@staff_page(MEMBER_WRITERS)
def erase(member_id: str):
    """Erase for good, once the member's id is typed again: there is no undo."""
    member = members.get_member(member_id)

    def action():
        if request.form.get("confirm", "").strip() != member.public_id:
            raise ValidationProblem("Type the member's id to confirm the erasure.",
                                    errors={"confirm": [f"Type {member.public_id} to confirm."]})
        return privacy.erase(member, now(), by="staff")

    erasure, problem = attempt(action)
    if problem:
        return _member_page(member, problem, problem_form="erase")
    return done(f"Member erased: personal data removed, {erasure.points_forfeited:,} points forfeited.",
                "console.member", member_id=member.public_id)


def _set_status(member_id: str, status: str, message: str):
    member = members.get_member(member_id)
    _, problem = attempt(lambda: members.set_status(member, status))
    if problem:
        return _member_page(member, problem, problem_form="status")
    return done(message, "console.member", member_id=member.public_id)


def _member_page(member: Member, problem: Problem | None = None, **form: Any):
    """The member page; a refused form (`problem_form`) comes back on it with its problem and the values sent."""
    history = tiers.history(member)
    coupons = offers.member_coupons(member, now())
    context = {
        "title": member.email or member.public_id,
        "member": member,
        "summary": members.summary(member),
        "tier_changes": history[:TIER_CHANGES_SHOWN],
        "more_tier_changes": max(len(history) - TIER_CHANGES_SHOWN, 0),
        "journal": members.transactions(member, **page_args()),
        "redemptions": checkout.member_redemptions(member, limit=REDEMPTIONS_PAGE,
                                                   starting_after=cursor("redemptions_after")),
        "coupons": coupons[:COUPONS_SHOWN],
        "more_coupons": max(len(coupons) - COUPONS_SHOWN, 0),
        "problem_form": None, "adjustment": {},
    }
    return render_form("console/members/show.html", problem, **{**context, **form})
