"""Staff users, for admins only: list, create, change a role, deactivate and reactivate.

An admin may not demote or deactivate themselves (the service answers 409), so the console always keeps an admin.
"""

from __future__ import annotations

from flask import render_template, request
from flask_login import current_user

from loyalty.auth import service as auth
from loyalty.auth.models import STAFF_ROLES, StaffUser
from loyalty.auth.schemas import StaffCreateSchema
from loyalty.console.access import ADMINS, staff_page
from loyalty.console.blueprints import console
from loyalty.console.forms import attempt, form_data, page_args, submitted
from loyalty.console.views import done, render_form
from loyalty.errors import Problem
from loyalty.members.schemas import PASSWORD

ROLE_OPTIONS = [(role, role.capitalize()) for role in STAFF_ROLES]
ROLE_HELP = ("Admin: everything, integrations and staff included. Manager: the program (tiers, rules, offers, "
             "rewards). Support: members. Analyst: reads only.")


@console.get("/staff", endpoint="staff_users")
@staff_page(ADMINS)
def staff_users():
    page = auth.list_staff(**page_args())
    return render_template("console/staff/list.html", title="Staff users", page=page)


@console.route("/staff/new", methods=["GET", "POST"], endpoint="staff_users_new")
@staff_page(ADMINS)
def staff_users_new():
    if request.method == "GET":
        return _staff_form(values={"role": "support"})
    staff, problem = attempt(lambda: auth.create_staff(**form_data(StaffCreateSchema())))
    if problem:
        return _staff_form(values=submitted(), problem=problem)  # all but the password
    return done(f"Staff user {staff.email} created as {staff.role}; they can sign in now.", "console.staff_users_show",
                staff_id=staff.public_id)


@console.get("/staff/<string:staff_id>", endpoint="staff_users_show")
@staff_page(ADMINS)
def staff_users_show(staff_id: str):
    return _staff_page(auth.get_staff(staff_id))


@console.post("/staff/<string:staff_id>/role", endpoint="staff_users_role")
@staff_page(ADMINS)
def staff_users_role(staff_id: str):
    admin = current_user._get_current_object()

    def change():
        role = form_data(StaffCreateSchema(only=("role",)))["role"]
        return auth.change_staff_role(auth.get_staff(staff_id), role, by=admin)

    staff, problem = attempt(change)
    if problem:
        return _staff_page(auth.get_staff(staff_id), problem=problem, role=request.form.get("role"))
    return done(f"{staff.email} is now {staff.role}.", "console.staff_users_show", staff_id=staff_id)


@console.post("/staff/<string:staff_id>/deactivate", endpoint="staff_users_deactivate")
@staff_page(ADMINS)
def staff_users_deactivate(staff_id: str):
    return _set_active(staff_id, False, "is deactivated: they can no longer sign in.")


@console.post("/staff/<string:staff_id>/reactivate", endpoint="staff_users_reactivate")
@staff_page(ADMINS)
def staff_users_reactivate(staff_id: str):
    return _set_active(staff_id, True, "is active again and can sign in.")


def _set_active(staff_id: str, active: bool, outcome: str):
    admin = current_user._get_current_object()
    staff, problem = attempt(lambda: auth.set_staff_active(auth.get_staff(staff_id), active, by=admin))
    if problem:
        return _staff_page(auth.get_staff(staff_id), problem=problem)
    return done(f"{staff.email} {outcome}", "console.staff_users_show", staff_id=staff_id)


def _staff_form(*, values: dict, problem: Problem | None = None):
    return render_form("console/staff/form.html", problem, title="Add a staff user", values=values,
                       role_options=ROLE_OPTIONS, role_help=ROLE_HELP, password_min=PASSWORD.min)


def _staff_page(staff: StaffUser, *, problem: Problem | None = None, role: str | None = None):
    return render_form("console/staff/show.html", problem, title=f"Staff user {staff.email}", staff=staff,
                       role=role or staff.role, role_options=ROLE_OPTIONS, role_help=ROLE_HELP,
                       is_me=staff.id == current_user.id)
