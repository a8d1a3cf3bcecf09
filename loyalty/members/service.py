"""Member enrolment, look-up, sign-in and the member summary. Adds and flushes; never commits."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.exc import IntegrityError

from loyalty import events
from loyalty.auth.passwords import hash_password, verify_password
from loyalty.auth.sessions import end_sessions
from loyalty.clock import now
from loyalty.db import for_update, random_string
from loyalty.errors import Conflict, NotFound, Problem, ValidationProblem
from loyalty.extensions import db
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Account
from loyalty.members.models import CONSENT_PURPOSES, Member, MemberConsent
from loyalty.pagination import paginate
from loyalty.rules import service as rules
from loyalty.tiers import service as tiers
from loyalty.tiers.models import MemberTier, Tier

# No 0/O, 1/I/L or U/V look-alikes: codes are read aloud and typed from receipts.
REFERRAL_ALPHABET = "23456789ABCDEFGHJKMNPQRSTWXYZ"
REFERRAL_CODE_LENGTH = 8
_REFERRAL_ATTEMPTS = 5


class InvalidCredentials(Problem):
    status, code, title = 401, "invalid_credentials", "Invalid credentials"


@dataclass(frozen=True)
class NewMember:
    email: str
    password: str | None = None
    name: str | None = None
    birthday: date | None = None
    external_id: str | None = None
    referral_code: str | None = None
    marketing_consent: bool | None = None


def new_referral_code() -> str:
    return random_string(REFERRAL_ALPHABET, REFERRAL_CODE_LENGTH)


def normalise_referral_code(code: str) -> str:
    return code.strip().upper().replace("-", "").replace(" ", "")


def find_by_email(email: str) -> Member | None:
    return db.session.scalar(select(Member).where(func.lower(Member.email) == email.strip().lower()))


def find_by_referral_code(code: str) -> Member | None:
    return db.session.scalar(
        select(Member).where(Member.referral_code == normalise_referral_code(code))
    )


def enrol(new: NewMember, *, source: str) -> Member:
    """Create a member. The unique indexes decide races on email and external id."""
    referrer = None
    if new.referral_code:
        referrer = find_by_referral_code(new.referral_code)
        if referrer is None or referrer.status == "erased":
            raise ValidationProblem(errors={"referral_code": ["No member has this referral code."]})
    for _ in range(_REFERRAL_ATTEMPTS):
        member = Member(
            email=new.email.strip(),
            name=new.name,
            birthday=new.birthday,
            external_id=new.external_id,
            password_hash=hash_password(new.password) if new.password else None,
            referral_code=new_referral_code(),
            referred_by_id=referrer.id if referrer else None,
        )
        try:
            with db.session.begin_nested():
                db.session.add(member)
        except IntegrityError:
            _raise_if_taken(new)
            continue  # only the random referral code collided: draw another
        ledger.open_accounts(member.id, now())
        events.emit("member.created", {"source": source, "referred": referrer is not None}, member_id=member.id)
        rules.award_event(member, "signup", now=now(), reference=f"signup:{member.public_id}")
        if new.marketing_consent is not None:
            record_consent(member, "marketing_email", new.marketing_consent, source=source)
        return member
    raise RuntimeError("could not draw a unique referral code")


def _raise_if_taken(new: NewMember) -> None:
    if find_by_email(new.email) is not None:
        raise Conflict("A member with this email already exists.",
                       errors={"email": ["Already registered."]})
    if new.external_id and db.session.scalar(
        select(Member.id).where(Member.external_id == new.external_id)
    ):
        raise Conflict("A member with this external id already exists.",
                       errors={"external_id": ["Already registered."]})


def record_consent(member: Member, purpose: str, granted: bool, *, source: str) -> MemberConsent | None:
    """Add a grant or a withdrawal to the member's consent history, stamped with the time and its source.
    Recording the state already in force writes nothing and answers None. The member's row is locked first, so
    two changes at once are written one after the other and each sees the one before."""
    if purpose not in CONSENT_PURPOSES:
        raise ValueError(f"unknown consent purpose {purpose}")
    db.session.execute(for_update(select(Member.id).where(Member.id == member.id), db.session))
    latest = db.session.scalar(select(MemberConsent.granted).where(
        MemberConsent.member_id == member.id, MemberConsent.purpose == purpose)
        .order_by(MemberConsent.id.desc()).limit(1))
    if latest is not None and latest == granted:
        return None
    consent = MemberConsent(member_id=member.id, purpose=purpose, granted=granted, source=source)
    db.session.add(consent)
    db.session.flush()
    events.emit("consent.changed", {"purpose": purpose, "granted": granted, "source": source,
                                    "recorded_at": consent.recorded_at.isoformat()}, member_id=member.id)
    return consent


def consent_history(member: Member) -> list[MemberConsent]:
    """Every grant and withdrawal of the member, newest first."""
    return list(db.session.scalars(select(MemberConsent).where(MemberConsent.member_id == member.id)
                                   .order_by(MemberConsent.id.desc())))


def current_consents(history: list[MemberConsent]) -> dict[str, MemberConsent | None]:
    """Per purpose, the row in force (the latest), or None when the member never answered, from a history
    newest first."""
    current: dict[str, MemberConsent | None] = dict.fromkeys(CONSENT_PURPOSES)
    for row in history:
        if current[row.purpose] is None:
            current[row.purpose] = row
    return current


def consents_of(member_ids: list[int]) -> dict[int, dict[str, bool]]:
    """Whether each member consents to each purpose now: the latest row per purpose, one query over the
    (member_id, purpose, id) index, whatever the number of members. A purpose never answered is False."""
    if not member_ids:
        return {}
    latest = (select(func.max(MemberConsent.id)).where(MemberConsent.member_id.in_(member_ids))
              .group_by(MemberConsent.member_id, MemberConsent.purpose))
    states = {member_id: dict.fromkeys(CONSENT_PURPOSES, False) for member_id in member_ids}
    for member_id, purpose, granted in db.session.execute(
            select(MemberConsent.member_id, MemberConsent.purpose, MemberConsent.granted)
            .where(MemberConsent.id.in_(latest))):
        if purpose in CONSENT_PURPOSES:
            states[member_id][purpose] = granted
    return states


def authenticate(email: str, password: str) -> Member:
    member = find_by_email(email)
    if not verify_password(member.password_hash if member else None, password):
        raise InvalidCredentials("The email or password is wrong.")
    if not member.is_active:
        raise InvalidCredentials("The email or password is wrong.")
    member.last_login_at = now()
    return member


# Built once: most API requests name a member.
_BY_PUBLIC_ID = select(Member).where(Member.public_id == bindparam("public_id"))


def find_member(public_id: str) -> Member | None:
    return db.session.scalar(_BY_PUBLIC_ID, {"public_id": public_id})


def get_member(public_id: str) -> Member:
    member = find_member(public_id)
    if member is None:
        raise NotFound("No member has this id.")
    return member


def list_members(
    *, limit: int, starting_after: str | None = None, email: str | None = None,
    external_id: str | None = None,
) -> dict:
    """A page of members, oldest first, optionally filtered by email or external id."""
    query = select(Member)
    if email is not None:
        query = query.where(func.lower(Member.email) == email.strip().lower())
    if external_id is not None:
        query = query.where(Member.external_id == external_id)
    return paginate(query, Member, limit=limit, starting_after=starting_after)


def search(*, limit: int, starting_after: str | None = None, q: str | None = None) -> dict:
    """Staff look-up: an exact id, external id or email, or part of a name or email."""
    query = select(Member)
    if q:
        needle = q.strip().lower()
        query = query.where(or_(
            Member.public_id == q.strip(), Member.external_id == q.strip(),
            func.lower(Member.email).startswith(needle, autoescape=True),
            func.lower(Member.name).contains(needle, autoescape=True),
        ))
    return paginate(query, Member, limit=limit, starting_after=starting_after)


@dataclass(frozen=True)
class Standing:
    """What a list of members shows beside each one."""

    available: int
    tier: str | None


def standings(page: list[Member]) -> dict[int, Standing]:
    """Available points (the cached balance) and tier name of each member on a page of results: two
    queries, whatever the page's size. Members without a tier row are in the base tier."""
    ids = [member.id for member in page]
    if not ids:
        return {}
    available = dict(db.session.execute(
        select(Account.member_id, Account.balance).where(Account.member_id.in_(ids), Account.kind == "available")
    ).all())
    tier_names = dict(db.session.execute(
        select(MemberTier.member_id, Tier.name).join(Tier, Tier.id == MemberTier.tier_id)
        .where(MemberTier.member_id.in_(ids))
    ).all())
    base = db.session.scalar(select(Tier.name).where(Tier.rank == 0)) if len(tier_names) < len(ids) else None
    return {i: Standing(available.get(i, 0), tier_names.get(i, base)) for i in ids}


