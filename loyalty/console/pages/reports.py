"""Reports: the program's KPIs for a chosen period, drawn and in tables, and the points liability, with CSV
downloads. Every staff role reads them here; the figures and the files are the API's (`loyalty.reports`)."""

from __future__ import annotations

from typing import Any

from flask import Response, render_template, request
from marshmallow import ValidationError

from loyalty.clock import now
from loyalty.console.access import READERS, staff_page
from loyalty.console.blueprints import console
from loyalty.console.charts import bar_chart
from loyalty.errors import ValidationProblem, flatten_messages
from loyalty.reports import csv_files, liability, service, summary
from loyalty.reports.periods import PERIODS, Buckets
from loyalty.reports.schemas import SummaryArgsSchema

PERIOD_NAMES = {"day": "Days", "week": "Weeks", "month": "Months"}
FORM_FIELDS = ("from", "to", "period")


@console.get("/reports", endpoint="reports")
@staff_page(READERS)
def reports():
    form = {name: request.args.get(name, "") for name in FORM_FIELDS}
    zone = service.program_timezone()
    try:
        args = _period_args()
        buckets = summary.window(args.get("from_"), args.get("to"), args["period"], zone, now())
    except ValidationProblem as problem:
        return render_template("console/reports/index.html", title="Reports", form=form, problem=problem,
                               errors=problem.errors or {}, periods=_periods(), figures=None,
                               owed=liability.liability(now()), charts={}, zone=zone.key), 422
    figures = summary.summary(buckets, args["period"], zone)
    return render_template("console/reports/index.html", title="Reports", form=form, problem=None, errors={},
                           periods=_periods(), figures=figures, owed=liability.liability(now()),
                           charts=_charts(figures), zone=zone.key, query=_query(buckets, args["period"]))


@console.get("/reports/summary.csv", endpoint="reports_summary_csv")
@staff_page(READERS)
def summary_csv():
    args = _period_args()
    zone = service.program_timezone()
    buckets = summary.window(args.get("from_"), args.get("to"), args["period"], zone, now())
    figures = summary.summary(buckets, args["period"], zone)
    return _download(csv_files.summary_csv(figures), csv_files.summary_filename(figures))


@console.get("/reports/liability.csv", endpoint="reports_liability_csv")
@staff_page(READERS)
def liability_csv():
    figures = liability.liability(now())
    return _download(csv_files.liability_csv(figures), csv_files.liability_filename(figures))


def _period_args() -> dict[str, Any]:
    """The period form through the API's own query schema; blank inputs count as not given."""
    raw = {name: value.strip() for name in FORM_FIELDS if (value := request.args.get(name, "")).strip()}
    try:
        return SummaryArgsSchema().load(raw)
    except ValidationError as error:
        raise ValidationProblem(errors=flatten_messages(error.messages)) from None


def _query(buckets: Buckets, period: str) -> dict[str, str]:
    """The window as given to the CSV link, defaults filled in, so the file holds what the page shows."""
    return {"from": buckets.items[0].start.isoformat(), "to": buckets.items[-1].end.isoformat(), "period": period}


def _periods() -> list[tuple[str, str]]:
    return [(period, PERIOD_NAMES[period]) for period in PERIODS]


def _charts(figures: dict[str, Any]) -> dict[str, Any]:
    labels = [bucket["start"].isoformat() for bucket in figures["series"]]
    heading = {"day": "Day", "week": "Week from", "month": "Month from"}[figures["period"]]
    series = figures["series"]
    tiers = figures["tiers"]["distribution"]
    return {
        "points": bar_chart(labels, {"Issued": [b["points"]["issued"] for b in series],
                                     "Redeemed": [b["points"]["redeemed"] for b in series],
                                     "Expired": [b["points"]["expired"] for b in series]}, label_heading=heading),
        "members": bar_chart(labels, {"New": [b["new_members"] for b in series],
                                      "Active": [b["active_members"] for b in series],
                                      "Orders": [b["orders"] for b in series]}, label_heading=heading),
        "tiers": bar_chart([t["name"] for t in tiers], {"Members": [t["members"] for t in tiers]},
                           label_heading="Tier") if tiers else None,
    }


def _download(text: str, filename: str) -> Response:
    response = Response(text, mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
