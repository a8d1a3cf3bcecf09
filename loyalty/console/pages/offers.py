"""Offers, their codes, and the reward catalog: what the admin API does, as pages, through the same
schemas and services. Every staff role reads; those who run the program (PROGRAM_WRITERS) change things."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Response, render_template, request, stream_with_context
from marshmallow import ValidationError, fields, pre_load, validates_schema

from loyalty.clock import now
from loyalty.console.access import PROGRAM_WRITERS, READERS, staff_page
from loyalty.console.blueprints import console
from loyalty.console.forms import attempt, form_data, page_args, submitted, whole_number
from loyalty.console.views import done, render_form
from loyalty.errors import Problem
from loyalty.offers import rewards as catalog
from loyalty.offers import service
from loyalty.offers.models import OFFER_KINDS, Offer, Reward
from loyalty.offers.schemas import (
    TIER_CODE,
    GenerateCodesSchema,
    OfferInputSchema,
    OfferPatchSchema,
    RewardInputSchema,
    RewardPatchSchema,
)
from loyalty.tiers import service as tiers

KIND_LABELS = {"percent_off": "Percent off", "amount_off": "Amount off", "free_shipping": "Free shipping"}
OFFER_FLAGS = ("combines_with_points", "combines_with_tier_discount", "active")
OFFER_NUMBERS = ("percent", "amount", "min_order_amount", "usage_limit_total", "usage_limit_per_member",
                 "uses_per_code")
OFFER_INPUTS = ("name", "description", "kind", *OFFER_NUMBERS, "currency", *service.SCOPE_KEYS, "starts_at",
                "ends_at", "eligible_tiers", "early_access_tiers", *OFFER_FLAGS, "code")
REPEATED_INPUTS = ("eligible_tiers", "early_access_tiers")  # checkbox groups: every value counts
HOURS_INPUT = "early_access_hours."  # + tier code: hours before the start for that tier; blank: the tier's own
REWARD_INPUTS = ("offer_id", "name", "description", "points_cost", "stock", "per_member_limit", "coupon_valid_days",
                 "active")
CSV_HEADER = ("code", "kind", "member_id", "active", "created_at", "expires_at", "uses", "state", "orders")


# --- from what a browser sends to what the API's schemas take ------------------------------------------

class _OfferInputs:
    """Mixed into the API's offer schemas: the form's inputs folded into the API's shape. SKUs and categories
    typed comma-separated become the `scope` lists; the early-access checkboxes and their hours become
    `early_access`; a currency may be typed in capitals."""

    early_access_tiers = fields.List(TIER_CODE, load_only=True)

    @pre_load
    def _gather_offer_inputs(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data = dict(data)
        data["scope"] = {key: names for key in service.SCOPE_KEYS if (names := _split(data.pop(key, "")))}
        hours = {name[len(HOURS_INPUT):]: data.pop(name) for name in list(data) if name.startswith(HOURS_INPUT)}
        data["early_access"] = {tier: whole_number(hours[tier]) if tier in hours else None
                                for tier in data.pop("early_access_tiers", [])}
        if isinstance(data.get("currency"), str):
            data["currency"] = data["currency"].lower()
        return data


class OfferForm(_OfferInputs, OfferInputSchema):
    """A new offer."""


class OfferEditForm(_OfferInputs, OfferPatchSchema):
    """A changed offer. The form shows every field, so a blank input clears its field."""

    @pre_load
    def _blank_clears(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        cleared = {name: None for name in ("description", "percent", "amount", "currency", "starts_at", "ends_at",
                                           "usage_limit_total", "usage_limit_per_member", "uses_per_code")}
        return {**cleared, "min_order_amount": 0, "eligible_tiers": [], **data}


class RewardEditForm(RewardPatchSchema):
    """A changed reward; a blank input clears its field."""

    @pre_load
    def _blank_clears(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return {"description": None, "stock": None, "per_member_limit": None, **data}


class GenerateCodesForm(GenerateCodesSchema):
    """Codes made on the offer's page (`only` its count and expiry): by count, which must be given."""

    @validates_schema
    def _count_or_members(self, data: dict[str, Any], **kwargs: Any) -> None:  # the API's rule, for this form
        if not data.get("count"):
            raise ValidationError("Say how many codes to make.", field_name="count")


