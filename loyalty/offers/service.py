"""Offers and codes: administration, fast unique-code generation, and validation against the database's
state (the decision itself is `loyalty.offers.engine`, pure). Adds and flushes; never commits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from loyalty.clock import now
from loyalty.db import for_update, new_public_id, random_string
from loyalty.errors import Conflict, NotFound, ValidationProblem
from loyalty.extensions import db
from loyalty.members.models import Member
from loyalty.offers import engine
from loyalty.offers.models import CouponUse, Offer, OfferCode
from loyalty.pagination import paginate
from loyalty.tiers import service as tiers
from loyalty.tiers.models import Tier

# No 0/O, 1/I/L or U/V look-alikes: codes are read from screens and receipts and typed by hand.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTWXYZ"
CODE_LENGTH = 12  # 29**12 is about 3.5e17: guessing one of 100,000 codes takes billions of tries
_CHUNK = 5000
SCOPE_KEYS = ("include_skus", "include_categories", "exclude_skus", "exclude_categories")


def normalise_code(code: str) -> str:
    return "".join(code.split()).replace("-", "").upper()


def get_offer(public_id: str) -> Offer:
    offer = db.session.scalar(select(Offer).where(Offer.public_id == public_id))
    if offer is None:
        raise NotFound("No offer has this id.")
    return offer


def list_offers(*, limit: int, starting_after: str | None = None, newest_first: bool = False) -> dict:
    return paginate(select(Offer), Offer, limit=limit, starting_after=starting_after, newest_first=newest_first)


def _check(fields: dict[str, Any]) -> None:
    kind = fields.get("kind")
    if kind == "percent_off" and not fields.get("percent"):
        raise ValidationProblem(errors={"percent": ["A percent_off offer needs a percent from 1 to 100."]})
    if kind == "amount_off" and (not fields.get("amount") or not fields.get("currency")):
        raise ValidationProblem(errors={"amount": ["An amount_off offer needs an amount and a currency."]})
    if fields.get("min_order_amount") and not fields.get("currency"):
        raise ValidationProblem(errors={"currency": ["A minimum order is in one currency."]})
    starts_at, ends_at = fields.get("starts_at"), fields.get("ends_at")
    if starts_at and ends_at and ends_at <= starts_at:
        raise ValidationProblem(errors={"ends_at": ["Must be after starts_at."]})
    known = set(db.session.scalars(select(Tier.code)))
    unknown = sorted((set(fields.get("eligible_tiers") or ()) | set(fields.get("early_access") or {})) - known)
    if unknown:
        raise ValidationProblem(errors={"eligible_tiers": [f"Unknown tiers: {', '.join(unknown)}."]})


def create_offer(fields: dict[str, Any]) -> Offer:
    code = fields.pop("code", None)
    _check(fields)
    offer = Offer(**{"uses_per_code": 1, **fields})  # a unique code pays for one order unless the offer says so
    db.session.add(offer)
    db.session.flush()
    if code:
        _add_public_code(offer, code)
    return offer


def update_offer(offer: Offer, changes: dict[str, Any]) -> Offer:
    code = changes.pop("code", None)
    _check({**{c.key: getattr(offer, c.key) for c in Offer.__table__.columns}, **changes})
    for name, value in changes.items():
        setattr(offer, name, value)
    if code:
        _add_public_code(offer, code)
    db.session.flush()
    return offer


def _add_public_code(offer: Offer, code: str) -> OfferCode:
    entry = OfferCode(offer_id=offer.id, code=normalise_code(code), kind="public")
    try:
        with db.session.begin_nested():
            db.session.add(entry)
    except IntegrityError:
        raise Conflict("This code is already in use.", errors={"code": ["Already in use."]}) from None
    return entry


def generate_codes_for_members(offer: Offer, member_public_ids: list[str], *, expires_at: datetime | None = None
                               ) -> int:
    """One unique code for each member named, in the order given; an unknown id is refused, naming it."""
    found = dict(db.session.execute(select(Member.public_id, Member.id)
                                    .where(Member.public_id.in_(member_public_ids))).all())
    missing = sorted(set(member_public_ids) - set(found))
    if missing:
        raise ValidationProblem(errors={"member_ids": [f"No member has the id {missing[0]}."]})
    owners = [found[public_id] for public_id in member_public_ids]
    return generate_codes(offer, len(owners), member_ids=owners, expires_at=expires_at)


def generate_codes(offer: Offer, count: int, *, member_ids: list[int] | None = None,
                   expires_at: datetime | None = None) -> int:
    """Add `count` unique unguessable codes (one per member when `member_ids` is given), in chunks; a code
    that collides with an existing one is skipped and drawn again."""
    owners: list[int | None] = list(member_ids) if member_ids else [None] * count
    insert = _insert_codes_postgres if db.session.get_bind().dialect.name == "postgresql" else _insert_codes
    added = 0
    while owners:
        chunk, owners = owners[:_CHUNK], owners[_CHUNK:]
        rows = [(new_public_id("cpn"), offer.id, _new_code(), owner, expires_at, now()) for owner in chunk]
        inserted = insert(rows)
        added += len(inserted)
        owners += list((Counter(chunk) - Counter(inserted)).elements())  # collided: draw again
    return added


_COLUMNS = ("public_id", "offer_id", "code", "member_id", "expires_at", "created_at")


def _insert_codes(rows: list[tuple]) -> list[int | None]:
    """Multi-row INSERT ... ON CONFLICT DO NOTHING; answers the owners of the codes that went in."""
    insert = sqlite_insert(OfferCode).on_conflict_do_nothing().returning(OfferCode.member_id)
    return db.session.scalars(insert, [{**dict(zip(_COLUMNS, row, strict=True)), "kind": "unique", "active": True}
                                       for row in rows]).all()


def _insert_codes_postgres(rows: list[tuple]) -> list[int | None]:
    """COPY into a scratch table, then one INSERT ... SELECT: several times faster than a multi-row
    INSERT for 100,000 codes, still inside the request's transaction."""
    cursor = db.session.connection().connection.dbapi_connection.cursor()
    cursor.execute("CREATE TEMP TABLE IF NOT EXISTS new_offer_codes (public_id text, offer_id integer, code text, "
                   "member_id integer, expires_at timestamptz, created_at timestamptz) ON COMMIT DELETE ROWS")
    with cursor.copy(f"COPY new_offer_codes ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)
    cursor.execute(f"INSERT INTO offer_codes ({', '.join(_COLUMNS)}, kind, active) "  # noqa: S608 - constant columns
                   f"SELECT {', '.join(_COLUMNS)}, 'unique', true FROM new_offer_codes "
                   "ON CONFLICT DO NOTHING RETURNING member_id")
    inserted = [member_id for (member_id,) in cursor.fetchall()]
    cursor.execute("DELETE FROM new_offer_codes")
    cursor.close()
    return inserted


def _new_code() -> str:
    return random_string(CODE_ALPHABET, CODE_LENGTH)


def list_codes(offer: Offer, *, limit: int, starting_after: str | None = None) -> dict:
    return paginate(select(OfferCode).where(OfferCode.offer_id == offer.id), OfferCode, limit=limit,
                    starting_after=starting_after)


# --- validation ---------------------------------------------------------------------------------------

def engine_offer(offer: Offer, hours_by_tier: dict[str, int] | None = None) -> engine.Offer:
    """The engine's view of an offer; early access without hours takes each tier's own hours (read here
    unless given)."""
    if hours_by_tier is None:
        hours_by_tier = _tier_hours()
    scope = {key: frozenset(offer.scope.get(key) or ()) for key in SCOPE_KEYS}
    return engine.Offer(
        kind=offer.kind, percent=offer.percent, amount=offer.amount, currency=offer.currency,
        min_order_amount=offer.min_order_amount, starts_at=offer.starts_at, ends_at=offer.ends_at,
        eligible_tiers=frozenset(offer.eligible_tiers or ()),
        early_access={tier: hours if hours is not None else hours_by_tier.get(tier, 0)
                      for tier, hours in (offer.early_access or {}).items()},
        usage_limit_total=offer.usage_limit_total, usage_limit_per_member=offer.usage_limit_per_member, **scope)


def _tier_hours() -> dict[str, int]:
    return dict(db.session.execute(select(Tier.code, Tier.early_access_hours)).all())


def find_code(code: str) -> OfferCode | None:
    return db.session.scalar(select(OfferCode).where(OfferCode.code == normalise_code(code)))


def _counting_uses(now: datetime):
    """The uses that count toward the limits at `now`: consumed, and reserved ones that have not expired."""
    return or_(CouponUse.status == "consumed",
               (CouponUse.status == "reserved") & or_(CouponUse.expires_at.is_(None), CouponUse.expires_at > now))


def uses(offer: Offer, member: Member | None, now: datetime) -> tuple[int, int]:
    """Uses that count toward the limits: consumed, and reserved ones that have not expired."""
    base = select(func.count()).select_from(CouponUse).where(CouponUse.offer_id == offer.id, _counting_uses(now))
    total = db.session.scalar(base)
    mine = db.session.scalar(base.where(CouponUse.member_id == member.id)) if member else 0
    return total, mine


def _limited(offer: Offer) -> bool:
    """Whether the offer limits its uses in total or per member (what `uses` is counted for)."""
    return offer.usage_limit_total is not None or offer.usage_limit_per_member is not None


def code_limit(entry: OfferCode, offer: Offer) -> int | None:
    """How many orders the code may pay for by itself: the offer's `uses_per_code` for a unique code; a public
    code has no limit of its own (the offer's limits still apply)."""
    return offer.uses_per_code if entry.kind == "unique" else None


def validate(code: str, member: Member | None, cart: engine.Cart, now: datetime) -> engine.Validation:
    """Whether `code` applies to `cart` for `member` now, the discount line by line, or the exact reason."""
    return check(code, member, cart, now)[0]


def check(code: str, member: Member | None, cart: engine.Cart, now: datetime
          ) -> tuple[engine.Validation, Offer | None]:
    """`validate`, with the code's offer (None for an unknown code) for what checkout asks of it next."""
    return _check_entry(find_code(code), member, cart, now)


def _check_entry(entry: OfferCode | None, member: Member | None, cart: engine.Cart, now: datetime
                 ) -> tuple[engine.Validation, Offer | None]:
    if entry is None:
        return engine.validate(engine.Offer(kind="percent_off", percent=1), engine.CodeState(exists=False), cart,
                               engine.Shopper(member.id if member else None), now), None
    offer = db.session.get(Offer, entry.offer_id)
    total, mine = uses(offer, member, now) if _limited(offer) else (0, 0)
    tier = tiers.current_tier(member)[0] if member else None
    state = engine.CodeState(
        exists=True, active=entry.active and offer.active, assigned_member_id=entry.member_id,
        expires_at=entry.expires_at, uses_total=total, uses_by_member=mine,
        uses_of_code=_uses_of_code(entry, now), uses_per_code=code_limit(entry, offer))
    return engine.validate(engine_offer(offer), state, cart,
                           engine.Shopper(member.id if member else None, tier.code if tier else None), now), offer


def _uses_of_code(entry: OfferCode, now: datetime) -> int:
    """A unique code's uses that count at `now` (a public code's are the offer's)."""
    if entry.kind != "unique":
        return 0
    return db.session.scalar(select(func.count()).select_from(CouponUse)
                             .where(CouponUse.code_id == entry.id, _counting_uses(now)))


def holder_refusals(member: Member, offer_list: list[Offer], now: datetime) -> dict[int, tuple[str, str] | None]:
    """By offer id: the first reason `member` could not use a coupon of the offer of their own at `now`,
    whatever the cart (`engine.holder_refusal`: tier_required, coupon_expired, coupon_not_started, ...), or
    None. A few queries, whatever the number of offers."""
    tier = tiers.current_tier(member)[0]
    shopper = engine.Shopper(member.id, tier.code if tier else None)
    total, mine = _uses_by_offer({offer.id for offer in offer_list if _limited(offer)}, member, now)
    hours = _tier_hours()
    return {offer.id: engine.holder_refusal(
        engine_offer(offer, hours),
        engine.CodeState(active=offer.active, assigned_member_id=member.id, uses_total=total.get(offer.id, 0),
                         uses_by_member=mine.get(offer.id, 0)), shopper, now) for offer in offer_list}


# --- reserving and consuming a use (for checkout) ------------------------------------------------------

class CouponProblem(ValidationProblem):
    """A code that does not apply, answered 422 with the engine's exact code."""


class CodeUsedUp(CouponProblem):
    """A unique code has no use left for a use that was released and is wanted back."""

    code = engine.USAGE_LIMIT_REACHED


def _lock_offer(offer_id: int) -> Offer:
    query = select(Offer).where(Offer.id == offer_id).execution_options(populate_existing=True)
    return db.session.scalar(for_update(query, db.session))


def reserve(code: str, member: Member | None, cart: engine.Cart, *, reference: str, expires_at: datetime,
            now: datetime, order_id: str | None = None) -> tuple[CouponUse, engine.Validation]:
    """Hold one use of a code for a checkout. A unique code's use is taken by a guarded update of its own
    counter, so its last use goes to exactly one of any number of racing checkouts; an offer limited in total
    or per member is locked while its uses are counted, for the same reason. A public code of an offer
    without limits locks nothing, so its checkouts never queue."""
    entry = find_code(code)
    if entry is not None and _limited(db.session.get(Offer, entry.offer_id)):
        _lock_offer(entry.offer_id)
    previous = db.session.scalar(select(CouponUse).where(CouponUse.reference == reference))
    result, _ = _check_entry(entry, member, cart, now)
    if previous is not None:
        return previous, result
    if not result.valid:
        raise CouponProblem(result.detail, code=result.code, title="Coupon does not apply")
    if not _take_code_use(entry, now):
        raise CouponProblem("This code was just taken by another checkout", code=engine.USAGE_LIMIT_REACHED,
                            title="Coupon does not apply")
    use = CouponUse(offer_id=entry.offer_id, code_id=entry.id, member_id=member.id if member else None,
                    status="reserved", reference=reference, order_id=order_id, expires_at=expires_at,
                    created_at=now)
    db.session.add(use)
    db.session.flush()
    return use, result


def _take_code_use(entry: OfferCode, now: datetime) -> bool:
    """One more use of a unique code, if it has one left (a public code counts none of its own: the offer's
    limits alone apply). The database decides: racing checkouts queue on the code's row and the guard refuses
    all but the ones that fit. A reservation past its expiry still holds its use until released, so when the
    code seems used up those are released first."""
    if entry.kind != "unique":
        return True
    limit = db.session.get(Offer, entry.offer_id).uses_per_code
    return _count_code_use(entry.id, limit) or (_release_expired_uses(entry.id, now) > 0
                                                and _count_code_use(entry.id, limit))


def _count_code_use(code_id: int, limit: int | None) -> bool:
    query = update(OfferCode).where(OfferCode.id == code_id).values(uses=OfferCode.uses + 1)
    if limit is not None:
        query = query.where(OfferCode.uses < limit)
    return db.session.execute(query.execution_options(synchronize_session=False)).rowcount == 1


def _give_code_use_back(code_id: int, count: int = 1) -> None:
    db.session.execute(update(OfferCode).where(OfferCode.id == code_id, OfferCode.kind == "unique")
                       .values(uses=OfferCode.uses - count).execution_options(synchronize_session=False))


def _release_expired_uses(code_id: int, now: datetime) -> int:
    """Release the code's reservations past their expiry and give their uses back; answers how many. Their
    redemptions are released as usual later (releasing a released use changes nothing)."""
    released = db.session.execute(
        update(CouponUse).where(CouponUse.code_id == code_id, CouponUse.status == "reserved",
                                CouponUse.expires_at <= now)
        .values(status="released", resolved_at=now).execution_options(synchronize_session=False)).rowcount
    if released:
        _give_code_use_back(code_id, released)
    return released


def _locked_use(reference: str) -> CouponUse:
    """The use, locked and read again, so its status is current."""
    query = select(CouponUse).where(CouponUse.reference == reference).execution_options(populate_existing=True)
    use = db.session.scalar(for_update(query, db.session))
    if use is None:
        raise NotFound("No coupon use has this reference.")
    return use


def consume(reference: str, *, now: datetime, even_if_released: bool = False) -> CouponUse:
    """The payment went through: the reserved use counts for good. Consuming twice is harmless.
    `even_if_released`: the payment was made with the discount after the reservation lapsed, so the use is
    taken again and counts whatever the offer's limits say now; but a unique code never pays for more orders
    than it may: when its last use went to another order meanwhile, `CodeUsedUp` is raised and nothing
    changes."""
    use = _locked_use(reference)
    if use.status == "released":
        if not even_if_released:
            raise Conflict("This coupon use was released.", code="redemption_not_held")
        entry = db.session.get(OfferCode, use.code_id)
        if not _take_code_use(entry, now):
            raise CodeUsedUp(f"Code {entry.code} was used for {_taken_by(entry, use)} meanwhile",
                             title="Coupon does not apply")
    if use.status != "consumed":
        use.status, use.resolved_at = "consumed", now
    return use


def _taken_by(entry: OfferCode, released: CouponUse) -> str:
    """Which order holds the code's last use now, as words."""
    order_id = db.session.scalar(
        select(CouponUse.order_id).where(CouponUse.code_id == entry.id, CouponUse.id != released.id,
                                         CouponUse.status.in_(("reserved", "consumed")))
        .order_by(CouponUse.id.desc()).limit(1))
    return f"order {order_id}" if order_id else "another order"


def release(reference: str, *, now: datetime) -> CouponUse:
    """The checkout was abandoned: the use is given back. Releasing twice is harmless."""
    use = _locked_use(reference)
    if use.status == "consumed":
        raise Conflict("This coupon use was consumed.", code="redemption_not_held")
    if use.status == "reserved":
        use.status, use.resolved_at = "released", now
        _give_code_use_back(use.code_id)
    return use


def member_coupons(member: Member, now: datetime, *, soon: timedelta = timedelta(days=7),
                   used_up: bool = False) -> list[dict[str, Any]]:
    """The member's own codes still usable, and public offers open to them now or within `soon`
    (early access shown with the moment it opens for them). Each with `uses_left`: how many more orders the
    code may pay for (None: no limit of its own). `used_up`: their own codes without a use left too (used, or
    reserved by a checkout running now), with their `code_state`."""
    tier = tiers.current_tier(member)[0]
    shopper_tier = tier.code if tier else None
    rows = db.session.execute(
        select(OfferCode, Offer).join(Offer, Offer.id == OfferCode.offer_id)
        .where(Offer.active.is_(True), OfferCode.active.is_(True),
               or_(OfferCode.member_id == member.id, OfferCode.kind == "public"),
               or_(Offer.ends_at.is_(None), Offer.ends_at > now),
               or_(OfferCode.expires_at.is_(None), OfferCode.expires_at > now))
        .order_by(OfferCode.id)).all()
    counted = code_uses([code for code, _ in rows if code.kind == "unique"], now)
    hours = _tier_hours()
    coupons = []
    for code, offer in rows:
        view = engine_offer(offer, hours)
        if view.eligible_tiers and shopper_tier not in view.eligible_tiers:
            continue
        opens_at = engine.opens_at_for(view, shopper_tier)
        if opens_at is not None and opens_at > now + soon:
            continue
        left = uses_left(code, offer, counted.get(code.id, NO_USES))
        if left == 0 and not used_up:
            continue
        coupons.append({"code": code.code, "offer": offer, "assigned": code.member_id == member.id,
                        "opens_at": opens_at, "open": opens_at is None or opens_at <= now,
                        "expires_at": min((t for t in (offer.ends_at, code.expires_at) if t), default=None),
                        "uses_left": left, "code_state": code_state(code, offer, counted.get(code.id, NO_USES), now)})
    return coupons


@dataclass(frozen=True)
class CodeUses:
    """A code's uses that count at a moment: consumed, reserved by checkouts still running, and the orders
    they are for (a unique code's only: a public code's are too many to list)."""

    consumed: int = 0
    reserved: int = 0
    orders: tuple[str, ...] = ()


NO_USES = CodeUses()


def code_uses(codes: list[OfferCode], now: datetime, *, with_orders: bool = False) -> dict[int, CodeUses]:
    """`CodeUses` by code id, in one grouped query whatever the number of codes; `with_orders`, their orders
    too, in a second."""
    ids = [code.id for code in codes]
    if not ids:
        return {}
    counts: dict[int, dict[str, int]] = {}
    for code_id, status, total in db.session.execute(
            select(CouponUse.code_id, CouponUse.status, func.count())
            .where(CouponUse.code_id.in_(ids), _counting_uses(now)).group_by(CouponUse.code_id, CouponUse.status)):
        counts.setdefault(code_id, {})[status] = total
    orders: dict[int, list[str]] = {}
    unique_ids = [code.id for code in codes if code.kind == "unique" and code.id in counts] if with_orders else []
    if unique_ids:
        for code_id, order_id in db.session.execute(
                select(CouponUse.code_id, CouponUse.order_id)
                .where(CouponUse.code_id.in_(unique_ids), _counting_uses(now), CouponUse.order_id.is_not(None))
                .order_by(CouponUse.id)):
            orders.setdefault(code_id, []).append(order_id)
    return {code_id: CodeUses(by_status.get("consumed", 0), by_status.get("reserved", 0),
                              tuple(orders.get(code_id, ())))
            for code_id, by_status in counts.items()}


def uses_left(code: OfferCode, offer: Offer, counted: CodeUses) -> int | None:
    """How many more orders the code may pay for by itself; None: no limit of its own."""
    limit = code_limit(code, offer)
    return None if limit is None else max(0, limit - counted.consumed - counted.reserved)


def code_state(code: OfferCode, offer: Offer, counted: CodeUses, now: datetime) -> str:
    """`used` (its uses all consumed), `reserved` (a checkout holds a use of it now), `expired` (the code or
    its offer ended), `partly_used` (used, with uses left) or `unused`."""
    limit = code_limit(code, offer)
    if limit is not None and counted.consumed >= limit:
        return "used"
    if counted.reserved:
        return "reserved"
    if any(end is not None and end <= now for end in (offer.ends_at, code.expires_at)):
        return "expired"
    return "partly_used" if counted.consumed else "unused"


# --- what the staff console shows ----------------------------------------------------------------------

def offer_status(offer: Offer, now: datetime) -> str:
    """`inactive`, `scheduled` (public start ahead), `ended`, or `live`."""
    if not offer.active:
        return "inactive"
    if offer.starts_at is not None and offer.starts_at > now:
        return "scheduled"
    if offer.ends_at is not None and offer.ends_at <= now:
        return "ended"
    return "live"


def offer_summaries(offer_list: list[Offer], now: datetime) -> dict[int, dict[str, Any]]:
    """For a page of offers, by offer id: its public codes, how many unique codes it has, and its uses
    that count toward the limits. A few grouped queries, whatever the page's length."""
    ids = [offer.id for offer in offer_list]
    summaries: dict[int, dict[str, Any]] = {i: {"public_codes": [], "unique_codes": 0, "uses": 0} for i in ids}
    if not ids:
        return summaries
    for offer_id, code in db.session.execute(
            select(OfferCode.offer_id, OfferCode.code)
            .where(OfferCode.offer_id.in_(ids), OfferCode.kind == "public").order_by(OfferCode.id)):
        summaries[offer_id]["public_codes"].append(code)
    for offer_id, total in db.session.execute(
            select(OfferCode.offer_id, func.count()).where(OfferCode.offer_id.in_(ids), OfferCode.kind == "unique")
            .group_by(OfferCode.offer_id)):
        summaries[offer_id]["unique_codes"] = total
    for offer_id, total in db.session.execute(
            select(CouponUse.offer_id, func.count()).where(CouponUse.offer_id.in_(ids), _counting_uses(now))
            .group_by(CouponUse.offer_id)):
        summaries[offer_id]["uses"] = total
    return summaries


def offer_choices(*, limit: int = 200, including: str | None = None) -> list[Offer]:
    """Active offers, newest first and at most `limit` of them, for choosing one in a form; `including`
    (a public id) is among them whatever its age, so a form can preselect it."""
    chosen = list(db.session.scalars(select(Offer).where(Offer.active.is_(True)).order_by(Offer.id.desc())
                                     .limit(limit)))
    if including and all(offer.public_id != including for offer in chosen):
        extra = db.session.scalar(select(Offer).where(Offer.public_id == including))
        if extra is not None:
            chosen.insert(0, extra)
    return chosen


def _code_rows(codes: list[OfferCode], offer: Offer, now: datetime) -> list[dict[str, Any]]:
    """Codes with their owner's public id, their uses that count toward the limits, their state (`code_state`)
    and the orders their uses are for."""
    owner_ids = {code.member_id for code in codes if code.member_id}
    owners = dict(db.session.execute(select(Member.id, Member.public_id).where(Member.id.in_(owner_ids)))
                  .all()) if owner_ids else {}
    counted = code_uses(codes, now, with_orders=True)
    rows = []
    for code in codes:
        uses = counted.get(code.id, NO_USES)
        rows.append({"code": code, "member_id": owners.get(code.member_id), "uses": uses.consumed + uses.reserved,
                     "state": code_state(code, offer, uses, now), "orders": uses.orders})
    return rows


def code_page(offer: Offer, *, limit: int, starting_after: str | None = None, now: datetime) -> dict:
    """`list_codes`, each row with its owner's public id, its uses, its state and their orders."""
    page = list_codes(offer, limit=limit, starting_after=starting_after)
    return {**page, "data": _code_rows(page["data"], offer, now)}


def code_batches(offer: Offer, *, now: datetime, batch_size: int = 1000) -> Iterator[list[dict[str, Any]]]:
    """Every code of the offer in id order, `batch_size` at a time (a keyset read per batch), so an export
    of 100,000 codes never holds them all in memory."""
    last_id = 0
    while True:
        codes = list(db.session.scalars(select(OfferCode).where(OfferCode.offer_id == offer.id, OfferCode.id > last_id)
                                        .order_by(OfferCode.id).limit(batch_size)))
        if not codes:
            return
        yield _code_rows(codes, offer, now)
        # The rows are written out; let the session forget them, or it grows with the export.
        for code in codes:
            db.session.expunge(code)
        last_id = codes[-1].id
        if len(codes) < batch_size:
            return


PAST_COUPONS_SHOWN = 10


def member_wallet(member: Member, now: datetime, *, soon: timedelta = timedelta(days=7),
                  past: int = PAST_COUPONS_SHOWN) -> dict[str, list[dict[str, Any]]]:
    """The member's coupons page. `usable`: `member_coupons` the member still has a use of, ready ones first,
    each group newest first, each with its `state` ("open" or "upcoming") and `early_access` (it opens for
    them before it opens to everyone). `past`: the ones they have no use left of ("used": their per-member
    limit; "all_used": the offer's total limit; "used" or "reserved": the code's own uses are consumed or held
    by a checkout), then their own codes that expired or were withdrawn, latest first, at most `past` of those."""
    current = member_coupons(member, now, soon=soon, used_up=True)
    total, mine = _uses_by_offer({coupon["offer"].id for coupon in current}, member, now)
    usable, used = [], []
    for coupon in reversed(current):
        offer = coupon["offer"]
        coupon["uses"] = mine.get(offer.id, 0)
        coupon["early_access"] = (coupon["opens_at"] is not None and offer.starts_at is not None
                                  and coupon["opens_at"] < offer.starts_at)
        if coupon["uses_left"] == 0:
            used.append({**coupon, "state": coupon["code_state"]})
        elif offer.usage_limit_per_member is not None and coupon["uses"] >= offer.usage_limit_per_member:
            used.append({**coupon, "state": "used"})
        elif offer.usage_limit_total is not None and total.get(offer.id, 0) >= offer.usage_limit_total:
            used.append({**coupon, "state": "all_used"})
        else:
            usable.append({**coupon, "state": "open" if coupon["open"] else "upcoming"})
    usable.sort(key=lambda coupon: coupon["state"] != "open")  # ready ones first, each group newest first
    return {"usable": usable, "past": used + _ended_codes(member, now, past)}


def _uses_by_offer(offer_ids: set[int], member: Member, now: datetime) -> tuple[dict[int, int], dict[int, int]]:
    """Counting uses per offer: everyone's, and `member`'s own."""
    if not offer_ids:
        return {}, {}
    query = (select(CouponUse.offer_id, func.count()).where(CouponUse.offer_id.in_(offer_ids), _counting_uses(now))
             .group_by(CouponUse.offer_id))
    total = dict(db.session.execute(query).all())
    mine = dict(db.session.execute(query.where(CouponUse.member_id == member.id)).all())
    return total, mine


def _ended_codes(member: Member, now: datetime, limit: int) -> list[dict[str, Any]]:
    """The member's own codes that can no longer be used: expired, or withdrawn by staff; latest first."""
    rows = db.session.execute(
        select(OfferCode, Offer).join(Offer, Offer.id == OfferCode.offer_id)
        .where(OfferCode.member_id == member.id,
               or_(Offer.active.is_(False), OfferCode.active.is_(False), Offer.ends_at <= now,
                   OfferCode.expires_at <= now))
        .order_by(OfferCode.id.desc()).limit(limit)).all()
    ended = []
    for code, offer in rows:
        expires_at = min((t for t in (offer.ends_at, code.expires_at) if t), default=None)
        ended.append({"code": code.code, "offer": offer, "assigned": True, "opens_at": None, "open": False,
                      "expires_at": expires_at, "early_access": False, "uses": None,
                      "state": "expired" if expires_at is not None and expires_at <= now else "withdrawn"})
    return ended
