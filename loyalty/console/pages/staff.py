"""Staff users. (Placeholder: to be built.)"""

from __future__ import annotations

from flask import render_template

from loyalty.console.access import ADMINS, staff_page
from loyalty.console.blueprints import console


@console.get("/staff", endpoint="staff_users")
@staff_page(ADMINS)
def staff_users():
    return render_template("console/placeholder.html", title="Staff users")
