"""Staff sign in and out of the console."""

from __future__ import annotations

from flask import redirect, url_for

from loyalty.auth import service as auth
from loyalty.auth.models import StaffUser
from loyalty.auth.sessions import sign_out
from loyalty.auth.throttling import login_throttled
from loyalty.console.blueprints import console
from loyalty.console.sign_in import sign_in


@console.route("/login", methods=["GET", "POST"])
@login_throttled
def login():
    return sign_in(area="console", heading="Sign in to the console", kind=StaffUser,
                   authenticate=auth.authenticate_staff, home="console.dashboard")


@console.post("/logout")
def logout():
    sign_out()
    return redirect(url_for("console.login"))
