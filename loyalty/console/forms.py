"""Forms in, services called, one unit of work out: the console's side of what `@write` does for the API."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import request
from marshmallow import Schema, fields
from marshmallow import ValidationError as MarshmallowError

from loyalty.audit import service as audit
from loyalty.errors import Problem, ValidationProblem, flatten_messages
from loyalty.unit_of_work import unit_of_work

T = TypeVar("T")

PAGE_SIZE = 25
_NOT_FIELDS = {"csrf_token", "submit"}
_NEVER_SHOWN = {"csrf_token", "password"}
_WHOLE_NUMBER = re.compile(r"[+-]?\d{1,18}")
_LOCAL_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")


def form_data(schema: Schema, form: Any | None = None) -> dict[str, Any]:
    """The submitted form loaded through `schema`, the API's own schema where there is one.

    Blank inputs count as not given, so optional fields fall back to their defaults; list fields take
    every value of a repeated input (checkboxes); numbers and times are typed as JSON would carry them
    (`_typed`). Invalid input raises a ValidationProblem whose `errors` the form shows beside each field.
    """
    form = request.form if form is None else form
    raw: dict[str, Any] = {}
    for name in form:
        if name in _NOT_FIELDS:
            continue
        field = schema.fields.get(name)
        if isinstance(field, fields.List):
            raw[name] = [v for v in form.getlist(name) if v.strip()]
        elif isinstance(field, fields.Boolean):
            raw[name] = form.getlist(name)[-1]  # a checkbox sends its hidden "false" first, then "true" if ticked
        elif form[name].strip():
            raw[name] = _typed(field, form[name].strip())
    try:
        return schema.load(raw)
    except MarshmallowError as error:
        raise ValidationProblem(errors=flatten_messages(error.messages)) from None


def _typed(field: fields.Field | None, text: str) -> Any:
    """Forms send text; the API's schemas take integers strictly (no "100" for 100 in JSON) and times with
    an offset. A whole number typed for an integer is a number, a `datetime-local` value is UTC; anything
    else is left for the schema to refuse."""
    if isinstance(field, fields.Integer):
        return whole_number(text)
    if isinstance(field, fields.AwareDateTime):
        return in_utc(text)
    return text


def whole_number(text: str) -> int | str:
    """Form text as JSON would carry it: a whole number becomes an integer; anything else stays text, for a
    strict integer field to refuse in its own words. For inputs no schema field names (nested values)."""
    return int(text) if _WHOLE_NUMBER.fullmatch(text) else text


def in_utc(text: str) -> str:
    """A `datetime-local` input sends no offset; the console shows times in UTC, so that is what it means."""
    return f"{text}+00:00" if _LOCAL_TIME.fullmatch(text) else text


def submitted(lists: Iterable[str] = ()) -> dict[str, Any]:
    """What the form sent, to fill a refused form in again: each input's last value (a ticked checkbox's
    "true" comes after its hidden "false"), and every value of the inputs named in `lists` (checkbox groups).
    A password is never sent back into a page."""
    lists = set(lists)
    return {name: values if name in lists else values[-1]
            for name, values in request.form.lists() if name not in _NEVER_SHOWN}


def attempt(action: Callable[[], T]) -> tuple[T | None, Problem | None]:
    """Run a form's action as one unit of work (`loyalty.unit_of_work`): committed when it succeeds; when it
    raises a Problem, rolled back, and the problem handed to the form, which shows it. A staff member's unit of
    work is audited as the API's are (`loyalty.audit`); a member's own is not."""
    with audit.capturing(audit.staff_actor()) as capture:
        try:
            with unit_of_work():
                result = action()
                capture.record(None)  # the status is the page's, drawn after the commit
        except Problem as problem:
            return None, problem
        return result, None


def page_args() -> dict[str, Any]:
    """`starting_after` from the query string, for the services' cursor pagination."""
    return {"limit": PAGE_SIZE, "starting_after": cursor()}


def cursor(name: str = "starting_after") -> str | None:
    """A pagination cursor from the query string (the last row's public id), or None for the first page."""
    after = request.args.get(name, "").strip()
    if len(after) > 64:
        raise ValidationProblem(errors={name: ["Not an id in this list."]})
    return after or None
