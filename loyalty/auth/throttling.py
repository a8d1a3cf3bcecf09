"""Login throttling, one budget for every way in (the API and the sign-in pages), counting failures only."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from flask import current_app, request
from flask_limiter.util import get_remote_address
from flask_login import current_user

from loyalty.extensions import limiter


def _account_key() -> str:
    """Per account as well as per address, so one address cannot spray many accounts and many addresses cannot
    hammer one account. A digest of the email, so the limiter's storage holds no personal data."""
    sent = request.get_json(silent=True) if request.is_json else request.form
    email = sent.get("email") if isinstance(sent, dict) or hasattr(sent, "getlist") else None
    if not isinstance(email, str):
        return get_remote_address()
    return _email_key(email)


def _email_key(email: str) -> str:
    # surrogatepass: the key is taken before the schema refuses a lone surrogate ("\ud800") in the email.
    return "account:" + hashlib.sha256(email.strip().lower()[:254].encode(errors="surrogatepass")).hexdigest()[:32]


def _signed_in_account_key() -> str:
    email = getattr(current_user, "email", None)
    return _email_key(email) if isinstance(email, str) else get_remote_address()


def _failed(response) -> bool:
    # Only failed attempts count, so members who sign in often are never locked out.
    return response.status_code == 401


def login_throttled(view: Callable[..., Any]) -> Callable[..., Any]:
    """Throttle a login view's POSTs per address and per account, in budgets shared by every login view."""
    per_address = limiter.shared_limit(lambda: current_app.config["LOGIN_RATE_LIMIT_PER_ADDRESS"],
                                       scope="login-address", deduct_when=_failed, methods=["POST"])
    per_account = limiter.shared_limit(lambda: current_app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"],
                                       scope="login-account", key_func=_account_key, deduct_when=_failed,
                                       methods=["POST"])
    return per_address(per_account(view))


def password_confirmation_throttled(view: Callable[..., Any]) -> Callable[..., Any]:
    """A password typed again by a signed-in user (erasure) draws on their account's login budget: a stolen session
    cannot guess the password faster than the login form allows. Only wrong passwords (422) count."""
    return limiter.shared_limit(lambda: current_app.config["LOGIN_RATE_LIMIT_PER_ACCOUNT"], scope="login-account",
                                key_func=_signed_in_account_key, deduct_when=_wrong_password)(view)


def _wrong_password(response) -> bool:
    return response.status_code == 422
