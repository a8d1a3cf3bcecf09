"""Cross-site writes refused: a browser sends the session cookie with any request, a form posted from another site's
page included, so a write made with a session must show it came from a page of ours.

Two checks, on every POST, PUT, PATCH and DELETE under /v1 that carries the session cookie and no API key:

- the origin: `Origin`, when the browser sends it, is the app's own or one of ALLOWED_ORIGINS; without it,
  `Sec-Fetch-Site`, when sent, says `same-origin` (or `none`: typed by the user);
- `Content-Type: application/json`, even with no body: an HTML form cannot send it, and another site's script can
  only after a CORS preflight, which this app never grants.

API keys are sent as Bearer tokens, which a browser never adds by itself, so they are left alone. The console's and
account pages' own forms are protected by Flask-WTF's CSRF tokens (`loyalty.console.web`).
"""

from __future__ import annotations

from flask import current_app, request, session

from loyalty.errors import Problem

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_SAME_SITE_FETCHES = frozenset({"same-origin", "none"})


class CrossSiteRequest(Problem):
    status, code, title = 403, "csrf_failed", "Cross-site request refused"


def allowed_origins() -> set[str]:
    """The app's own origin and the configured ones (a list, or a comma-separated string)."""
    configured = current_app.config["ALLOWED_ORIGINS"]
    if isinstance(configured, str):
        configured = configured.split(",")
    return {request.host_url.rstrip("/"), *(origin.strip().rstrip("/") for origin in configured if origin.strip())}


def refuse_cross_site_writes() -> None:
    """A before_request hook for the API."""
    if request.method not in _WRITES or not request.path.startswith("/v1/") or _sends_an_api_key():
        return
    if current_app.config["SESSION_COOKIE_NAME"] not in request.cookies or not session:
        return  # no session: nothing a forged request could act with
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") not in allowed_origins():
        raise CrossSiteRequest("This request came from another site's page; it was refused.")
    if origin is None and request.headers.get("Sec-Fetch-Site", "same-origin") not in _SAME_SITE_FETCHES:
        raise CrossSiteRequest("This request came from another site's page; it was refused.")
    if request.mimetype != "application/json":
        raise CrossSiteRequest("Writes made with a session must be sent with `Content-Type: application/json`, "
                               "even without a body.")


def _sends_an_api_key() -> bool:
    """An API key is a Bearer token, which only a script sets. `Authorization: Basic` a browser adds by itself, to
    another site's form post too, when it has a password for the host (a proxy's prompt, say)."""
    return request.headers.get("Authorization", "").partition(" ")[0].lower() == "bearer"
