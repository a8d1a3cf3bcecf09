"""Staff accounts and API keys. Adds and flushes; never commits."""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from loyalty.auth.access import hash_api_key
from loyalty.auth.models import API_KEY_SCOPES, STAFF_ROLES, ApiKey, StaffUser
from loyalty.auth.passwords import hash_password, verify_password
from loyalty.auth.sessions import end_sessions
from loyalty.clock import now
from loyalty.errors import Conflict, NotFound, ValidationProblem
from loyalty.extensions import db
from loyalty.members.service import InvalidCredentials
from loyalty.pagination import paginate

API_KEY_PREFIX = "lk_"


def find_staff_by_email(email: str) -> StaffUser | None:
    return db.session.scalar(
        select(StaffUser).where(func.lower(StaffUser.email) == email.strip().lower())
    )


def create_staff(*, email: str, role: str, password: str, name: str | None = None) -> StaffUser:
    if role not in STAFF_ROLES:
        raise ValidationProblem(errors={"role": [f"Must be one of: {', '.join(STAFF_ROLES)}."]})
    staff = StaffUser(email=email.strip(), role=role, name=name, password_hash=hash_password(password))
    try:
        with db.session.begin_nested():
            db.session.add(staff)
    except IntegrityError:
        raise Conflict("A staff user with this email already exists.",
                       errors={"email": ["Already registered."]}) from None
    return staff


def authenticate_staff(email: str, password: str) -> StaffUser:
    staff = find_staff_by_email(email)
    if not verify_password(staff.password_hash if staff else None, password) or not staff.active:
        raise InvalidCredentials("The email or password is wrong.")
    staff.last_login_at = now()
    return staff


def list_staff(*, limit: int, starting_after: str | None = None) -> dict:
    return paginate(select(StaffUser), StaffUser, limit=limit, starting_after=starting_after)


def create_api_key(
    *, name: str, scopes: Iterable[str], created_by: StaffUser | None = None
) -> tuple[ApiKey, str]:
    """A new key and its secret. The secret is returned once and never stored."""
    scopes = sorted(set(scopes))
    unknown = [s for s in scopes if s not in API_KEY_SCOPES]
    if unknown or not scopes:
        raise ValidationProblem(
            errors={"scopes": [f"Give one or more of: {', '.join(API_KEY_SCOPES)}."]}
        )
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        name=name,
        prefix=secret[: len(API_KEY_PREFIX) + 6],
        key_hash=hash_api_key(secret),
        scopes=" ".join(scopes),
        created_by_id=created_by.id if created_by else None,
    )
    db.session.add(key)
    db.session.flush()
    return key, secret


def list_api_keys(*, limit: int, starting_after: str | None = None) -> dict:
    return paginate(select(ApiKey), ApiKey, limit=limit, starting_after=starting_after)


def revoke_api_key(public_id: str) -> ApiKey:
    key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
    if key is None:
        raise NotFound("No API key has this id.")
    if key.revoked_at is None:
        key.revoked_at = now()
    return key


# --- Staff administration (the console's Staff pages) ---------------------------------------------------------------
# An admin may change anyone but themselves: since only an active admin can make these changes, refusing
# self-demotion and self-deactivation means the console always keeps at least one active admin.


def get_staff(public_id: str) -> StaffUser:
    staff = db.session.scalar(select(StaffUser).where(StaffUser.public_id == public_id))
    if staff is None:
        raise NotFound("No staff user has this id.")
    return staff


def change_staff_role(staff: StaffUser, role: str, *, by: StaffUser) -> StaffUser:
    """Give `staff` another role; `by` is the admin making the change."""
    if role not in STAFF_ROLES:
        raise ValidationProblem(errors={"role": [f"Must be one of: {', '.join(STAFF_ROLES)}."]})
    if staff.id == by.id and role != staff.role:
        raise Conflict("You cannot change your own role: ask another admin, so the console is never left "
                       "without an admin.", code="own_account")
    staff.role = role
    db.session.flush()
    return staff


def set_staff_active(staff: StaffUser, active: bool, *, by: StaffUser) -> StaffUser:
    """Deactivate `staff` (they cannot sign in, and every session they have open ends) or reactivate them."""
    if staff.id == by.id and not active:
        raise Conflict("You cannot deactivate your own account: ask another admin, so the console is never "
                       "left without an admin.", code="own_account")
    if staff.active and not active:
        end_sessions(staff)
    staff.active = active
    db.session.flush()
    return staff


def get_api_key(public_id: str) -> ApiKey:
    key = db.session.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
    if key is None:
        raise NotFound("No API key has this id.")
    return key
