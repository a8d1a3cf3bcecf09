"""Checkout: quotes, redemptions (hold, capture, cancel), paid orders and refunds.

It joins the rules (what an order earns, how many points may pay for it), the offers (whether a coupon
applies), the tiers (the member's discount) and the ledger (the only code that moves points). Adds and
flushes; never commits. State changes of one redemption are serialised on its row, then the offer's (when
its uses are limited), then the coupon use's and the code's, then the member's accounts: always in that
order, so two checkouts never wait on each other in a circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from math import floor
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, joinedload
from sqlalchemy.orm.attributes import set_committed_value

from loyalty import events
from loyalty.checkout.models import Redemption
from loyalty.db import for_update, new_public_id
from loyalty.errors import (
    Conflict,
    HoldExpired,
    InsufficientPoints,
    MemberSuspended,
    NotFound,
    RedemptionNotHeld,
    ValidationProblem,
)
from loyalty.extensions import db
from loyalty.idempotency import fingerprint
from loyalty.ledger import service as ledger
from loyalty.ledger.models import Hold, JournalTransaction
from loyalty.members import service as members
from loyalty.members.models import Member
from loyalty.offers import engine as offer_engine
from loyalty.offers import service as offers
from loyalty.offers.models import Offer
from loyalty.orders.models import Order, Refund
from loyalty.pagination import paginate
from loyalty.rules import engine
from loyalty.rules import service as rules
from loyalty.rules.orders import engine_order, engine_order_from
from loyalty.tiers import service as tiers
from loyalty.tiers.models import Tier
from loyalty.unit_of_work import SAME_BATCH, Batches

# --- the order as the engines see it ---------------------------------------------------------------------


def _cart(data: dict[str, Any]) -> offer_engine.Cart:
    """The offers engine's view: the given lines, or else one line worth the whole amount."""
    lines = data.get("lines") or [{"sku": "order", "quantity": 1,
                                   "unit_amount": max(0, data["amount"] - (data.get("shipping_amount") or 0))}]
    return offer_engine.Cart(data["currency"], tuple(
        offer_engine.CartLine(sku=line["sku"], quantity=line["quantity"], unit_amount=line["unit_amount"],
                              category=line.get("category"), discount_amount=line.get("discount_amount") or 0)
        for line in lines), data.get("shipping_amount") or 0)


def _lines_net(cart: offer_engine.Cart) -> int:
    return sum(max(0, line.quantity * line.unit_amount - line.discount_amount) for line in cart.lines)


def get_member(public_id: str) -> Member:
    member = members.find_member(public_id)
    if member is None or member.status == "erased":
        raise ValidationProblem(errors={"member_id": ["No member has this id."]})
    return member


# --- pricing: coupon, tier discount and points, in that order -------------------------------------------

@dataclass(frozen=True)
class Program:
    """What a checkout reads once per request: the rules in force and the member's tier."""

    rules: dict[str, Any] | None
    tier: Tier | None

    @classmethod
    def for_member(cls, member: Member, now: datetime) -> Program:
        version = rules.in_force(now)
        return cls(rules.parsed(version) if version else None, tiers.current_tier(member)[0])

    def redeem(self, payable: int, currency: str, available: int) -> engine.RedeemResult:
        if self.rules is None:
            return engine.RedeemResult(False, "No rules are in force", 0, Decimal(0), 0, 0, 1)
        # Redemption rules look only at the member's tier.
        context = engine.MemberContext(tier=self.tier.code if self.tier else None)
        return engine.evaluate_redeem(payable, currency, context, available, self.rules)

    def points_value(self, points: int, currency: str) -> int:
        return engine.points_value(points, currency, self.rules) if self.rules and points else 0

    def points_refusal(self, points: int, payable: int, currency: str) -> str | None:
        """Why the rules do not let `points` pay for this order (balance aside: the ledger decides that)."""
        result = self.redeem(payable, currency, points)
        if result.allowed and points < (least := engine.least_points(result.min_points, result.step)):
            return f"At least {least} points must be redeemed; {points} were asked."
        if not result.allowed or result.max_points == 0:
            return result.reason or "Points cannot pay for this order."
        if points % result.step:
            return f"Points are redeemed in steps of {result.step}."
        if points > result.max_points:
            return f"At most {result.max_points} points may pay for this order."
        return None


