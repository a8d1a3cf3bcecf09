"""The two HTML blueprints. Page modules add their views to these."""

from __future__ import annotations

from flask import Blueprint

console = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
                    static_folder="static", static_url_path="/static")
account = Blueprint("account", __name__, url_prefix="/account", template_folder="templates")
