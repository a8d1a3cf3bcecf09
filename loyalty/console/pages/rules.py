"""Rules: the versions, each version's document, the JSON and structured editors for drafts, simulation
against a sample order, impact on recent orders, and publishing.

Everything goes through `loyalty.rules.service` and the API's schemas, so a document the console accepts is
one the API accepts. Form inputs are named by their path in the document (`earn.pending_days`) or in the
API's simulation body (`order.lines.0.sku`), so the errors the schemas report land beside their inputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from flask import render_template, request
from flask_login import current_user
from marshmallow import ValidationError as MarshmallowError

from loyalty.clock import now
from loyalty.console.access import PROGRAM_WRITERS, READERS, staff_page
from loyalty.console.blueprints import console
from loyalty.console.forms import attempt, form_data, in_utc, page_args, whole_number
from loyalty.console.views import done, render_form
from loyalty.errors import NotFound, Problem, ValidationProblem, flatten_messages
from loyalty.extensions import db
from loyalty.members import service as members
from loyalty.rules import service
from loyalty.rules.document import CURRENCY, EXPIRY_POLICIES
from loyalty.rules.models import RuleVersion
from loyalty.rules.schemas import DraftSchema, ImpactArgsSchema, PublishSchema, RuleListArgsSchema, SimulateSchema
from loyalty.schemas import refuse_deep_json

T = TypeVar("T")

SAMPLE_LINES = 3  # rows of the sample order's line table
_EXPIRY_FIELDS = {policy: [name for name in schema._declared_fields if name != "policy"]
                  for policy, schema in EXPIRY_POLICIES.items()}
_EXPIRY_INPUTS = sorted({name for names in _EXPIRY_FIELDS.values() for name in names})
_EXPIRY_NAMES = {"none": "Points never expire", "rolling": "Months after they are earned",
                 "fixed_date": "On a fixed date each year", "inactivity": "After days without activity"}


def _read_only(action: Callable[[], T]) -> tuple[T | None, Problem | None]:
    """Run a look that must write nothing (a simulation), and roll back whatever it touched."""
    try:
        return action(), None
    except Problem as problem:
        return None, problem
    finally:
        db.session.rollback()


def _pretty(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False)


# --- versions -----------------------------------------------------------------------------------------

@console.get("/rules", endpoint="rules")
@staff_page(READERS)
def rules():
    args = page_args()
    # The API's own query schema: a version is a whole number that fits its column.
    after = form_data(RuleListArgsSchema(), {"starting_after": args["starting_after"] or ""}).get("starting_after")
    page = service.list_versions(limit=args["limit"], starting_after=after)
    current = service.in_force(now())
    return render_template("console/rules/list.html", title="Rules", page=page,
                           in_force=current.version if current else None)


@console.get("/rules/<int:version>", endpoint="rules_version")
@staff_page(READERS)
def rules_version(version: int):
    return _version_page(service.get_version(version))


def _version_page(version: RuleVersion, *, problem: Problem | None = None, form: str | None = None,
                  values: Any = None, **shown: Any):
    """The version page; `form` names the form (simulate, publish, impact) that `problem` and `values` are of."""
    current = service.in_force(now())
    return render_form(
        "console/rules/version.html", problem, title=f"Rules version {version.version}", version=version,
        in_force=current is not None and current.id == version.id, document=_pretty(version.document),
        form=form, values=values or {},
        sample=values if form == "simulate" and values is not None else _sample_defaults(version),
        lines=range(SAMPLE_LINES), **shown)


# --- drafts: the JSON editor --------------------------------------------------------------------------

def _draft_input() -> dict[str, Any]:
    """The document and note, loaded through the API's draft schema; bad JSON is an error on `document`."""
    text = request.form.get("document", "")
    note = request.form.get("note", "").strip() or None
    try:
        refuse_deep_json(text)
        document = json.loads(text)
    except ValueError as error:
        detail = f"{error.msg} (line {error.lineno}, column {error.colno})" if hasattr(error, "msg") else str(error)
        raise ValidationProblem("The document is not valid JSON.", errors={"document": [f"Not valid JSON: {detail}."]}
                                ) from None
    except Problem:
        raise ValidationProblem(errors={"document": ["Nested too deeply to be a rules document."]}) from None
    try:
        return DraftSchema().load({"document": document, "note": note})
    except MarshmallowError as error:
        messages = flatten_messages(error.messages)
        if "document" in messages:
            messages["document"] = ["Must be a JSON object, such as {\"earn\": {\"rates\": {\"usd\": \"1\"}}}."]
        raise ValidationProblem(errors=messages) from None


