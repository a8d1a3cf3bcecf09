"""After a run: the database must hold exactly what the load generator counted, and the ledger must verify.

A mismatch or a breach is a correctness failure (bench.run exits 1); a slow figure never is.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text

from bench.program import HOLD_POINTS
from loyalty import create_app
from loyalty.extensions import db
from loyalty.ledger.verify import verify

TOTALS = {
    "captured redemptions": "SELECT count(*) FROM redemptions WHERE status = 'captured'",
    "applied payment_intent.succeeded events": "SELECT count(*) FROM stripe_events "
                                               "WHERE type = 'payment_intent.succeeded' AND status = 'applied'",
    "Stripe refunds applied": "SELECT count(*) FROM refunds WHERE source = 'stripe'",
    "points redeemed": "SELECT COALESCE(SUM(balance), 0) FROM ledger_accounts WHERE kind = 'redeemed'",
    # A partial refund claws back the order's points in proportion to the money refunded so far.
    "refunded orders clawed back out of proportion": """
        SELECT count(*) FROM orders WHERE refunded_amount > 0
        AND points_clawed_back <> floor(points_earned * refunded_amount / total_amount::numeric)""",
}


@dataclass(frozen=True)
class Check:
    name: str
    database: int | str
    counted: int | str

    @property
    def ok(self) -> bool:
        return self.database == self.counted

    def as_dict(self) -> dict:
        return {"name": self.name, "database": self.database, "counted": self.counted, "ok": self.ok}


def check(url: str, ok_counts: dict[str, int]) -> list[Check]:
    """Compare the database with `ok_counts` (successful answers per operation, all phases summed)."""
    expected = {"captured redemptions": ok_counts.get("capture", 0),
                "applied payment_intent.succeeded events": ok_counts.get("earn", 0),
                "Stripe refunds applied": ok_counts.get("refund", 0),
                "points redeemed": HOLD_POINTS * ok_counts.get("capture", 0),
                "refunded orders clawed back out of proportion": 0}
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": url, "LOG_LEVEL": "WARNING"})
    with app.app_context():
        checks = [Check(name, int(db.session.execute(text(sql)).scalar()), expected[name])
                  for name, sql in TOTALS.items()]
        breaches = [f"{r.check.name} ({r.breaches})" for r in verify(db.session) if not r.ok]
        db.session.rollback()
        db.engine.dispose()
    return [*checks, Check("ledger verify breaches", ", ".join(breaches) or "none", "none")]
