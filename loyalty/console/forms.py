"""Forms in, services called, one unit of work out: the console's side of what `@write` does for the API."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from flask import request
from marshmallow import Schema, fields
from marshmallow import ValidationError as MarshmallowError

from loyalty.errors import Problem, ValidationProblem, flatten_messages
from loyalty.extensions import db

T = TypeVar("T")

PAGE_SIZE = 25
_NOT_FIELDS = {"csrf_token", "submit"}
_WHOLE_NUMBER = re.compile(r"[+-]?\d{1,18}")


def form_data(schema: Schema, form: Any | None = None) -> dict[str, Any]:
    """The submitted form loaded through `schema`, the API's own schema where there is one.

    Blank inputs count as not given, so optional fields fall back to their defaults; list fields take
    every value of a repeated input (checkboxes). Invalid input raises a ValidationProblem whose `errors`
    the form shows beside each field.
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
    """Forms send text; the API's schemas take integers strictly (no "100" for 100 in JSON). A whole number
    typed into a form is a number, anything else is left for the schema to refuse."""
    if isinstance(field, fields.Integer) and _WHOLE_NUMBER.fullmatch(text):
        return int(text)
    return text


def attempt(action: Callable[[], T]) -> tuple[T | None, Problem | None]:
    """Run a form's action as one unit of work: commit when it succeeds; when it raises a Problem,
    roll everything back and hand the problem to the form, which shows it."""
    try:
        result = action()
    except Problem as problem:
        db.session.rollback()
        return None, problem
    db.session.commit()
    return result, None


def page_args() -> dict[str, Any]:
    """`starting_after` from the query string, for the services' cursor pagination."""
    after = request.args.get("starting_after", "").strip()
    if len(after) > 64:
        raise ValidationProblem(errors={"starting_after": ["Not an id in this list."]})
    return {"limit": PAGE_SIZE, "starting_after": after or None}
