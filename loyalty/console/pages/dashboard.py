"""Dashboard: the program at a glance for every staff role. The figures come from `loyalty.reports`."""

from __future__ import annotations

from flask import render_template, request

from loyalty.clock import now
from loyalty.console.access import READERS, staff_page
from loyalty.console.blueprints import console
from loyalty.console.charts import bar_chart
from loyalty.errors import ValidationProblem
from loyalty.reports import service as reports

DEFAULT_DAYS = 30
DAY_CHOICES = (7, 30, 90)


@console.get("/", endpoint="dashboard")
@staff_page(READERS)
def dashboard():
    days = _days()
    figures = reports.dashboard(now(), days)
    flows = bar_chart([day.day.isoformat() for day in figures.days],
                      {"Issued": [day.issued for day in figures.days],
                       "Redeemed": [day.redeemed for day in figures.days],
                       "Expired": [day.expired for day in figures.days]}, label_heading="Day (UTC)")
    tiers = bar_chart([tier.name for tier in figures.tiers], {"Members": [tier.members for tier in figures.tiers]},
                      label_heading="Tier") if figures.tiers else None
    return render_template("console/dashboard/index.html", title="Dashboard", figures=figures, days=days,
                           day_choices=DAY_CHOICES, flows=flows, tiers=tiers)


def _days() -> int:
    """`?days=`, the window the chart covers; the reports service judges the range."""
    raw = request.args.get("days", "").strip()
    if not raw:
        return DEFAULT_DAYS
    if not raw.isdecimal() or len(raw) > 4:  # isdigit() would take "²", which int() refuses
        raise ValidationProblem(errors={"days": [f"Must be a whole number from 1 to {reports.MAX_DAYS}."]})
    return int(raw)
