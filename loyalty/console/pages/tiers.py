"""Tiers: the ladder with its benefits, and the forms that add and edit a tier.

The forms load through the API's own tier fields, so the console validates exactly as the API does;
members move only at the next evaluation. After a save the console shows what that evaluation would do
(grace included) and who would move, a page at a time.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request

from loyalty.clock import now
from loyalty.console.access import PROGRAM_WRITERS, READERS, staff_page
from loyalty.console.blueprints import console
from loyalty.console.forms import attempt, form_data, page_args
from loyalty.console.views import done, render_form
from loyalty.errors import Problem
from loyalty.schemas import StrictSchema
from loyalty.tiers import service
from loyalty.tiers.models import Tier
from loyalty.tiers.schemas import BenefitsSchema, TierInputSchema

# Benefits left blank keep their value (or the default, for a new tier), as the API leaves them when absent.
_KEPT_WHEN_BLANK = ("earn_multiplier", "discount_percent", "early_access_hours")
FIELDS = ("code", "name", "rank", "threshold", "basis", "currency", "window_days", "earn_multiplier",
          "discount_percent", "early_access_hours", "perks")

# The API's own tier fields, with the nested benefits beside the others: one input each. (A schema copies
# its declared fields when made, so borrowing the API's field objects changes nothing of the API's.)
_DECLARED = {**TierInputSchema._declared_fields, **BenefitsSchema._declared_fields}
TIER_FORM = StrictSchema.from_dict({name: field for name, field in _DECLARED.items() if name != "benefits"},
                                   name="TierFormSchema")()


def _submitted_tier() -> dict[str, Any]:
    data = form_data(TIER_FORM)
    data.setdefault("currency", None)  # a blank currency clears it
    return {name: value for name, value in data.items() if not (name in _KEPT_WHEN_BLANK and value is None)}


def _values_of(tier: Tier) -> dict[str, Any]:
    values = {name: getattr(tier, name) for name in FIELDS}
    values["earn_multiplier"] = str(tier.earn_multiplier)
    return values


def _saved_message(tier: Tier, verb: str) -> str:
    moves = service.preview(now(), limit=0)
    return (f"Tier {tier.name} {verb}. Nobody moves now: at the next evaluation {moves['up']} "
            f"member{'s' if moves['up'] != 1 else ''} would move up and {moves['down']} down.")


@console.get("/tiers", endpoint="tiers")
@staff_page(READERS)
def tiers():
    ladder = service.all_tiers()
    return render_template("console/tiers/list.html", title="Tiers", tiers=ladder,
                           members=service.member_counts(ladder),
                           grace={tier.id: service.grace_days(tier) for tier in ladder})


@console.route("/tiers/new", methods=["GET", "POST"], endpoint="tiers_new")
@staff_page(PROGRAM_WRITERS)
def tiers_new():
    first = not service.all_tiers()
    if request.method == "GET":
        values = {"basis": "points", "window_days": 365, "earn_multiplier": "1", "discount_percent": 0,
                  "early_access_hours": 0, **({"rank": 0, "threshold": 0} if first else {})}
        return _tier_form(values, first=first)
    message, problem = attempt(lambda: _saved_message(service.create_tier(_submitted_tier()), "added"))
    if problem:
        return _tier_form(request.form, first=first, problem=problem)
    return done(message, "console.tiers_moves")


@console.get("/tiers/moves", endpoint="tiers_moves")
@staff_page(READERS)
def tiers_moves():
    return render_template("console/tiers/moves.html", title="Who the next evaluation would move",
                           page=service.preview(now(), **page_args()))


@console.route("/tiers/<string:tier_id>/edit", methods=["GET", "POST"], endpoint="tiers_edit")
@staff_page(PROGRAM_WRITERS)
def tiers_edit(tier_id: str):
    tier = service.get_tier(tier_id)
    if request.method == "GET":
        return _tier_form(_values_of(tier), tier=tier)
    message, problem = attempt(lambda: _saved_message(service.update_tier(tier, _submitted_tier()), "saved"))
    if problem:
        return _tier_form(request.form, tier=service.get_tier(tier_id), problem=problem)
    return done(message, "console.tiers_moves")


def _tier_form(values: Any, *, tier: Tier | None = None, first: bool = False, problem: Problem | None = None):
    title = f"Edit tier {tier.name}" if tier else "New tier"
    return render_form("console/tiers/form.html", problem, title=title, tier=tier, first=first, values=values)
