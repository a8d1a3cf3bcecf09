"""The member's own pages: sign in, points and tier, history, coupons, rewards."""

from __future__ import annotations

from flask import current_app, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from loyalty.console.access import member_page, safe_next
from loyalty.console.blueprints import account
from loyalty.extensions import db, limiter
from loyalty.members import service as members
from loyalty.members.models import Member

ACCOUNT_NAV = (("account.home", "Points"), ("account.history", "History"), ("account.coupons", "Coupons"),
               ("account.rewards", "Rewards"))


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT_PER_ADDRESS"]


@account.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"])
def login():
    target = safe_next(request.values.get("next"), "/account/", url_for("account.home"))
    if request.method == "GET":
        if isinstance(current_user, Member):
            return redirect(target)
        return render_template("account/login.html", next=target)
    email, password = request.form.get("email", "").strip(), request.form.get("password", "")
    try:
        member = members.authenticate(email[:254], password[:1024])
    except members.InvalidCredentials as problem:
        db.session.rollback()
        return render_template("account/login.html", next=target, email=email, error=problem.detail), 401
    db.session.commit()
    login_user(member)
    return redirect(target)


@account.post("/logout")
def logout():
    logout_user()
    return redirect(url_for("account.login"))


@account.get("/", endpoint="home")
@member_page
def home():
    return render_template("account/placeholder.html", title="Your points")


@account.get("/history", endpoint="history")
@member_page
def history():
    return render_template("account/placeholder.html", title="History")


@account.get("/coupons", endpoint="coupons")
@member_page
def coupons():
    return render_template("account/placeholder.html", title="Coupons")


@account.get("/rewards", endpoint="rewards")
@member_page
def rewards():
    return render_template("account/placeholder.html", title="Rewards")
