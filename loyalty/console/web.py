"""Wire the console into the app: blueprints, CSRF, HTML error pages, template filters, headers."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime

from flask import Flask, g, make_response, render_template, request, url_for
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from loyalty.console import access
from loyalty.console.blueprints import account, console
from loyalty.errors import HTTP_CODES, Problem
from loyalty.extensions import db

HTML_PREFIXES = ("/console", "/account")
csrf = CSRFProtect()
log = logging.getLogger("loyalty.console")

# Pages only load what the app serves itself: no CDN, no inline script.
_CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def init_app(app: Flask) -> None:
    # Only the HTML blueprints check tokens: the JSON API has its own check (`loyalty.auth.cross_site`).
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # the token lives as long as the session
    csrf.init_app(app)
    app.jinja_env.trim_blocks = app.jinja_env.lstrip_blocks = True

    from loyalty.console import account_pages, pages  # noqa: F401 - registers the views

    app.register_blueprint(console)
    app.register_blueprint(account)
    # Globals, not a context processor: macros imported without context see them too.
    app.jinja_env.globals.update(_template_globals())
    app.add_template_filter(points_filter, "points")
    app.add_template_filter(money_filter, "money")
    app.add_template_filter(when_filter, "when")
    app.extensions["html_errors"] = render_error


def _template_globals() -> dict:
    from loyalty.console.account_pages import ACCOUNT_NAV
    from loyalty.console.nav import NAV

    def visible_nav() -> list[tuple[str, str]]:
        return [(endpoint, label) for endpoint, label, allowed in NAV if access.can(allowed)]

    return {"can": access.can, "roles": access, "account_nav": ACCOUNT_NAV, "page_url": page_url,
            "is_current": is_current, "visible_nav": visible_nav}


def is_current(endpoint: str) -> bool:
    """Whether this page belongs to the area `endpoint` opens, for `aria-current` in the navigation."""
    area = url_for(endpoint)
    return request.path == area or (not area.endswith("/") and request.path.startswith(area + "/"))


def page_url(**changes: str | None) -> str:
    """This page's address with some query arguments changed (None drops one): for pagers and filters."""
    args = {**request.args.to_dict(), **changes}
    return url_for(request.endpoint, **(request.view_args or {}),
                   **{k: v for k, v in args.items() if v is not None})


def wants_html() -> bool:
    return request.path.startswith(HTML_PREFIXES) and not request.path.startswith("/console/static/")


def render_error(error: Exception):
    """A friendly page for every error under /console and /account, with nothing half-written; None
    elsewhere, where errors stay problem+json."""
    if not wants_html():
        return None
    with contextlib.suppress(Exception):  # during a database outage the connection may be gone
        db.session.rollback()
    if isinstance(error, CSRFError):
        status, title = 400, "This form has expired"
        detail = "The page was open too long or came from elsewhere. Go back, reload it and try again."
    elif isinstance(error, Problem):
        status, title, detail = error.status, error.title, error.detail
    elif isinstance(error, HTTPException):
        status = error.code or 500
        title = HTTP_CODES.get(status, ("", error.name))[1]
        detail = {404: "There is nothing at this address.",
                  405: "This page does not accept that kind of request."}.get(status, error.description)
    else:
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
        status, title = 500, "Something went wrong"
        detail = "Something went wrong on our side; the request id identifies it in our logs."
    area = "account" if request.path.startswith("/account") else "console"
    body = render_template("error.html", status=status, title=title, detail=detail, area=area,
                           request_id=g.get("request_id"))
    response = make_response(body, status)
    if isinstance(error, Problem):
        response.headers.update(error.headers)  # Retry-After, for one
    return _security_headers(response)


def _security_headers(response):
    response.headers.setdefault("Content-Security-Policy", _CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def points_filter(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def money_filter(amount: int | None, currency: str = "") -> str:
    """Integer minor units as `12.34 EUR`. Currencies without minor units are rare in our shops; two
    decimals is the default, as Stripe's amounts assume."""
    if amount is None:
        return "—"
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole:,}.{cents:02d} {currency.upper()}".strip()


def when_filter(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return "—" if value is None else value.strftime(fmt)


# Once, at import: an app registers the blueprints, and many apps (tests) may.
for _blueprint in (console, account):
    _blueprint.before_request(csrf.protect)
    _blueprint.after_request(_security_headers)
