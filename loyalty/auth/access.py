"""Who is calling, and may they? The one check every endpoint reuses.

A caller is an API key (`Authorization: Bearer ...`), a staff session or a member
session. `@require(...)` names what an endpoint accepts: API-key scopes, staff roles
(admins wherever any staff or key may) and whether a member session will do. No credentials
answer 401; credentials of the wrong kind, role or scope answer 403.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Iterable
from copy import deepcopy
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from flask import g, request
from flask_login import current_user
from sqlalchemy import bindparam, select, update

from loyalty.auth.models import ApiKey, StaffUser
from loyalty.clock import now
from loyalty.errors import Forbidden, Unauthenticated
from loyalty.extensions import db
from loyalty.members.models import Member
from loyalty.unit_of_work import unit_of_work

# last_used_at is informational; refreshing it at most hourly keeps reads free of writes.
_LAST_USED_GRANULARITY = timedelta(hours=1)
# Built once: every API request runs it. Columns, not an object: nothing here changes the key.
_KEY_BY_HASH = select(ApiKey.id, ApiKey.public_id, ApiKey.scopes, ApiKey.last_used_at, ApiKey.revoked_at).where(
    ApiKey.key_hash == bindparam("key_hash"))


@dataclass(frozen=True)
class Principal:
    kind: Literal["api_key", "staff", "member"]
    public_id: str
    role: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)


def hash_api_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _api_key_principal(header: str) -> Principal:
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > 200:
        raise Unauthenticated("Use `Authorization: Bearer <api key>`.")
    key = db.session.execute(_KEY_BY_HASH, {"key_hash": hash_api_key(secret)}).first()
    if key is None or key.revoked_at is not None:
        raise Unauthenticated("The API key is not valid.", code="invalid_api_key")
    moment = now()
    if key.last_used_at is None or moment - key.last_used_at > _LAST_USED_GRANULARITY:
        # A tiny unit of work of its own, before the request's has begun: it stays whatever the request does.
        with unit_of_work():
            db.session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=moment))
    return Principal("api_key", key.public_id, scopes=frozenset((key.scopes or "").split()))


def current_principal() -> Principal | None:
    """The caller of this request, or None when anonymous. An Authorization header wins."""
    if "principal" in g:
        return g.principal
    principal: Principal | None = None
    header = request.headers.get("Authorization")
    if header is not None:
        principal = _api_key_principal(header)
    elif isinstance(current_user, StaffUser):
        principal = Principal("staff", current_user.public_id, role=current_user.role)
    elif isinstance(current_user, Member):
        principal = Principal("member", current_user.public_id)
    g.principal = principal
    return principal


def is_allowed(principal: Principal, *, scope: str | None, roles: tuple[str, ...], member: bool) -> bool:
    if principal.kind == "api_key":
        return scope is not None and scope in principal.scopes
    if principal.kind == "staff":
        return principal.role in roles
    return member


def require(
    *, scope: str | None = None, roles: Iterable[str] = (), member: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Guard a view; also documents the accepted credentials in the OpenAPI spec.

    Staff admins may use every endpoint that staff or API keys may; a member-only
    endpoint (`require(member=True)`) is for members alone.
    """
    roles = ("admin", *roles) if (roles or scope) else ()

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if principal is None:
                raise Unauthenticated("Sign in or send an API key.")
            if not is_allowed(principal, scope=scope, roles=roles, member=member):
                raise Forbidden("These credentials may not use this endpoint.")
            return view(*args, **kwargs)

        _document(guarded, scope=scope, roles=roles, member=member)
        return guarded

    return decorator


def _document(view: Any, *, scope: str | None, roles: tuple[str, ...], member: bool) -> None:
    accepted = [f"an API key with scope `{scope}`"] if scope else []
    if roles:
        accepted.append("a staff session with role " + " or ".join(roles))
    if member:
        accepted.append("a member session")
    apidoc = deepcopy(getattr(view, "_apidoc", {}))
    manual = apidoc.setdefault("manual_doc", {})
    manual["security"] = ([{"apiKey": []}] if scope else []) + ([{"session": []}] if roles or member else [])
    accepts = "Accepts " + "; ".join(accepted) + "."
    manual["description"] = f"{manual.get('description', '')}\n\n{accepts}".strip()
    view._apidoc = apidoc
