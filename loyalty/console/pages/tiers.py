"""Tiers: the ladder with its benefits, and the forms that add and edit a tier.

The forms load through the API's own tier fields, so the console validates exactly as the API does;
members move only at the next evaluation, and the flash says how many would.
"""

from __future__ import annotations

import copy
from typing import Any

from flask import flash, redirect, render_template, request, url_for
from marshmallow import Schema, fields

from loyalty.clock import now
from loyalty.console.access import PROGRAM_WRITERS, READERS, staff_page
from loyalty.console.blueprints import console
from loyalty.console.forms import attempt, form_data
from loyalty.schemas import StrictSchema
from loyalty.tiers import service
from loyalty.tiers.models import Tier
from loyalty.tiers.schemas import BenefitsSchema, TierInputSchema

# Benefits left blank keep their value (or the default, for a new tier), as the API leaves them when absent.
_KEPT_WHEN_BLANK = ("earn_multiplier", "discount_percent", "early_access_hours")
FIELDS = ("code", "name", "rank", "threshold", "basis", "currency", "window_days", "earn_multiplier",
          "discount_percent", "early_access_hours", "perks")


def _form_schema() -> Schema:
    """The API's tier fields with the benefits unnested, whole numbers read from text: a form sends "10",
    which the JSON schema's strict integers refuse."""
    declared = {**TierInputSchema._declared_fields, **BenefitsSchema._declared_fields}
    declared.pop("benefits")
    copies = {}
    for name, field in declared.items():
        field = copy.deepcopy(field)
        if isinstance(field, fields.Integer):
            field.strict = False
        copies[name] = field
    return StrictSchema.from_dict(copies, name="TierFormSchema")()


TIER_FORM = _form_schema()


def _submitted_tier() -> dict[str, Any]:
    data = form_data(TIER_FORM)
    data.setdefault("currency", None)  # a blank currency clears it
    return {name: value for name, value in data.items() if not (name in _KEPT_WHEN_BLANK and value is None)}


def _values_of(tier: Tier) -> dict[str, Any]:
    values = {name: getattr(tier, name) for name in FIELDS}
    values["earn_multiplier"] = str(tier.earn_multiplier)
    return values


def _saved_message(tier: Tier, verb: str) -> str:
    moves = service.preview(service.all_tiers(), now())
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

    def create() -> str:
        return _saved_message(service.create_tier(_submitted_tier()), "added")

    message, problem = attempt(create)
    if problem:
        return _tier_form(request.form, first=first, problem=problem), problem.status
    flash(message, "success")
    return redirect(url_for("console.tiers"), 303)


@console.route("/tiers/<string:tier_id>/edit", methods=["GET", "POST"], endpoint="tiers_edit")
@staff_page(PROGRAM_WRITERS)
def tiers_edit(tier_id: str):
    tier = service.get_tier(tier_id)
    if request.method == "GET":
        return _tier_form(_values_of(tier), tier=tier)

    def update() -> str:
        return _saved_message(service.update_tier(tier, _submitted_tier()), "saved")

    message, problem = attempt(update)
    if problem:
        return _tier_form(request.form, tier=service.get_tier(tier_id), problem=problem), problem.status
    flash(message, "success")
    return redirect(url_for("console.tiers"), 303)


def _tier_form(values: Any, *, tier: Tier | None = None, first: bool = False, problem: Any = None) -> str:
    title = f"Edit tier {tier.name}" if tier else "New tier"
    return render_template("console/tiers/form.html", title=title, tier=tier, first=first, values=values,
                           problem=problem, errors=(problem.errors if problem else None) or {})