@dataclass(frozen=True)
class Pricing:
    amount: int  # before the loyalty discounts
    coupon: offer_engine.Validation | None  # None: no code given
    tier_percent: int
    tier_discount: int
    # Why points may not pay alongside the coupon, when its offer says they do not combine.
    points_refusal: str | None = None

    @property
    def coupon_discount(self) -> int:
        return self.coupon.discount_amount if self.coupon and self.coupon.valid else 0

    @property
    def payable_before_points(self) -> int:
        return max(0, self.amount - self.coupon_discount - self.tier_discount)


def _pricing(program: Program, cart: offer_engine.Cart, amount: int, code: str | None,
             coupon: offer_engine.Validation | None, offer: Offer | None) -> Pricing:
    """The coupon applies to the lines first; the tier discount to what is left of them, unless the coupon's
    offer does not combine with it (nor, if it says so, with points)."""
    offer = offer if coupon and coupon.valid else None
    percent = program.tier.discount_percent if program.tier else 0
    if offer is not None and not offer.combines_with_tier_discount:
        percent = 0
    lines_left = _lines_net(cart) - (sum(coupon.line_discounts) if offer is not None else 0)
    refusal = f"Coupon {offers.normalise_code(code)} does not combine with points." \
        if offer is not None and not offer.combines_with_points else None
    return Pricing(amount, coupon, percent, floor(max(0, lines_left) * percent / 100), refusal)


# --- quote -------------------------------------------------------------------------------------------------

