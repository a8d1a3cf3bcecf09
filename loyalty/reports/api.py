"""Reports for analysts: the program's KPIs over a period and the points liability, as JSON or CSV."""

from __future__ import annotations

from typing import Any

from flask import Response, request

from loyalty.auth.access import require
from loyalty.clock import now
from loyalty.extensions import Blueprint
from loyalty.reports import csv_files, liability, service, summary
from loyalty.reports.schemas import LiabilityArgsSchema, LiabilitySchema, SummaryArgsSchema, SummarySchema

blp = Blueprint("reports", __name__, url_prefix="/v1/admin/reports", description="Reports: KPIs and points liability")
ANALYSTS = ("analyst",)


def _json_or_csv(schema: type) -> dict[str, Any]:
    """The 200 answer in both types, for the OpenAPI document."""
    return {"responses": {"200": {
        "description": "The report: JSON, or CSV (an attachment) with `?format=csv` or `Accept: text/csv`.",
        "content": {"application/json": {"schema": schema},
                    "text/csv": {"schema": {"type": "string", "description": csv_files.__doc__}}}}}}


# The answer depends on Accept, so caches keep the two apart; reports are business data, so none keeps them.
HEADERS = {"Vary": "Accept", "Cache-Control": "no-store"}


@blp.get("/summary")
@require(scope="admin", roles=ANALYSTS)
@blp.arguments(SummaryArgsSchema, location="query")
@blp.response(200, SummarySchema)
@blp.doc(**_json_or_csv(SummarySchema))
def report_summary(args: dict[str, Any]):
    """Members, points, rates, orders, tiers, campaign and offer attribution for [from, to) in the program's
    time zone (PROGRAM_TIMEZONE), in total and per day, week or month (`series`)."""
    zone = service.program_timezone()
    buckets = summary.window(args.get("from_"), args.get("to"), args["period"], zone, now())
    figures = summary.summary(buckets, args["period"], zone)
    if _wants_csv(args):
        return _csv(csv_files.summary_csv(figures), csv_files.summary_filename(figures))
    return figures, 200, HEADERS


@blp.get("/liability")
@require(scope="admin", roles=ANALYSTS)
@blp.arguments(LiabilityArgsSchema, location="query")
@blp.response(200, LiabilitySchema)
@blp.doc(**_json_or_csv(LiabilitySchema))
def report_liability(args: dict[str, Any]):
    """Points members hold now (available, pending, held), the members holding any, and their money value
    at the redemption value of the rules in force, per currency (rounded down)."""
    figures = liability.liability(now())
    if _wants_csv(args):
        return _csv(csv_files.liability_csv(figures), csv_files.liability_filename(figures))
    return figures, 200, HEADERS


def _wants_csv(args: dict[str, Any]) -> bool:
    """`?format=` decides; without it, the Accept header (JSON unless CSV is preferred)."""
    if args.get("format"):
        return args["format"] == "csv"
    return request.accept_mimetypes.best_match(["application/json", "text/csv"]) == "text/csv"


def _csv(text: str, filename: str) -> Response:
    response = Response(text, mimetype="text/csv")
    response.headers.update(HEADERS)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
