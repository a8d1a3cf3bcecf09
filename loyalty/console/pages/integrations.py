"""Webhook endpoints. (Placeholder: to be built.)"""

from __future__ import annotations

from flask import render_template

from loyalty.console.access import ADMINS, staff_page
from loyalty.console.blueprints import console


@console.get("/webhooks", endpoint="webhooks")
@staff_page(ADMINS)
def webhooks():
    return render_template("console/placeholder.html", title="Webhook endpoints")


@console.get("/api-keys", endpoint="api_keys")
@staff_page(ADMINS)
def api_keys():
    return render_template("console/placeholder.html", title="API keys")
