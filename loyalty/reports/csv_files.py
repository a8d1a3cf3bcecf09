"""The reports as CSV: one figure per row (long format), so a spreadsheet pivots them as it likes and a new
figure never shifts a column.

Summary columns: scope (`total` for the window, `day`/`week`/`month` for a bucket of the series, `now` for
the tier distribution), start and end (local dates, end exclusive; empty for `now`), figure, key (a tier
change, campaign or offer), currency, value. Liability columns: as_of, figure, currency, value.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from datetime import UTC
from typing import Any

SUMMARY_HEADER = ("scope", "start", "end", "figure", "key", "currency", "value")
LIABILITY_HEADER = ("as_of", "figure", "currency", "value")
Row = tuple[Any, ...]
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def summary_filename(summary: dict[str, Any]) -> str:
    return f"loyalty-summary_{summary['from']}_{summary['to']}_{summary['period']}.csv"


def liability_filename(liability: dict[str, Any]) -> str:
    return f"loyalty-liability_{liability['as_of'].astimezone(UTC):%Y%m%dT%H%M%SZ}.csv"


def summary_csv(summary: dict[str, Any]) -> str:
    return csv_text([SUMMARY_HEADER, *summary_rows(summary)])


def liability_csv(liability: dict[str, Any]) -> str:
    return csv_text([LIABILITY_HEADER, *liability_rows(liability)])


def summary_rows(summary: dict[str, Any]) -> Iterator[Row]:
    total = ("total", summary["from"], summary["to"])
    for figure in ("total", "new", "active"):
        yield (*total, f"members.{figure}", "", "", summary["members"][figure])
    yield from _points(total, summary["points"])
    for figure in ("redemption", "breakage", "repeat_purchase"):
        yield (*total, f"rates.{figure}", "", "", summary["rates"][figure])
    orders = summary["orders"]
    for figure in ("orders", "members", "repeat_members"):
        yield (*total, f"orders.{figure}", "", "", orders[figure])
    for currency in orders["currencies"]:
        for figure in ("orders", "revenue", "average_value"):
            yield (*total, f"orders.{figure}", "", currency["currency"], currency[figure])
    tiers = summary["tiers"]
    for tier in tiers["distribution"]:
        yield ("now", "", "", "tiers.members", tier["code"], "", tier["members"])
    yield (*total, "tiers.up", "", "", tiers["up"])
    yield (*total, "tiers.down", "", "", tiers["down"])
    for change in tiers["changes"]:
        path = f"{change['from_tier'] or '(none)'}->{change['to_tier']}"
        yield (*total, "tiers.changes", path, "", change["changes"])
    for campaign in summary["campaigns"]:
        for figure in ("points", "members", "orders"):
            yield (*total, f"campaigns.{figure}", campaign["campaign"], "", campaign[figure])
        for revenue in campaign["revenue"]:
            yield (*total, "campaigns.revenue", campaign["campaign"], revenue["currency"], revenue["amount"])
    for offer in summary["offers"]:
        for figure in ("coupon_uses", "members", "orders"):
            yield (*total, f"offers.{figure}", offer["offer_id"], "", offer[figure])
        for sales in offer["revenue"]:
            for figure in ("orders", "revenue", "discount"):
                yield (*total, f"offers.{figure}", offer["offer_id"], sales["currency"], sales[figure])
    for bucket in summary["series"]:
        scope = (summary["period"], bucket["start"], bucket["end"])
        yield (*scope, "members.new", "", "", bucket["new_members"])
        yield (*scope, "members.active", "", "", bucket["active_members"])
        yield (*scope, "orders.orders", "", "", bucket["orders"])
        yield from _points(scope, bucket["points"])


def _points(scope: Row, points: dict[str, Any]) -> Iterator[Row]:
    for figure in ("issued", "clawed_back", "redeemed", "restored", "expired"):
        yield (*scope, f"points.{figure}", "", "", points[figure])
    for figure in ("added", "removed", "net"):
        yield (*scope, f"points.adjusted_{figure}", "", "", points["adjusted"][figure])


def liability_rows(liability: dict[str, Any]) -> Iterator[Row]:
    as_of = liability["as_of"].astimezone(UTC).isoformat()
    for figure, points in liability["points"].items():
        yield as_of, f"points.{figure}", "", points
    yield as_of, "members_holding_points", "", liability["members_holding_points"]
    for kind, members in liability["members_holding"].items():
        yield as_of, f"members_holding.{kind}", "", members
    yield as_of, "rule_version", "", liability["rule_version"]
    for money in liability["money"]:
        yield as_of, "money.value_per_point", money["currency"], money["value_per_point"]
        for figure in liability["points"]:
            yield as_of, f"money.{figure}", money["currency"], money[figure]


def csv_text(rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([_cell(value) for value in row] for row in rows)
    return buffer.getvalue()


def _cell(value: Any) -> str:
    """Text as a spreadsheet will not run it: a leading = + - @ (or tab, carriage return) would make a
    formula of a staff-typed name, so text starting so gets an apostrophe. Numbers are left as they are."""
    if value is None:
        return ""
    if isinstance(value, bool | int):
        return str(int(value))
    text = str(value)
    if _NUMBER.fullmatch(text):  # a rate or a value per point, negative or not
        return text
    return f"'{text}" if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
