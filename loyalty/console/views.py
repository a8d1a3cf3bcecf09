"""What every console and account view does around its one service call: show a page with a form, fresh or
refused, and after an action succeeds say so and send the browser on (post/redirect/get)."""

from __future__ import annotations

from typing import Any

from flask import Response, flash, redirect, render_template, url_for

from loyalty.clock import now
from loyalty.errors import Problem
from loyalty.members.models import Member
from loyalty.privacy import service as privacy


def render_form(template: str, problem: Problem | None = None, *, errors: dict[str, list[str]] | None = None,
                **context: Any) -> tuple[str, int]:
    """A page with a form: 200 when fresh; when refused, the problem, its field errors beside the inputs
    (`errors` when the page names its inputs otherwise) and the problem's status."""
    if errors is None:
        errors = (problem.errors if problem else None) or {}
    return render_template(template, problem=problem, errors=errors, **context), problem.status if problem else 200


def member_data_download(member: Member) -> Response:
    """Everything held on a member as a JSON file, as the API's export answers it."""
    moment = now()
    return Response(privacy.export_json(member, moment), mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="{privacy.export_filename(member, moment)}"',
        "Cache-Control": "no-store"})


def done(message: str, endpoint: str, *, category: str = "success", **values: Any) -> Response:
    """After a form's action succeeded: say what happened (`category` "warning" when it did not go as hoped),
    and redirect with 303 so a reload sends nothing."""
    flash(message, category)
    return redirect(url_for(endpoint, **values), 303)