class PublicCodeForm(OfferPatchSchema):
    """A public code added on the offer's page (`only` the code), which must be given."""

    @validates_schema
    def _code_given(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data.get("code"):
            raise ValidationError("Type the code, e.g. BLACKFRIDAY.", field_name="code")


def _split(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _input_errors(errors: dict[str, list[str]] | None) -> dict[str, list[str]]:
    """The schema's error keys (`scope.include_skus.0`, `early_access.gold.value`) as the inputs' names."""
    shown: dict[str, list[str]] = {}
    for key, messages in (errors or {}).items():
        parts = key.split(".")
        if parts[0] == "scope" and len(parts) > 1:
            name = parts[1]
        elif parts[0] == "early_access" and len(parts) > 1:
            name = HOURS_INPUT + parts[1]
        else:
            name = parts[0]
        shown.setdefault(name, []).extend(messages)
    return shown


def _local(value: datetime | None) -> str | None:
    """A UTC time as a `datetime-local` input shows it."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S" if value.second else "%Y-%m-%dT%H:%M")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# --- offers ---------------------------------------------------------------------------------------------

@console.get("/offers", endpoint="offers")
@staff_page(READERS)
def offers():
    page = service.list_offers(**page_args(), newest_first=True)
    at = now()
    return render_template("console/offers/index.html", title="Offers", page=page,
                           summaries=service.offer_summaries(page["data"], at),
                           states={offer.id: service.offer_status(offer, at) for offer in page["data"]},
                           kinds=KIND_LABELS)


@console.get("/offers/<offer_id>", endpoint="offers_show")
@staff_page(READERS)
def offers_show(offer_id: str):
    return _offer_page(service.get_offer(offer_id))


def _offer_page(offer: Offer, problem: Problem | None = None, form: str | None = None):
    """The offer page; a refused form (`generate`, `public_code`) comes back on it with its problem and values."""
    at = now()
    refused: dict[str, Any] = {}
    if problem:
        refused = {"problem": problem, "errors": problem.errors or {}, "values": submitted(REPEATED_INPUTS)}
    return render_template(
        "console/offers/show.html", title=offer.name, offer=offer, kinds=KIND_LABELS,
        codes=service.code_page(offer, **page_args(), now=at), summary=service.offer_summaries([offer], at)[offer.id],
        state=service.offer_status(offer, at), tier_hours={t.code: t.early_access_hours for t in tiers.all_tiers()},
        generate=refused if form == "generate" else {}, public_code=refused if form == "public_code" else {},
    ), problem.status if problem else 200


@console.route("/offers/new", methods=["GET", "POST"], endpoint="offers_new")
@staff_page(PROGRAM_WRITERS)
def offers_new():
    if request.method == "GET":
        defaults = {"kind": "percent_off", "active": "true", "combines_with_points": "true", "uses_per_code": "1"}
        return _offer_form(None, defaults)
    offer, problem = attempt(lambda: service.create_offer(form_data(OfferForm())))
    if problem:
        return _offer_form(None, submitted(REPEATED_INPUTS), problem)
    return done(f"Offer “{offer.name}” created.", "console.offers_show", offer_id=offer.public_id)


@console.route("/offers/<offer_id>/edit", methods=["GET", "POST"], endpoint="offers_edit")
@staff_page(PROGRAM_WRITERS)
def offers_edit(offer_id: str):
    offer = service.get_offer(offer_id)
    if request.method == "GET":
        return _offer_form(offer, _offer_values(offer))
    _, problem = attempt(lambda: service.update_offer(offer, form_data(OfferEditForm())))
    if problem:
        return _offer_form(offer, submitted(REPEATED_INPUTS), problem)
    return done(f"Offer “{offer.name}” saved.", "console.offers_show", offer_id=offer.public_id)


def _offer_form(offer: Offer | None, values: dict[str, Any], problem: Problem | None = None):
    tier_list = tiers.all_tiers()
    shown = (*OFFER_INPUTS, *(HOURS_INPUT + tier.code for tier in tier_list))
    template = "console/offers/edit.html" if offer else "console/offers/new.html"
    title = f"Edit {offer.name}" if offer else "New offer"
    return render_form(template, problem, errors=_input_errors(problem.errors if problem else None), title=title,
                       offer=offer, values=values, tiers=tier_list, shown=shown, hours_input=HOURS_INPUT,
                       kinds=[(kind, KIND_LABELS[kind]) for kind in OFFER_KINDS])


def _offer_values(offer: Offer) -> dict[str, Any]:
    """An offer as its form shows it."""
    values: dict[str, Any] = {name: _text(getattr(offer, name)) for name in ("name", "description", "kind",
                                                                              "currency", *OFFER_NUMBERS)}
    values.update({key: ", ".join(offer.scope.get(key) or ()) for key in service.SCOPE_KEYS})
    values.update(starts_at=_local(offer.starts_at), ends_at=_local(offer.ends_at),
                  eligible_tiers=list(offer.eligible_tiers or ()), early_access_tiers=list(offer.early_access or {}))
    values.update({HOURS_INPUT + tier: _text(hours) for tier, hours in (offer.early_access or {}).items()})
    values.update({name: "true" if getattr(offer, name) else "false" for name in OFFER_FLAGS})
    return values


@console.post("/offers/<offer_id>/codes", endpoint="offers_generate")
@staff_page(PROGRAM_WRITERS)
def offers_generate(offer_id: str):
    offer = service.get_offer(offer_id)

    def generate() -> int:
        payload = form_data(GenerateCodesForm(only=("count", "expires_at")))
        return service.generate_codes(offer, payload["count"], expires_at=payload.get("expires_at"))

    made, problem = attempt(generate)
    if problem:
        return _offer_page(offer, problem, "generate")
    return done(f"{made:,} unique codes made.", "console.offers_show", offer_id=offer.public_id)


@console.post("/offers/<offer_id>/public-code", endpoint="offers_public_code")
@staff_page(PROGRAM_WRITERS)
def offers_public_code(offer_id: str):
    offer = service.get_offer(offer_id)

    def add() -> str:
        payload = form_data(PublicCodeForm(only=("code",)))
        code = service.normalise_code(payload["code"])
        service.update_offer(offer, payload)
        return code

    code, problem = attempt(add)
    if problem:
        return _offer_page(offer, problem, "public_code")
    return done(f"Public code {code} added.", "console.offers_show", offer_id=offer.public_id)


# Unique codes are bearer secrets: whoever holds an unassigned one gets the discount. Every staff role may
# look at an offer (the page masks its unique codes for those who cannot change it), but taking all of its
# working codes away in one file is for those who run the program and hand codes out: PROGRAM_WRITERS.
@console.get("/offers/<offer_id>/codes.csv", endpoint="offers_codes_csv")
@staff_page(PROGRAM_WRITERS)
def offers_codes_csv(offer_id: str):
    offer = service.get_offer(offer_id)
    batches = service.code_batches(offer, now=now())
    response = Response(stream_with_context(_csv_chunks(batches)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="codes-{offer.public_id}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _csv_chunks(batches: Iterable[list[dict[str, Any]]]) -> Iterator[str]:
    """The CSV, one chunk per batch of codes read: the header, then the codes in id order."""
    yield _csv_text([CSV_HEADER])
    for batch in batches:
        yield _csv_text([(row["code"].code, row["code"].kind, row["member_id"], str(row["code"].active).lower(),
                          row["code"].created_at.isoformat() if row["code"].created_at else None,
                          row["code"].expires_at.isoformat() if row["code"].expires_at else None, row["uses"],
                          row["state"], " ".join(row["orders"]))
                         for row in batch])


def _csv_text(rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerows([_safe_cell(value) for value in row] for row in rows)
    return buffer.getvalue()


def _safe_cell(value: Any) -> str:
    """A spreadsheet runs a cell starting with = + - @ (or a tab or carriage return) as a formula; a
    leading apostrophe keeps it text. Generated codes never start so; the guard is for whatever else."""
    text = "" if value is None else str(value)
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


# --- the reward catalog ---------------------------------------------------------------------------------

@console.get("/rewards", endpoint="rewards")
@staff_page(READERS)
def rewards():
    page = catalog.list_rewards(**page_args())
    return render_template("console/rewards/index.html", title="Rewards", page=page,
                           offers=catalog.offers_of(page["data"]))


@console.route("/rewards/new", methods=["GET", "POST"], endpoint="rewards_new")
@staff_page(PROGRAM_WRITERS)
def rewards_new():
    if request.method == "GET":
        defaults = {"offer_id": request.args.get("offer_id", "")[:64], "coupon_valid_days": "30", "active": "true"}
        return _reward_form(None, defaults)
    reward, problem = attempt(lambda: catalog.create_reward(form_data(RewardInputSchema())))
    if problem:
        return _reward_form(None, submitted(), problem)
    return done(f"Reward “{reward.name}” added to the catalog.", "console.rewards")


@console.route("/rewards/<reward_id>/edit", methods=["GET", "POST"], endpoint="rewards_edit")
@staff_page(PROGRAM_WRITERS)
def rewards_edit(reward_id: str):
    reward = catalog.get_reward(reward_id)
    if request.method == "GET":
        values = {name: _text(getattr(reward, name)) for name in REWARD_INPUTS if name != "offer_id"}
        return _reward_form(reward, {**values, "active": "true" if reward.active else "false"})
    _, problem = attempt(lambda: catalog.update_reward(reward, form_data(RewardEditForm())))
    if problem:
        return _reward_form(reward, submitted(), problem)
    return done(f"Reward “{reward.name}” saved.", "console.rewards")


def _reward_form(reward: Reward | None, values: dict[str, Any], problem: Problem | None = None):
    if reward:
        template, title = "console/rewards/edit.html", f"Edit {reward.name}"
        choices, offer = [], catalog.offers_of([reward])[reward.offer_id]
    else:
        template, title, offer = "console/rewards/new.html", "New reward", None
        choices = [(o.public_id, f"{o.name} ({o.public_id})")
                   for o in service.offer_choices(including=values.get("offer_id") or None)]
    return render_form(template, problem, title=title, reward=reward, offer=offer, offer_choices=choices,
                       values=values, shown=REWARD_INPUTS)