def _draft_form(*, version: RuleVersion | None, document: str, note: str | None, problem: Problem | None = None,
                based_on: int | None = None):
    errors = dict((problem.errors if problem else None) or {})
    if any(name.startswith("document.") for name in errors) and "document" not in errors:
        errors["document"] = ["The document breaks the rules schema: see the errors listed above."]
    title = f"Edit draft version {version.version}" if version else "New rules draft"
    return render_form("console/rules/draft.html", problem, errors=errors, title=title, version=version,
                       document=document, note=note, based_on=based_on)


@console.route("/rules/new", methods=["GET", "POST"], endpoint="rules_new")
@staff_page(PROGRAM_WRITERS)
def rules_new():
    if request.method == "GET":
        document, based_on = service.starting_document(request.args.get("from", type=int), now())
        return _draft_form(version=None, document=_pretty(document), note=None, based_on=based_on)

    def create() -> RuleVersion:
        payload = _draft_input()
        return service.create_draft(payload["document"], note=payload.get("note"), staff_id=current_user.id)

    draft, problem = attempt(create)
    if problem:
        return _draft_form(version=None, document=request.form.get("document", ""),
                           note=request.form.get("note"), problem=problem)
    return done(f"Draft version {draft.version} saved. Simulate it, then publish it when it is right.",
                "console.rules_version", version=draft.version)


@console.route("/rules/<int:version>/edit", methods=["GET", "POST"], endpoint="rules_edit")
@staff_page(PROGRAM_WRITERS)
def rules_edit(version: int):
    draft = service.get_draft(version)
    if request.method == "GET":
        return _draft_form(version=draft, document=_pretty(draft.document), note=draft.note)

    def update() -> RuleVersion:
        payload = _draft_input()
        return service.update_draft(version, payload["document"], note=payload.get("note"))

    _, problem = attempt(update)
    if problem:
        return _draft_form(version=service.get_version(version), document=request.form.get("document", ""),
                           note=request.form.get("note"), problem=problem)
    return done(f"Draft version {version} saved.", "console.rules_version", version=version)


# --- drafts: the structured form of the main settings -------------------------------------------------

def _settings_values(document: dict[str, Any]) -> dict[str, Any]:
    """The main settings as the form's inputs, named by their path in the document."""
    settings = service.main_settings(document)
    values: dict[str, Any] = {}
    for path in ("earn.rates", "redeem.point_values"):
        values.update({f"{path}.{currency}": value for currency, value in (settings[path] or {}).items()})
    for path in ("earn.pending_days", "redeem.min_points", "redeem.step", "redeem.max_share_percent"):
        values[path] = settings[path]
    expiry = settings["expiry"] or {"policy": "none"}
    values.update({f"expiry.{name}": value for name, value in expiry.items()})
    return values


