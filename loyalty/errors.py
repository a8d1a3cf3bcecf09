"""RFC 9457 problem details: the domain's error classes and the one place that renders them.

The exception classes are plain Python so services (and the ledger, which imports
nothing from Flask) can raise them; `init_app` teaches Flask to answer them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

PROBLEM_MIME = "application/problem+json"

# Stable machine codes for plain HTTP errors raised by Flask, Werkzeug and webargs.
HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Request body too large"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("validation_error", "Invalid input"),
    429: ("rate_limited", "Too many requests"),
    500: ("internal_error", "Internal server error"),
    503: ("service_unavailable", "Service unavailable"),
}

log = logging.getLogger("loyalty.errors")


class Problem(Exception):
    """An error with a status and a stable `code`, answered as problem+json."""

    status = 400
    code = "bad_request"
    title = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Mapping[str, list[str]] | None = None,
        code: str | None = None,
        status: int | None = None,
        title: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or (title or self.title)
        self.errors = dict(errors) if errors else None
        self.code = code or self.code
        self.status = status or self.status
        self.title = title or self.title
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return problem_body(self.status, self.code, self.title, self.detail, self.errors)


class ValidationProblem(Problem):
    status, code, title = 422, "validation_error", "Invalid input"


class Unauthenticated(Problem):
    status, code, title = 401, "unauthenticated", "Authentication required"


class Forbidden(Problem):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(Problem):
    status, code, title = 404, "not_found", "Not found"


class Conflict(Problem):
    status, code, title = 409, "conflict", "Conflict"


class InsufficientPoints(Problem):
    status, code, title = 409, "insufficient_points", "Insufficient points"


class MemberSuspended(Problem):
    status, code, title = 409, "member_suspended", "Member suspended"


class HoldExpired(Problem):
    status, code, title = 409, "hold_expired", "Hold expired"


class RedemptionNotHeld(Problem):
    status, code, title = 409, "redemption_not_held", "Not held"


class IdempotencyKeyReused(Problem):
    status, code, title = 409, "idempotency_key_reused", "Idempotency key reused"


class ServiceUnavailable(Problem):
    """The database cannot be reached (or gave up on the request): nothing was changed, so the client may retry."""

    status, code, title = 503, "service_unavailable", "Service unavailable"
    RETRY_AFTER_SECONDS = 5

    def __init__(self, detail: str = "The database is not reachable; retry shortly.", **kwargs: Any) -> None:
        super().__init__(detail, headers={"Retry-After": str(self.RETRY_AFTER_SECONDS)}, **kwargs)


def is_database_outage(error: BaseException) -> bool:
    """An error that says the database is down, unreachable or gave up, rather than that the request was wrong:
    lost or refused connections, an exhausted pool, timeouts, deadlocks and serialization failures."""
    from sqlalchemy import exc

    return isinstance(error, exc.OperationalError | exc.InterfaceError | exc.DisconnectionError | exc.TimeoutError)


def problem_body(
    status: int, code: str, title: str, detail: str, errors: Mapping[str, list[str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"urn:loyalty:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = dict(errors)
    return body


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """Turn marshmallow's nested messages into `{"lines.0.sku": ["..."]}`."""
    if isinstance(messages, Mapping):
        flat: dict[str, list[str]] = {}
        for key, value in messages.items():
            # A nested object's own errors ("_schema") belong to the field that holds it.
            path = prefix if key == "_schema" and prefix else f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_messages(value, path))
        return flat
    if isinstance(messages, list | tuple) and all(isinstance(m, str) for m in messages):
        return {prefix or "_body": list(messages)}
    return {prefix or "_body": [str(messages)]}


def _webargs_errors(data: Mapping[str, Any]) -> dict[str, list[str]]:
    """webargs nests messages by location (`json`, `query`); clients only need the field."""
    flat: dict[str, list[str]] = {}
    for location_messages in (data.get("messages") or {}).values():
        flat.update(flatten_messages(location_messages))
    return flat


def init_app(app) -> None:
    """Register the handlers that answer every error as problem+json."""
    from flask import g, jsonify
    from werkzeug.exceptions import HTTPException

    # The app's own database and login manager, so this module needs no `loyalty.extensions`: every module
    # may import errors, and errors imports nothing of the app's.
    db, login_manager = app.extensions["sqlalchemy"], app.login_manager

    def respond(body: dict[str, Any], headers: Mapping[str, str] | None = None):
        response = jsonify(body)
        response.status_code = body["status"]
        response.mimetype = PROBLEM_MIME
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response

    def html_page(error: Exception):
        """The console's own error pages, where a person is looking (`loyalty.console`)."""
        render = app.extensions.get("html_errors")
        return render(error) if render else None

    def handle_problem(error: Problem):
        page = html_page(error)
        return page if page is not None else respond(error.body(), error.headers)

    def handle_http(error: HTTPException):
        if (page := html_page(error)) is not None:
            return page
        status = error.code or 500
        code, title = HTTP_CODES.get(status, (f"http_{status}", error.name))
        detail = error.description or title
        data = getattr(error, "data", None) or {}
        errors = _webargs_errors(data) if data else None
        if status == 400 and data and "Invalid JSON body." in str(data.get("messages")):
            code, detail, errors = "invalid_json", "The request body is not valid JSON.", None
        elif status == 422:
            detail = "The request has invalid fields; see errors."
        headers = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}
        headers.update(data.get("headers") or {})
        return respond(problem_body(status, code, title, detail, errors), headers)

    def handle_unexpected(error: Exception):
        if is_database_outage(error):
            with contextlib.suppress(Exception):  # the connection may be gone for good
                db.session.rollback()
            # An HTML error page shows who is signed in: it must not ask the database again.
            g._login_user = login_manager.anonymous_user()
            log.warning("database unavailable: %s", type(error).__name__, extra={"request_id": g.get("request_id")})
            return handle_problem(ServiceUnavailable())
        if (page := html_page(error)) is not None:
            return page
        db.session.rollback()
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
        code, title = HTTP_CODES[500]
        detail = "Something went wrong on our side; the request id identifies it in our logs."
        return respond(problem_body(500, code, title, detail))

    app.register_error_handler(Problem, handle_problem)
    app.register_error_handler(HTTPException, handle_http)
    app.register_error_handler(Exception, handle_unexpected)
