"""Signed Stripe events for the webhook phases, one file per wrk thread (bench/wrk/common.lua reads them).

Lua cannot sign, so the bodies are made here right before their phase: a signature is good for 300 s
(STRIPE_WEBHOOK_TOLERANCE_SECONDS). Each thread gets enough for a generous ceiling of requests; one that
runs out stops and says so rather than send a body twice. Payloads are tests/stripe_events.py's real
shapes: a `payment_intent.succeeded` naming the member and the order in its metadata, and a
`charge.refunded` for the same PaymentIntent (the refund handler finds the order by it).
"""

from __future__ import annotations

import math
import multiprocessing
import random
import time
from dataclasses import dataclass
from pathlib import Path

from bench.server import WEBHOOK_SECRET, WORK
from tests import stripe_events

CEILING_PER_THREAD_SECOND = 134  # 2,000 per thread per 15 s: far more than one connection gets answered
REFUND_SHARES = (20, 40, 60, 80)  # each order is refunded in 20% parts (cumulative percent), in this order


@dataclass(frozen=True)
class Payment:
    intent: str
    charge: str
    order_id: str
    member: str
    amount: int


def per_thread(seconds: float, share: float = 1.0) -> int:
    """How many bodies a thread may need in `seconds` when `share` of its operations send one."""
    return math.ceil(CEILING_PER_THREAD_SECOND * seconds * share)


def new_payments(tag: str, threads: int, count: int, members: int) -> list[list[Payment]]:
    """`count` new paid orders for each of `threads` threads, for random members."""
    rng = random.Random(tag)
    return [[Payment(stripe_events.new_id("pi"), stripe_events.new_id("ch"), f"{tag}-{thread}-{n}",
                     f"mem_bench{rng.randint(1, members)}", rng.randrange(1000, 20000, 100))
             for n in range(count)] for thread in range(1, threads + 1)]


def write(kind: str, label: str, by_thread: list[list[Payment]]) -> str:
    """Write thread n's events to `<label>-<kind>-<n>.bodies`; answers the pattern Lua formats with n."""
    pattern = str(WORK / f"{label}-{kind}-%d.bodies")
    jobs = [(kind, pattern % n, payments) for n, payments in enumerate(by_thread, start=1)]
    with multiprocessing.Pool() as pool:  # about 0.5 ms a body, most of it random ids: use every core
        pool.starmap(_write_file, jobs)
    return pattern


def _write_file(kind: str, path: str, payments: list[Payment]) -> None:
    events = [_earn(p) for p in payments] if kind == "earn" else \
        [_refund(p, before, share) for before, share in zip((0, *REFUND_SHARES[:-1]), REFUND_SHARES, strict=True)
         for p in payments]
    with Path(path).open("wb") as out:
        for payload in events:
            data = payload.encode()
            out.write(b"%s\n%d\n%s" % (stripe_events.sign(payload, WEBHOOK_SECRET).encode(), len(data), data))


def _earn(p: Payment) -> str:
    created = int(time.time())  # the order is paid now, so the rules published at seeding apply
    intent = stripe_events.payment_intent(amount=p.amount, intent_id=p.intent, latest_charge=p.charge,
                                          metadata={"loyalty_member_id": p.member, "order_id": p.order_id},
                                          created=created)
    return stripe_events.body(stripe_events.event("payment_intent.succeeded", intent, created=created))


def _refund(p: Payment, before: int, share: int) -> str:
    created = int(time.time())
    charge = stripe_events.charge(amount=p.amount, amount_refunded=p.amount * share // 100, payment_intent=p.intent,
                                  charge_id=p.charge, created=created)
    previous = {"amount_refunded": p.amount * before // 100, "refunded": False}
    return stripe_events.body(stripe_events.event("charge.refunded", charge, created=created,
                                                  previous_attributes=previous))


def deal(payments: list[Payment], threads: int, limit: int) -> list[list[Payment]]:
    """Share paid orders among threads round-robin, at most `limit` events' worth each."""
    by_thread = [payments[n::threads] for n in range(threads)]
    return [orders[:max(1, limit // len(REFUND_SHARES))] for orders in by_thread]