def _submitted_settings(document: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The main settings from the form, and where errors about a newly added currency should show."""
    form = request.form
    settings: dict[str, Any] = {}
    moved: dict[str, str] = {}
    current = service.main_settings(document)
    for path, new in (("earn.rates", "earn.rates.new"), ("redeem.point_values", "redeem.point_values.new")):
        amounts = {currency: form.get(f"{path}.{currency}", "").strip() for currency in (current[path] or {})}
        amounts = {currency: value for currency, value in amounts.items() if value}
        added, value = form.get(f"{new}_currency", "").strip().lower(), form.get(f"{new}_value", "").strip()
        if added or value:
            amounts[added] = value
            moved[f"{path}.{added}"] = f"{new}_value" if _is_currency(added) else f"{new}_currency"
        settings[path] = amounts
    for path in ("earn.pending_days", "redeem.min_points", "redeem.step", "redeem.max_share_percent"):
        value = form.get(path, "").strip()
        settings[path] = whole_number(value) if value else None  # blank: the default
    policy = form.get("expiry.policy", "none")
    expiry: dict[str, Any] = {"policy": policy}
    for name in _EXPIRY_FIELDS.get(policy, []):
        value = form.get(f"expiry.{name}", "").strip()
        if value:
            expiry[name] = whole_number(value)
    settings["expiry"] = expiry
    return settings, moved


def _is_currency(code: str) -> bool:
    try:
        CURRENCY(code)
    except MarshmallowError:
        return False
    return True


def _settings_errors(problem: Problem, moved: dict[str, str]) -> dict[str, list[str]]:
    errors = {}
    for path, messages in (problem.errors or {}).items():
        name = path.removeprefix("document.")
        errors[moved.get(name, name)] = messages
    return errors


@console.route("/rules/<int:version>/settings", methods=["GET", "POST"], endpoint="rules_settings")
@staff_page(PROGRAM_WRITERS)
def rules_settings(version: int):
    draft = service.get_draft(version)
    if request.method == "GET":
        return _settings_form(draft, _settings_values(draft.document))
    settings, moved = _submitted_settings(draft.document)
    document, note = draft.document, draft.note

    def update() -> RuleVersion:
        return service.update_draft(version, service.with_main_settings(document, settings), note=note)

    _, problem = attempt(update)
    if problem:
        problem.errors = _settings_errors(problem, moved) or None  # named as the form's inputs are
        return _settings_form(service.get_version(version), request.form, problem=problem)
    return done(f"The main settings of draft version {version} are saved.", "console.rules_version", version=version)


def _settings_form(draft: RuleVersion, values: Any, *, problem: Problem | None = None):
    settings = service.main_settings(draft.document)
    rates, point_values = sorted(settings["earn.rates"] or {}), sorted(settings["redeem.point_values"] or {})
    shown = [*(f"earn.rates.{c}" for c in rates), *(f"redeem.point_values.{c}" for c in point_values),
             "earn.rates.new_currency", "earn.rates.new_value", "redeem.point_values.new_currency",
             "redeem.point_values.new_value", "earn.pending_days", "redeem.min_points", "redeem.step",
             "redeem.max_share_percent", "expiry.policy", *(f"expiry.{name}" for name in _EXPIRY_INPUTS)]
    return render_form(
        "console/rules/settings.html", problem, title=f"Main settings of draft version {draft.version}",
        version=draft, values=values, shown=shown, rates=rates, point_values=point_values,
        policies=[(policy, _EXPIRY_NAMES.get(policy, policy)) for policy in EXPIRY_POLICIES])


# --- publishing ---------------------------------------------------------------------------------------

@console.post("/rules/<int:version>/publish", endpoint="rules_publish")
@staff_page(PROGRAM_WRITERS)
def rules_publish(version: int):
    def publish() -> RuleVersion:
        effective_from = form_data(PublishSchema()).get("effective_from")  # blank: now
        return service.publish(version, effective_from=effective_from, staff_id=current_user.id, now=now())

    published, problem = attempt(publish)
    if problem:
        return _version_page(service.get_version(version), problem=problem, form="publish", values=request.form)
    start = published.effective_from.strftime("%Y-%m-%d %H:%M UTC")
    return done(f"Version {version} is published, in force from {start}.", "console.rules_version", version=version)


# --- simulation and impact ----------------------------------------------------------------------------

def _sample_defaults(version: RuleVersion) -> dict[str, Any]:
    rates = (version.document.get("earn") or {}).get("rates") or {}
    return {"order.currency": next(iter(sorted(rates)), "usd"), "order.lines.0.sku": "SAMPLE",
            "order.lines.0.quantity": 1, "order.lines.0.unit_amount": 10000}


def _sample_input() -> dict[str, Any]:
    """The sample order, loaded through the API's simulation schema. Inputs are named by their path in that
    body (`order.lines.0.sku`); a line left wholly blank is no line."""
    form = request.form
    order: dict[str, Any] = {"currency": form.get("order.currency", "").strip().lower(), "lines": []}
    for index in range(SAMPLE_LINES):
        line = {name: form.get(f"order.lines.{index}.{name}", "").strip()
                for name in ("sku", "category", "quantity", "unit_amount")}
        if any(line.values()):
            order["lines"].append({name: whole_number(value) for name, value in line.items() if value})
    for name in ("shipping_amount", "discount_amount"):
        if value := form.get(f"order.{name}", "").strip():
            order[name] = whole_number(value)
    if paid_at := form.get("order.paid_at", "").strip():
        order["paid_at"] = in_utc(paid_at)
    body: dict[str, Any] = {"order": order}
    if member_id := form.get("member_id", "").strip():
        body["member_id"] = member_id
    try:
        return SimulateSchema().load(body)
    except MarshmallowError as error:
        raise ValidationProblem("The sample order is invalid; see errors.",
                                errors=flatten_messages(error.messages)) from None


@console.post("/rules/<int:version>/simulate", endpoint="rules_simulate")
@staff_page(PROGRAM_WRITERS)
def rules_simulate(version: int):
    stored = service.get_version(version)

    def simulate():
        sample = _sample_input()
        member = None
        if sample.get("member_id"):
            try:
                member = members.get_member(sample["member_id"])
            except NotFound:
                raise ValidationProblem(errors={"member_id": ["No member has this id."]}) from None
        at = sample["order"].get("paid_at") or now()  # campaigns and expiry read when the order is paid
        return service.simulate(service.parsed(stored), sample["order"], member, at)

    result, problem = _read_only(simulate)
    return _version_page(service.get_version(version), problem=problem, form="simulate", values=request.form,
                         simulation=result)


@console.get("/rules/<int:version>/impact", endpoint="rules_impact")
@staff_page(READERS)
def rules_impact(version: int):
    stored = service.get_version(version)
    try:
        last = form_data(ImpactArgsSchema(), {"last": request.args.get("last", "").strip() or "100"})["last"]
    except ValidationProblem as problem:
        return _version_page(stored, problem=problem, form="impact", values=request.args)
    return _version_page(stored, form="impact", values={"last": last},
                         impact=service.impact(stored, last=last, now=now()))
