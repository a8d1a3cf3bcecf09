"""Points liability: what the program owes its members now, in points and in money.

Read from the ledger's cached balances, never from the journal: the sums of the members' available, pending
and held accounts, and the members holding any. The index on ledger_accounts (kind, balance, member_id)
holds everything these queries read, and they read only its positive balances, so PostgreSQL answers with
an index-only scan whatever the length of the history, skipping the many empty pending and held accounts.
Its price: a balance change also updates that index (no HOT update), a cost every movement pays for the
report to stay cheap.

Outstanding is available + pending + held: points a checkout holds are still owed until it captures them.
Money is each figure at the redemption value of the rules in force (`redeem.point_values`),
per currency that has one, rounded down to a minor unit as checkout values points.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from loyalty.extensions import db
from loyalty.ledger.models import MEMBER_ACCOUNTS, Account
from loyalty.reports import service
from loyalty.rules import engine
from loyalty.rules import service as rules

MEMBER_FIGURES = (*MEMBER_ACCOUNTS, "outstanding")


def members_holding_points() -> int:
    """Members with points in any of their own accounts (erased members hold none: theirs are forfeited).
    The same index ranges, counted once per member."""
    holders = (select(Account.member_id).where(Account.kind.in_(MEMBER_ACCOUNTS), Account.balance > 0)
               .distinct().subquery())
    return db.session.scalar(select(func.count()).select_from(holders)) or 0


def liability(now: datetime) -> dict[str, Any]:
    balances, holders = service.balances_and_holders()
    points = {**balances, "outstanding": sum(balances.values())}
    version = rules.in_force(now)
    document = rules.parsed(version) if version else None
    values = document["redeem"]["point_values"] if document else {}
    return {
        "as_of": now,
        "points": points,
        "members_holding_points": members_holding_points(),
        "members_holding": holders,
        "rule_version": version.version if version else None,
        "money": [{"currency": currency, "value_per_point": value,
                   **{figure: engine.points_value(points[figure], currency, document) for figure in MEMBER_FIGURES}}
                  for currency, value in sorted(values.items())],
    }
