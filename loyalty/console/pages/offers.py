"""Offers. (Placeholder: to be built.)"""

from __future__ import annotations

from flask import render_template

from loyalty.console.access import READERS, staff_page
from loyalty.console.blueprints import console


@console.get("/offers", endpoint="offers")
@staff_page(READERS)
def offers():
    return render_template("console/placeholder.html", title="Offers")


@console.get("/rewards", endpoint="rewards")
@staff_page(READERS)
def rewards():
    return render_template("console/placeholder.html", title="Rewards")