def quote(payload: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    """What an order would earn and may redeem, and what a coupon and the tier take off. Writes nothing."""
    member = get_member(payload["member_id"])
    currency = payload["currency"]
    cart = _cart({**payload, "amount": 0})
    subtotal = _lines_net(cart) + cart.shipping_amount - (payload.get("discount_amount") or 0)
    code = payload.get("coupon_code")
    validation, offer = offers.check(code, member, cart, now) if code else (None, None)
    program = Program.for_member(member, now)
    pricing = _pricing(program, cart, max(0, subtotal), code, validation, offer)
    available = ledger.balances(member.id).available
    redeem = program.redeem(pricing.payable_before_points, currency, 0 if pricing.points_refusal else available)
    answer_redeem: dict[str, Any] = {"max_points": redeem.max_points, "value_per_point": redeem.value_per_point,
                                     "max_discount_amount": redeem.max_discount_amount,
                                     "min_points": redeem.min_points, "step": redeem.step,
                                     "available_points": available,
                                     "reason": pricing.points_refusal or redeem.reason}
    points, points_discount = payload.get("points") or 0, 0
    if points:
        refusal = pricing.points_refusal or program.points_refusal(points, pricing.payable_before_points, currency)
        if refusal is None and points > available:
            refusal = f"The member has {available} points available."
        points_discount = 0 if refusal else program.points_value(points, currency)
        answer_redeem.update(points=points, discount_amount=points_discount, error=refusal)
    earn = _earn_estimate(member, payload, cart, pricing, points_discount, now)
    return {
        "member_id": member.public_id, "currency": currency, "subtotal_amount": pricing.amount,
        "earn": {"points": earn.points, "pending_until": earn.pending_until, "expires_at": earn.expires_at,
                 "breakdown": earn.breakdown},
        "redeem": answer_redeem,
        "coupon": None if validation is None else {
            "code": offers.normalise_code(code), "valid": validation.valid, "code_error": validation.code,
            "detail": validation.detail, "discount_amount": validation.discount_amount,
            "opens_at": validation.opens_at},
        "tier_discount": {"percent": pricing.tier_percent, "amount": pricing.tier_discount}
        if pricing.tier_percent else None,
        "total_amount": max(0, pricing.payable_before_points - points_discount),
    }


def _earn_estimate(member: Member, payload: dict[str, Any], cart: offer_engine.Cart, pricing: Pricing,
                   points_discount: int, now: datetime) -> engine.EarnResult:
    """What the order earns once paid: on what is paid, so every discount, points' value included, is off."""
    coupon = pricing.coupon if pricing.coupon and pricing.coupon.valid else None
    lines = [{"sku": line.sku, "category": line.category, "quantity": line.quantity,
              "unit_amount": line.unit_amount,
              "discount_amount": line.discount_amount + (coupon.line_discounts[i] if coupon else 0)}
             for i, line in enumerate(cart.lines)]
    order = engine_order_from({
        "currency": payload["currency"], "lines": lines,
        "shipping_amount": max(0, cart.shipping_amount - (coupon.shipping_discount if coupon else 0)),
        "discount_amount": (payload.get("discount_amount") or 0) + pricing.tier_discount + points_discount})
    result, _ = rules.evaluate_order(member, order, now)
    return result


# --- redemptions -------------------------------------------------------------------------------------------

def get_redemption(public_id: str, *, lock: bool = False) -> Redemption:
    # With its member, whom every answer names; the lock is the redemption's row alone.
    query = select(Redemption).where(Redemption.public_id == public_id).options(
        joinedload(Redemption.member, innerjoin=True))
    if lock:
        query = for_update(query.execution_options(populate_existing=True), db.session, of=Redemption)
    redemption = db.session.scalar(query)
    if redemption is None:
        raise NotFound("No redemption has this id.")
    return redemption


def member_redemptions(member: Member, *, limit: int, starting_after: str | None = None) -> dict:
    """A member's redemptions, newest first, one page at a time."""
    return paginate(select(Redemption).where(Redemption.member_id == member.id), Redemption, limit=limit,
                    starting_after=starting_after, newest_first=True)


def create_redemption(payload: dict[str, Any], *, now: datetime, hold_for: timedelta) -> Redemption:
    """Hold points and reserve one use of a coupon for an order, together or not at all."""
    points, code = payload.get("points") or 0, payload.get("coupon_code")
    if not points and not code:
        raise ValidationProblem("Send points, a coupon_code or both.", errors={"points": ["Send points or a coupon."]})
    member = get_member(payload["member_id"])
    if points and member.status == "suspended":
        raise MemberSuspended("The member is suspended and cannot spend points.")
    cart = _cart(payload)
    redemption = Redemption(public_id=new_public_id("red"), member_id=member.id, order_id=payload["order_id"],
                            currency=payload["currency"], amount=payload["amount"], status="held",
                            expires_at=now + hold_for, created_at=now)
    validation = offer = None
    if code:
        use, validation = offers.reserve(code, member, cart, reference=redemption.coupon_reference,
                                         expires_at=redemption.expires_at, now=now, order_id=redemption.order_id)
        offer = db.session.get(Offer, use.offer_id)  # loaded by the reservation
        redemption.coupon_code = offers.normalise_code(code)
        redemption.coupon_discount_amount = validation.discount_amount
    if points:
        program = Program.for_member(member, now)
        pricing = _pricing(program, cart, payload["amount"], code, validation, offer)
        refusal = pricing.points_refusal or program.points_refusal(points, pricing.payable_before_points,
                                                                    payload["currency"])
        if refusal:
            raise ValidationProblem(refusal, errors={"points": [refusal]})
        redemption.points = points
        redemption.points_discount_amount = program.points_value(points, payload["currency"])
        # The hold first, so the redemption is inserted once, already pointing at it.
        redemption.hold_id = ledger.hold(
            member.id, points, reference=f"redemption:{redemption.public_id}", expires_at=redemption.expires_at,
            now=now, order_id=redemption.order_id, description=f"Points held for order {redemption.order_id}").id
    set_committed_value(redemption, "member", member)  # the answer names the member: no second read
    db.session.add(redemption)
    db.session.flush()
    return redemption


def _hold(redemption: Redemption) -> Hold | None:
    return db.session.get(Hold, redemption.hold_id) if redemption.hold_id else None


def capture(public_id: str, *, now: datetime) -> Redemption:
    """The payment went through: the held points are redeemed and the coupon use counts. Idempotent."""
    redemption = get_redemption(public_id, lock=True)
    if redemption.status == "captured":
        return redemption
    if redemption.status == "released":
        raise RedemptionNotHeld(f"The redemption was released ({redemption.release_reason}).")
    if now >= redemption.expires_at:
        raise HoldExpired("The hold expired before it was captured; create a new redemption.")
    _capture(redemption, now=now, paid_at=now)
    return redemption


def _capture(redemption: Redemption, *, now: datetime, paid_at: datetime) -> None:
    if redemption.coupon_code:  # the coupon's rows before the member's: the order every checkout locks in
        redemption.problem = _consume_coupon(redemption, now=now)
    if (hold := _hold(redemption)) is not None:
        ledger.capture(hold, now=now, paid_at=paid_at)
    redemption.status, redemption.resolved_at = "captured", now
    _captured(redemption)


def _captured(redemption: Redemption) -> None:
    events.emit("redemption.captured", {
        "redemption_id": redemption.public_id, "order_id": redemption.order_id, "points": redemption.points,
        "coupon_code": redemption.coupon_code, "discount_amount": redemption.discount_amount},
        member_id=redemption.member_id)


def cancel(public_id: str, *, now: datetime, reason: str = "canceled") -> Redemption:
    """The checkout was abandoned: points and coupon go back. Canceling a released redemption is harmless."""
    redemption = get_redemption(public_id, lock=True)
    if redemption.status == "captured":
        raise RedemptionNotHeld("The redemption was captured; refund the order to give the points back.")
    if redemption.status == "held":
        _release(redemption, now=now, reason=reason)
    return redemption


def _release(redemption: Redemption, *, now: datetime, reason: str) -> None:
    if redemption.coupon_code:
        offers.release(redemption.coupon_reference, now=now)
    if (hold := _hold(redemption)) is not None:
        ledger.release(hold, now=now, reason=reason)
    redemption.status, redemption.release_reason, redemption.resolved_at = "released", reason, now


def settle_if_expired(redemption: Redemption, *, now: datetime) -> Redemption:
    """A hold past its expiry is released; done by whoever looks first (a read, a cancel or the worker)."""
    if redemption.status == "held" and now >= redemption.expires_at:
        redemption = get_redemption(redemption.public_id, lock=True)
        if redemption.status == "held":
            _release(redemption, now=now, reason="expired")
    return redemption


def release_expired(now: datetime, *, batch_size: int = 1000) -> Batches:
    """Release redemptions past their expiry, a batch at a time (the worker's: `loyalty.unit_of_work.run_batches`)."""
    while ids := db.session.scalars(select(Redemption.public_id).where(
            Redemption.status == "held", Redemption.expires_at <= now).order_by(Redemption.id).limit(batch_size)).all():
        released = 0
        for public_id in ids:
            redemption = get_redemption(public_id, lock=True)
            if redemption.status == "held":
                _release(redemption, now=now, reason="expired")
                released += 1
            # One redemption a transaction: its locks (redemption, offer, member) go at once, never held
            # while the next is taken, so a checkout touching the same rows cannot deadlock with the job.
            yield SAME_BATCH
        yield {"released": released}


def pay(redemption: Redemption, *, paid_at: datetime, now: datetime) -> Redemption:
    """A payment went through with this redemption's discount: capture it. A hold that lapsed before the
    payment is taken again if the member still has the points; if not, the redemption says so."""
    redemption = get_redemption(redemption.public_id, lock=True)
    if redemption.status == "captured":
        return redemption
    if redemption.status == "held" and min(now, paid_at) < redemption.expires_at:
        _capture(redemption, now=now, paid_at=paid_at)
        return redemption
    if redemption.status == "held":
        _release(redemption, now=now, reason="expired")
    _take_again(redemption, now=now)
    return redemption


def _consume_coupon(redemption: Redemption, *, now: datetime) -> str | None:
    """The discount was given, so the coupon's use counts, whatever the offer's limits say now; its
    reservation is taken again if it lapsed. A unique code whose last use went to another order meanwhile is
    not used twice: the answer is the problem to record on the redemption."""
    try:
        offers.consume(redemption.coupon_reference, now=now, even_if_released=True)
    except offers.CodeUsedUp as used_up:
        return f"Paid after the hold lapsed; the coupon was not used twice: {used_up.detail}"
    return None


def _take_again(redemption: Redemption, *, now: datetime) -> None:
    coupon_problem = _consume_coupon(redemption, now=now) if redemption.coupon_code else None
    redemption.problem = coupon_problem
    if redemption.points:
        try:
            with db.session.begin_nested():
                hold = ledger.hold(redemption.member_id, redemption.points, now=now, order_id=redemption.order_id,
                                   reference=f"redemption:{redemption.public_id}:late",
                                   expires_at=now + timedelta(minutes=1),
                                   description=f"Points for order {redemption.order_id}, paid after the hold lapsed")
                ledger.capture(hold, now=now)
        except (InsufficientPoints, MemberSuspended) as refusal:
            points_problem = (f"Paid after the hold lapsed; the {redemption.points} points could not be taken "
                              f"again: {refusal.detail}")
            redemption.problem = "; ".join(filter(None, (points_problem, coupon_problem)))[:300]
            return
        redemption.hold_id = hold.id
    redemption.status, redemption.release_reason, redemption.resolved_at = "captured", None, now
    _captured(redemption)


# --- paid orders --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OrderResult:
    order: Order
    breakdown: tuple[engine.BreakdownItem, ...]
    transaction_public_id: str | None


def find_order(order_id: str, *, lock: bool = False) -> Order | None:
    query = select(Order).where(Order.order_id == order_id)
    if lock:
        query = for_update(query.execution_options(populate_existing=True), db.session)
    return db.session.scalar(query)


def record_paid_order(payload: dict[str, Any], *, now: datetime, payment_intent_id: str | None = None
                      ) -> OrderResult:
    """Record a paid order, capture its redemption and earn its points on what was paid. The same order_id
    with the same details answers the first result; with other details it is a conflict."""
    request_hash = fingerprint(payload)
    if (existing := find_order(payload["order_id"])) is not None:
        return _replay(existing, request_hash)
    member = get_member(payload["member_id"])
    paid_at = payload.get("paid_at") or now
    if paid_at > now:
        raise ValidationProblem(errors={"paid_at": ["Cannot be in the future."]})
    redemption = _order_redemption(payload, member)
    order = Order(order_id=payload["order_id"], member_id=member.id, channel=payload.get("channel") or "web",
                  currency=payload["currency"], total_amount=payload["total_amount"],
                  shipping_amount=payload.get("shipping_amount") or 0, discount_amount=_discount(payload),
                  lines=[{k: v for k, v in line.items() if v is not None} for line in payload["lines"]],
                  paid_at=paid_at, request_hash=request_hash, payment_intent_id=payment_intent_id,
                  redemption_id=redemption.id if redemption else None)
    try:
        with db.session.begin_nested():
            db.session.add(order)
    except IntegrityError:  # the same order (or payment) arrived twice at once: the first one decides
        if (existing := find_order(payload["order_id"])) is None:
            raise Conflict("This payment was already recorded as another order.", code="order_conflict") from None
        return _replay(existing, request_hash)
    if redemption is not None:
        pay(redemption, paid_at=paid_at, now=now)
    return OrderResult(order, *_earn_for(order, member, now))


def _discount(payload: dict[str, Any]) -> int:
    """Everything not paid, so the order earns on what was paid: the stated discount, or more when the
    total says so (points and coupons of a redemption)."""
    lines = sum(max(0, line["quantity"] * line["unit_amount"] - (line.get("discount_amount") or 0))
                for line in payload["lines"])
    unpaid = lines + (payload.get("shipping_amount") or 0) - payload["total_amount"]
    return max(payload.get("discount_amount") or 0, unpaid, 0)


def _order_redemption(payload: dict[str, Any], member: Member) -> Redemption | None:
    if not payload.get("redemption_id"):
        return None
    redemption = db.session.scalar(select(Redemption).where(Redemption.public_id == payload["redemption_id"]))
    if redemption is None or redemption.member_id != member.id:
        raise ValidationProblem(errors={"redemption_id": ["No redemption of this member has this id."]})
    if redemption.order_id != payload["order_id"]:
        raise ValidationProblem(errors={"redemption_id": [f"This redemption is for order {redemption.order_id}."]})
    return redemption


def _earn_for(order: Order, member: Member, now: datetime) -> tuple[tuple[engine.BreakdownItem, ...], str | None]:
    # Before asking whether this is the first order: two orders paid at once then meet here, and the second
    # sees the first, so the first-order bonus and the referral are paid once.
    ledger.lock_members([member.id, member.referred_by_id] if member.referred_by_id else [member.id])
    first_order = not _has_earlier_orders(member, order)
    result, version = rules.evaluate_order(member, engine_order(order), order.paid_at, exclude_order=order.id)
    txn = rules.earn(member, result, kind="earn", reference=f"order:{order.order_id}:earn", now=now,
                     version=version, order_id=order.order_id,
                     description=f"Order {order.order_id}: {result.points} points")
    order.points_earned, order.rule_version = (result.points if txn else 0), version.version if version else None
    order.breakdown = [{"rule": i.rule, "points": i.points, "detail": i.detail} for i in result.breakdown]
    order.pending_until = result.pending_until if txn else None
    order.earn_transaction_id = txn.id if txn else None
    if first_order and member.referred_by_id:
        _pay_referral(member, order, now)
    tiers.upgrade_if_qualified(member, now)
    db.session.flush()
    return _breakdown_of(order), txn.public_id if txn else None


def _has_earlier_orders(member: Member, order: Order) -> bool:
    return db.session.scalar(select(Order.id).where(Order.member_id == member.id, Order.id != order.id).limit(1)) \
        is not None


def _pay_referral(member: Member, order: Order, now: datetime) -> None:
    """Both sides of a referral are paid when the referred member's first order is paid, once: a later order
    never pays it again, even when this one is refunded. Both bonuses belong to the order (pending for its
    return window, taken back by its full refund)."""
    referrer = db.session.get(Member, member.referred_by_id)
    rules.award_event(member, "referral_referred", now=now, reference=f"referral:{member.public_id}:referred",
                      order_id=order.order_id, paid_at=order.paid_at)
    if referrer.status != "erased":
        rules.award_event(referrer, "referral_referrer", now=now, reference=f"referral:{member.public_id}:referrer",
                          order_id=order.order_id, paid_at=order.paid_at)


def _bonuses(order: Order) -> list[JournalTransaction]:
    """The bonuses the order triggered (its referral), whoever was paid them, found by the order's id; with
    the accounts of everyone concerned locked at once, in member order, as when the referral was paid."""
    reversal = aliased(JournalTransaction)
    bonuses = list(db.session.scalars(select(JournalTransaction).where(  # staff may have reversed one already
        JournalTransaction.order_id == order.order_id, JournalTransaction.kind == "bonus",
        ~select(reversal.id).where(reversal.reverses_id == JournalTransaction.id).exists())))
    if bonuses:
        ledger.lock_members(sorted({order.member_id, *(bonus.member_id for bonus in bonuses)}))
    return bonuses


def _replay(order: Order, request_hash: str) -> OrderResult:
    if order.request_hash != request_hash:
        raise Conflict("This order_id was already recorded with other details.", code="order_conflict")
    return order_result(order)


def order_result(order: Order) -> OrderResult:
    txn = db.session.get(JournalTransaction, order.earn_transaction_id) if order.earn_transaction_id else None
    return OrderResult(order, _breakdown_of(order), txn.public_id if txn else None)


def _breakdown_of(order: Order) -> tuple[engine.BreakdownItem, ...]:
    return tuple(engine.BreakdownItem(**item) for item in order.breakdown)


# --- refunds ------------------------------------------------------------------------------------------------

def get_order(order_id: str, *, lock: bool = False) -> Order:
    order = find_order(order_id, lock=lock)
    if order is None:
        raise NotFound("No order has this order_id.")
    return order


def refund(order_id: str, payload: dict[str, Any], *, now: datetime, source: str = "api") -> Refund:
    """Give back part or all of an order: its earned points are clawed back and its redeemed points restored
    in proportion to the money refunded so far, so partial refunds add up to exactly the full one."""
    return refund_order(get_order(order_id, lock=True), payload, now=now, source=source)


def refund_order(order: Order, payload: dict[str, Any], *, now: datetime, source: str) -> Refund:
    """`refund` of an order the caller has locked."""
    request_hash = fingerprint(payload["refund_id"], payload["amount"])
    previous = db.session.scalar(select(Refund).where(Refund.order_id == order.id,
                                                      Refund.refund_id == payload["refund_id"]))
    if previous is not None:
        if previous.request_hash != request_hash:
            raise Conflict("This refund_id was already recorded with another amount.", code="refund_conflict")
        return previous
    left = order.total_amount - order.refunded_amount
    if payload["amount"] > left:
        raise Conflict(f"Only {left} of the order's {order.total_amount} are left to refund.",
                       code="refund_exceeds_order", errors={"amount": [f"At most {left}."]})
    row = Refund(order_id=order.id, member_id=order.member_id, refund_id=payload["refund_id"], source=source,
                 amount=payload["amount"], reason=payload.get("reason"), request_hash=request_hash, created_at=now)
    db.session.add(row)
    db.session.flush()
    refunded = order.refunded_amount + row.amount
    bonuses = _bonuses(order) if refunded == order.total_amount else []
    _claw_back(order, row, refunded, now)
    _claw_back_bonuses(order, bonuses, row, now)
    _restore(order, row, refunded, now)
    order.refunded_amount = refunded
    order.status = "refunded" if refunded == order.total_amount else "partially_refunded"
    for member_id in sorted({order.member_id, *(bonus.member_id for bonus in bonuses)}):
        tiers.revert_if_unqualified(member_id, since=order.paid_at, now=now)
    events.emit("order.refunded", {
        "order_id": order.order_id, "refund_id": row.refund_id, "amount": row.amount, "currency": order.currency,
        "refunded_amount": refunded, "points_clawed_back": row.points_clawed_back, "shortfall": row.shortfall,
        "points_restored": row.points_restored, "order_status": order.status}, member_id=order.member_id)
    return row


def _share(points: int, refunded: int, total: int) -> int:
    """The points that follow `refunded` of `total`: rounded down, and all of them at a full refund."""
    return points if refunded >= total else floor(points * refunded / total)


def _claw_back(order: Order, row: Refund, refunded: int, now: datetime) -> None:
    points = _share(order.points_earned, refunded, order.total_amount) - order.points_clawed_back
    if points <= 0 or order.earn_transaction_id is None:
        return
    earn = db.session.get(JournalTransaction, order.earn_transaction_id)
    txn = ledger.clawback(earn, points, reference=f"refund:{row.public_id}:clawback", now=now,
                          description=f"Refund of order {order.order_id}")
    row.points_clawed_back, row.shortfall = points, txn.shortfall
    order.points_clawed_back += points


def _claw_back_bonuses(order: Order, bonuses: list[JournalTransaction], row: Refund, now: datetime) -> None:
    """A bonus is all or nothing: a partial refund leaves it, the full refund takes all of it back, from
    everyone it paid (what they already spent is their shortfall)."""
    for bonus in bonuses:
        ledger.clawback(bonus, bonus.points, reference=f"refund:{row.public_id}:clawback:{bonus.public_id}", now=now,
                        description=f"Order {order.order_id} was refunded: {bonus.description}")


def _restore(order: Order, row: Refund, refunded: int, now: datetime) -> None:
    redemption = db.session.get(Redemption, order.redemption_id) if order.redemption_id else None
    hold = _hold(redemption) if redemption is not None and redemption.status == "captured" else None
    if hold is None:
        return
    points = _share(hold.amount, refunded, order.total_amount) - order.points_restored
    if points <= 0:
        return
    ledger.restore(hold, points, reference=f"refund:{row.public_id}:restore", now=now,
                   description=f"Refund of order {order.order_id}: {points} redeemed points back")
    row.points_restored = points
    order.points_restored += points


def refunded_by(order: Order, source: str) -> int:
    return int(db.session.scalar(select(func.coalesce(func.sum(Refund.amount), 0))  # PostgreSQL sums as numeric
                                 .where(Refund.order_id == order.id, Refund.source == source)))


# --- disputes ------------------------------------------------------------------------------------------------

def open_dispute(order: Order) -> None:
    """A disputed payment: the order's points still pending stay pending until the dispute closes."""
    order.dispute_status = "open"
    bonuses = _bonuses(order)
    if order.earn_transaction_id:
        ledger.freeze_pending(db.session.get(JournalTransaction, order.earn_transaction_id))
    for bonus in bonuses:
        ledger.freeze_pending(bonus)


def close_dispute(order: Order, *, dispute_id: str, lost: bool, amount: int, now: datetime) -> None:
    """Won: the points go on as before. Lost: the money went back, so the points follow it like a refund."""
    bonuses = _bonuses(order)
    if order.earn_transaction_id and order.pending_until:
        ledger.unfreeze_pending(db.session.get(JournalTransaction, order.earn_transaction_id), order.pending_until)
    for bonus in bonuses:  # they share the order's return window
        ledger.unfreeze_pending(bonus, order.pending_until or now)
    order.dispute_status = "lost" if lost else "won"
    left = order.total_amount - order.refunded_amount
    if lost and min(amount, left) > 0:
        refund(order.order_id, {"refund_id": f"dispute:{dispute_id}", "amount": min(amount, left),
                                "reason": "dispute lost"}, now=now, source="dispute")
