"""Staff sign in and out of the console."""

from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from loyalty.auth import service as auth
from loyalty.auth.models import StaffUser
from loyalty.console.access import safe_next
from loyalty.console.blueprints import console
from loyalty.extensions import db, limiter
from loyalty.members.service import InvalidCredentials


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT_PER_ADDRESS"]


@console.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    target = safe_next(request.values.get("next"), "/console/", url_for("console.dashboard"))
    if request.method == "GET":
        if isinstance(current_user, StaffUser):
            return redirect(target)
        return render_template("console/login.html", next=target)
    email, password = request.form.get("email", "").strip(), request.form.get("password", "")
    try:
        staff = auth.authenticate_staff(email[:254], password[:1024])
    except InvalidCredentials as problem:
        db.session.rollback()
        return render_template("console/login.html", next=target, email=email, error=problem.detail), 401
    db.session.commit()
    login_user(staff)
    return redirect(target)


@console.post("/logout")
def logout():
    logout_user()
    return redirect(url_for("console.login"))
