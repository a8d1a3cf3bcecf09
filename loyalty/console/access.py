"""Who may see which console page. Staff roles map onto pages here, and only here.

Every staff role reads; `support` also looks after members; `manager` runs the program (tiers, rules,
offers, rewards); `admin` does everything, integrations and staff included. Anonymous visitors are sent
to the login page; signed-in people without the role get a 403 page.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from flask import redirect, request, url_for
from flask_login import current_user

from loyalty.auth.models import STAFF_ROLES, StaffUser
from loyalty.errors import Forbidden
from loyalty.members.models import Member

READERS = STAFF_ROLES
MEMBER_WRITERS = ("admin", "support")
PROGRAM_WRITERS = ("admin", "manager")
ADMINS = ("admin",)


def staff_page(roles: tuple[str, ...] = READERS) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Guard a console view: a staff session whose role is in `roles`."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if not isinstance(current_user, StaffUser):
                if isinstance(current_user, Member):
                    raise Forbidden("This page is for staff. Sign out of your member account first.")
                return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
            if current_user.role not in roles:
                raise Forbidden("Your role may not use this page.")
            return view(*args, **kwargs)

        guarded.console_roles = roles
        return guarded

    return decorator


def member_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """Guard an account page: a member session; anyone else is sent to the member login."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not isinstance(current_user, Member):
            return redirect(url_for("account.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return guarded


def can(roles: tuple[str, ...]) -> bool:
    """For templates: show a link or button only to those who may use it."""
    return isinstance(current_user, StaffUser) and current_user.role in roles


def safe_next(target: str | None, prefix: str, default: str) -> str:
    """Where to go after login: only a path of our own under `prefix`, never another site."""
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(prefix) or "\\" in target:
        return default
    return target
