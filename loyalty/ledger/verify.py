"""Every invariant of the ledger, and the counter unique codes' uses are arbitrated on, checked over the whole
database in set-based SQL.

Each check is one query that answers the breaching rows, at most `EXAMPLES` of them, with the
total count beside each row (a window count), so a clean database costs one scan per check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import text
from sqlalchemy.orm import Session

EXAMPLES = 10
_MEMBER_KINDS = "('available', 'pending', 'held')"


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    sql: str


@dataclass
class CheckResult:
    check: Check
    breaches: int = 0
    examples: list[tuple] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.breaches == 0


def _lots_match(status: str, account: str) -> str:
    return f"""
        SELECT a.member_id, a.balance, COALESCE(l.total, 0), COUNT(*) OVER ()
        FROM ledger_accounts a
        LEFT JOIN (SELECT member_id, SUM(remaining) AS total FROM ledger_lots
                   WHERE status = '{status}' GROUP BY member_id) l ON l.member_id = a.member_id
        WHERE a.kind = '{account}' AND a.balance <> COALESCE(l.total, 0)"""


CHECKS = (
    Check("transactions_balance", "every transaction has two or more postings summing to zero", """
        SELECT t.public_id, COUNT(p.id), COALESCE(SUM(p.amount), 0), COUNT(*) OVER ()
        FROM ledger_transactions t LEFT JOIN ledger_postings p ON p.transaction_id = t.id
        GROUP BY t.id, t.public_id
        HAVING COUNT(p.id) < 2 OR COALESCE(SUM(p.amount), 0) <> 0"""),
    Check("cached_balances", "each account's cached balance equals the sum of its postings", """
        SELECT a.member_id, a.kind, a.balance, COALESCE(s.total, 0), COUNT(*) OVER ()
        FROM ledger_accounts a
        LEFT JOIN (SELECT account_id, SUM(amount) AS total FROM ledger_postings GROUP BY account_id) s
               ON s.account_id = a.id
        WHERE a.balance <> COALESCE(s.total, 0)"""),
    Check("postings_stay_with_their_member", "a transaction posts only to its own member's accounts", """
        SELECT t.public_id, a.member_id, t.member_id, COUNT(*) OVER ()
        FROM ledger_postings p
        JOIN ledger_transactions t ON t.id = p.transaction_id
        JOIN ledger_accounts a ON a.id = p.account_id
        WHERE a.member_id <> t.member_id"""),
    Check("no_negative_member_balance", "no member account is below zero", f"""
        SELECT member_id, kind, balance, COUNT(*) OVER () FROM ledger_accounts
        WHERE kind IN {_MEMBER_KINDS} AND balance < 0"""),
    Check("available_equals_active_lots", "a member's available balance equals the remaining of their active lots",
          _lots_match("active", "available")),
    Check("pending_equals_pending_lots", "a member's pending balance equals the remaining of their pending lots",
          _lots_match("pending", "pending")),
    Check("held_equals_open_holds", "a member's held balance equals the amount of their open holds", """
        SELECT a.member_id, a.balance, COALESCE(h.total, 0), COUNT(*) OVER ()
        FROM ledger_accounts a
        LEFT JOIN (SELECT member_id, SUM(amount) AS total FROM ledger_holds
                   WHERE status = 'held' GROUP BY member_id) h ON h.member_id = a.member_id
        WHERE a.kind = 'held' AND a.balance <> COALESCE(h.total, 0)"""),
    Check("issued_is_accounted_for",
          "per member, points issued and adjusted equal outstanding plus redeemed plus expired", """
        SELECT member_id, SUM(balance), COUNT(*) OVER () FROM ledger_accounts
        GROUP BY member_id HAVING SUM(balance) <> 0"""),
    Check("lots_match_their_movements", "each lot's remaining equals the sum of its movements, within its amount", """
        SELECT l.public_id, l.amount, l.remaining, COALESCE(m.total, 0), COUNT(*) OVER ()
        FROM ledger_lots l
        LEFT JOIN (SELECT lot_id, SUM(amount) AS total FROM ledger_lot_movements GROUP BY lot_id) m
               ON m.lot_id = l.id
        WHERE l.remaining <> COALESCE(m.total, 0) OR l.remaining < 0 OR l.remaining > l.amount"""),
    Check("lot_status_matches_remaining", "spent and expired lots are empty; active lots are not", """
        SELECT public_id, status, remaining, COUNT(*) OVER () FROM ledger_lots
        WHERE (status IN ('spent', 'expired') AND remaining <> 0) OR (status = 'active' AND remaining = 0)"""),
    Check("journal_reads_like_a_statement",
          "per member, the journal's points add up to what the member holds, and its last row shows the balances",
          f"""
        SELECT a.member_id, a.total, COALESCE(t.total, 0), COUNT(*) OVER ()
        FROM (SELECT member_id, SUM(balance) AS total,
                     SUM(CASE WHEN kind = 'available' THEN balance ELSE 0 END) AS available,
                     SUM(CASE WHEN kind = 'pending' THEN balance ELSE 0 END) AS pending,
                     SUM(CASE WHEN kind = 'held' THEN balance ELSE 0 END) AS held
              FROM ledger_accounts WHERE kind IN {_MEMBER_KINDS} GROUP BY member_id) a
        LEFT JOIN (SELECT member_id, SUM(points) AS total, MAX(id) AS last_id
                   FROM ledger_transactions GROUP BY member_id) t ON t.member_id = a.member_id
        LEFT JOIN ledger_transactions last ON last.id = t.last_id
        WHERE a.total <> COALESCE(t.total, 0)
           OR (last.id IS NOT NULL AND (last.available_after <> a.available OR last.pending_after <> a.pending
                                        OR last.held_after <> a.held))"""),
    Check("holds_resolved_once", "open holds have no resolution; captured and released ones have exactly one", """
        SELECT public_id, status, COUNT(*) OVER () FROM ledger_holds
        WHERE (status = 'held') = (resolution_transaction_id IS NOT NULL)"""),
    # Not points, but value all the same: the counter a unique code's uses are arbitrated on.
    Check("code_uses_match_coupon_uses",
          "a unique code's counted uses equal its reserved and consumed coupon uses; a public code counts none", """
        SELECT c.code, c.uses, COALESCE(u.total, 0), COUNT(*) OVER ()
        FROM offer_codes c
        LEFT JOIN (SELECT code_id, COUNT(*) AS total FROM coupon_uses
                   WHERE status IN ('reserved', 'consumed') GROUP BY code_id) u ON u.code_id = c.id
        WHERE c.uses <> CASE WHEN c.kind = 'unique' THEN COALESCE(u.total, 0) ELSE 0 END"""),
)

PROGRAM_TOTALS = """
    SELECT kind, COALESCE(SUM(balance), 0) FROM ledger_accounts GROUP BY kind ORDER BY kind"""


def verify(session: Session) -> list[CheckResult]:
    results = []
    for check in CHECKS:
        rows = session.execute(text(check.sql + f"\nLIMIT {EXAMPLES}")).all()
        result = CheckResult(check)
        if rows:
            result.breaches = int(rows[0][-1])
            result.examples = [tuple(row[:-1]) for row in rows]
        results.append(result)
    return results


def program_totals(session: Session) -> dict[str, int]:
    """Program-wide balances per account kind (issued is negative: it is where points come from)."""
    return {kind: int(total) for kind, total in session.execute(text(PROGRAM_TOTALS)).all()}
