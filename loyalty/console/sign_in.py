"""Signing in, the same for staff (console) and members (account pages): one form, throttled, never
redirecting anywhere but back into its own area."""

from __future__ import annotations

from collections.abc import Callable

from flask import redirect, render_template, request, url_for
from flask_login import current_user
from marshmallow import ValidationError

from loyalty.auth import sessions
from loyalty.console.access import safe_next
from loyalty.errors import Problem, ValidationProblem, flatten_messages
from loyalty.members.schemas import LoginSchema
from loyalty.unit_of_work import unit_of_work


def sign_in(*, area: str, heading: str, kind: type, authenticate: Callable[[str, str], object], home: str):
    """The login view of `area` ("console" or "account"): the form on GET; on POST, `authenticate` and go to
    `next` (or `home`). Wrong credentials show the form again, answered 401."""
    target = safe_next(request.values.get("next"), f"/{area}/", url_for(home))
    page = {"area": area, "heading": heading, "next": target}
    if request.method == "GET":
        return redirect(target) if isinstance(current_user, kind) else render_template("_login.html", **page)
    email = request.form.get("email", "").strip()
    try:
        with unit_of_work():
            credentials = _credentials(email, request.form.get("password", ""))
            user = authenticate(credentials["email"], credentials["password"])
    except Problem as problem:
        return render_template("_login.html", **page, email=email, error=problem.detail), problem.status
    sessions.sign_in(user)
    return redirect(target)


def _credentials(email: str, password: str) -> dict[str, str]:
    """The form through the API's own login schema: bounded, and free of NUL, which PostgreSQL cannot compare."""
    try:
        return LoginSchema().load({"email": email, "password": password})
    except ValidationError as error:
        raise ValidationProblem("Type your email and password again.",
                                errors=flatten_messages(error.messages)) from None
