"""Sessions that end on the server.

The session cookie is signed, not stored, so a copy saved before sign-out would otherwise go on working. Each member
and staff user has a session key, written into the id flask-login keeps in the cookie (`member:<id>:<key>`); the user
loader accepts a cookie only while its key is still the user's own, in the same query that loads the user. Rotating
the key ends every session of that user, on every device: signing out, erasure, suspension, deactivation and a
password change do it. Signing in starts a new session; it leaves the key, and so other devices, alone.
"""

from __future__ import annotations

import secrets
from typing import Protocol

from flask import session
from flask_login import current_user, login_user, logout_user

from loyalty.unit_of_work import unit_of_work

SESSION_KEY_LENGTH = 32


class HasSessions(Protocol):
    public_id: str
    session_key: str


def new_session_key() -> str:
    return secrets.token_urlsafe(SESSION_KEY_LENGTH)[:SESSION_KEY_LENGTH]


def session_id(kind: str, user: HasSessions) -> str:
    """What flask-login keeps in the cookie for `user`."""
    return f"{kind}:{user.public_id}:{user.session_key}"


def parse_session_id(value: str) -> tuple[str, str, str] | None:
    """(kind, public id, session key) of a cookie's id, or None for an id without a key (from before keys)."""
    kind, public_id, key = [*value.split(":", 2), "", ""][:3]
    return (kind, public_id, key) if kind and public_id and key else None


def end_sessions(user: HasSessions) -> None:
    """End every session `user` has open, everywhere. The caller commits."""
    user.session_key = new_session_key()


def sign_in(user: HasSessions) -> None:
    """Start a new session for `user`: nothing from the session before signing in (a CSRF token someone planted
    with their own cookie, say) carries over."""
    session.clear()
    login_user(user)


def sign_out() -> None:
    """End the current request's session, and with it every other session of the same user, in a unit of work
    of its own."""
    user = current_user._get_current_object() if current_user.is_authenticated else None
    logout_user()
    if user is not None:
        with unit_of_work():
            end_sessions(user)
