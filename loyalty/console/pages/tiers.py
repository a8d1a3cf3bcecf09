"""Tiers. (Placeholder: to be built.)"""

from __future__ import annotations

from flask import render_template

from loyalty.console.access import READERS, staff_page
from loyalty.console.blueprints import console


@console.get("/tiers", endpoint="tiers")
@staff_page(READERS)
def tiers():
    return render_template("console/placeholder.html", title="Tiers")