def confirm_password(member: Member, password: str) -> None:
    """Refuse (422, naming the field) unless `password` is the member's own: a session alone does not erase."""
    if not verify_password(member.password_hash, password):
        raise ValidationProblem("Type your password to confirm.", errors={"password": ["The password is wrong."]})


def set_status(member: Member, status: str) -> Member:
    """Suspend or reinstate. Suspended members keep their points and may sign in again, but not spend; suspending
    ends the sessions they had open."""
    if member.status == "erased":
        raise Conflict("The member's account was erased.", code="member_erased")
    if status != "active" and member.status != status:
        end_sessions(member)  # a suspended member signs in again, and sees why they cannot spend
    member.status = status
    db.session.flush()
    return member


def transactions(member: Member, *, limit: int, starting_after: str | None = None) -> dict:
    return ledger.history(member.id, limit=limit, starting_after=starting_after)


def adjust_points(member: Member, points: int, reason: str, *, reference: str, staff_id: int | None,
                  expires_at: datetime | None = None):
    return ledger.adjust(member.id, points, reason=reason, reference=reference, now=now(),
                         staff_id=staff_id, expires_at=expires_at)


EVENT_TYPES = ("signup", "birthday", "review")


def record_event(member: Member, event: str, *, occurred_at: datetime | None, reference: str | None = None):
    """Award an event's points by the rules (an event that is not eligible awards 0, and says why).
    Retries are the Idempotency-Key's business (`loyalty.writes`), so each call is its own movement; but an
    event with a `reference` (the product or order reviewed) pays once per member and reference."""
    moment = now()
    at = occurred_at or moment
    if at > moment:
        raise ValidationProblem(errors={"occurred_at": ["Cannot be in the future."]})
    if reference is not None:
        key = f"event:{member.public_id}:{event}:ref:{reference}"
    elif event in ("signup", "birthday"):  # once-only events have a natural key
        key = f"{event}:{member.public_id}" + (f":{at.year}" if event == "birthday" else "")
    else:
        key = f"event:{member.public_id}:{event}:{secrets.token_hex(12)}"
    return rules.award_event(member, event, now=at, reference=key, pays_once=reference is not None)


def summary(member: Member) -> dict[str, Any]:
    """The member summary of the API contract. Points come from the ledger's cached balances,
    never from summing history; the tier and the way to the next one from tiers."""
    balances = ledger.balances(member.id, kept=True)  # refunds take back even the points already spent
    moment = now()
    soon = moment + timedelta(days=current_app.config["EXPIRING_SOON_DAYS"])
    return {
        "id": member.public_id,
        "email": member.email,
        "name": member.name,
        "status": member.status,
        **tiers.summary(member, moment),
        "points": {"available": balances.available, "pending": balances.pending, "held": balances.held,
                   "lifetime_earned": balances.lifetime_earned},
        "expiring": [{"points": e.points, "expires_at": e.expires_at} for e in ledger.expiring(
            member.id, moment, soon, inactive_days=rules.inactivity_days(moment), balances=balances)],
        "referral_code": member.referral_code,
        "external_id": member.external_id,
        "birthday": member.birthday,
        "created_at": member.created_at,
    }
