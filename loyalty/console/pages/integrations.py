"""Integrations, for admins only: outbound webhook endpoints with their delivery log, Stripe's events that
failed or wait, and API keys.

A new endpoint's signing secret and a new key's secret are shown once, in the answer to the form that made
them (201), and never written to the session: a flash message would put them in the cookie.
"""

from __future__ import annotations

from datetime import timedelta

from flask import render_template, request
from flask_login import current_user

from loyalty.auth import service as auth
from loyalty.auth.models import API_KEY_SCOPES
from loyalty.auth.schemas import ApiKeyCreateSchema
from loyalty.clock import now
from loyalty.console.access import ADMINS, staff_page
from loyalty.console.blueprints import console
from loyalty.console.forms import attempt, form_data, page_args, submitted
from loyalty.console.views import done, render_form
from loyalty.errors import Problem
from loyalty.events import EVENT_TYPES
from loyalty.settings import settings
from loyalty.webhooks import inbound, outbound
from loyalty.webhooks.models import WebhookEndpoint
from loyalty.webhooks.schemas import DeliveryArgsSchema, EndpointCreateSchema, StripeEventArgsSchema

EVENT_TYPE_OPTIONS = [(event_type, event_type) for event_type in EVENT_TYPES]
DELIVERY_STATUS_OPTIONS = [("pending", "Pending"), ("delivered", "Delivered"), ("failed", "Failed")]
# A select rather than a checkbox: the form's enabled state is always sent, as "true" or "false".
ENABLED_OPTIONS = [("true", "Enabled: receives events"), ("false", "Disabled: receives nothing")]
SCOPE_OPTIONS = [(scope, scope) for scope in API_KEY_SCOPES]
STRIPE_STATUS_OPTIONS = [("failed", "Failed"), ("waiting", "Waiting"), ("overdue", "Waiting, overdue"),
                         ("applied", "Applied"), ("ignored", "Ignored")]


# --- Webhook endpoints ---------------------------------------------------------------------------------------------

@console.get("/webhooks", endpoint="webhooks")
@staff_page(ADMINS)
def webhooks():
    page = outbound.list_endpoints(**page_args())
    return render_template("console/webhooks/list.html", title="Webhook endpoints", page=page)


@console.route("/webhooks/new", methods=["GET", "POST"], endpoint="webhooks_new")
@staff_page(ADMINS)
def webhooks_new():
    if request.method == "GET":
        return _endpoint_form(values={"event_types": []})
    endpoint, problem = attempt(lambda: outbound.create_endpoint(form_data(EndpointCreateSchema()),
                                                                   allow_private=settings().webhook_allow_private_urls))
    if problem:
        return _endpoint_form(values=submitted(["event_types"]), problem=problem)
    # The secret is in this answer only; the page is no-store, like every console page.
    return render_template("console/webhooks/created.html", title="Webhook endpoint registered",
                           endpoint=endpoint, secret=endpoint.secret), 201


@console.get("/webhooks/<string:endpoint_id>", endpoint="webhooks_show")
@staff_page(ADMINS)
def webhooks_show(endpoint_id: str):
    endpoint = outbound.get_endpoint(endpoint_id)
    status = form_data(DeliveryArgsSchema(), {"status": request.args.get("status", "")}).get("status")
    deliveries = outbound.list_deliveries(endpoint, status=status, **page_args())
    return render_template("console/webhooks/show.html", title=f"Webhook endpoint {endpoint.url}",
                           endpoint=endpoint, deliveries=deliveries, status=status,
                           status_options=DELIVERY_STATUS_OPTIONS)


@console.route("/webhooks/<string:endpoint_id>/edit", methods=["GET", "POST"], endpoint="webhooks_edit")
@staff_page(ADMINS)
def webhooks_edit(endpoint_id: str):
    endpoint = outbound.get_endpoint(endpoint_id)
    if request.method == "GET":
        values = {"url": endpoint.url, "description": endpoint.description, "event_types": endpoint.event_types,
                  "enabled": "true" if endpoint.enabled else "false"}
        return _endpoint_form(values=values, endpoint=endpoint)

    def update():
        changes = form_data(EndpointCreateSchema())  # the form sends every field, so the URL is required
        # A form leaves out what is blank or unticked: here that means "no description" and "every type".
        changes.setdefault("description", None)
        changes.setdefault("event_types", [])
        return outbound.update_endpoint(endpoint, changes, allow_private=settings().webhook_allow_private_urls)

    _, problem = attempt(update)
    if problem:
        return _endpoint_form(values=submitted(["event_types"]), endpoint=outbound.get_endpoint(endpoint_id),
                              problem=problem)
    return done("Webhook endpoint saved.", "console.webhooks_show", endpoint_id=endpoint_id)


@console.post("/webhooks/<string:endpoint_id>/deliveries/<string:delivery_id>/replay", endpoint="webhooks_replay")
@staff_page(ADMINS)
def webhooks_replay(endpoint_id: str, delivery_id: str):
    _, problem = attempt(lambda: outbound.replay(outbound.get_endpoint(endpoint_id), delivery_id, now()))
    if problem:
        raise problem
    return done(f"Delivery {delivery_id} will be sent again at the worker's next run.", "console.webhooks_show",
                endpoint_id=endpoint_id)


def _endpoint_form(*, values: dict, endpoint: WebhookEndpoint | None = None, problem: Problem | None = None):
    title = "Edit webhook endpoint" if endpoint else "Register a webhook endpoint"
    return render_form("console/webhooks/form.html", problem, title=title, endpoint=endpoint, values=values,
                       event_type_options=EVENT_TYPE_OPTIONS, enabled_options=ENABLED_OPTIONS)


# --- Stripe events ------------------------------------------------------------------------------------------------

@console.get("/stripe-events", endpoint="stripe_events")
@staff_page(ADMINS)
def stripe_events():
    status = request.args.get("status", "")
    moment = now()
    filters = {"overdue": True} if status == "overdue" else form_data(StripeEventArgsSchema(), {"status": status})
    hours = settings().stripe_waiting_overdue_hours
    page = inbound.list_events(now=moment, overdue_after=timedelta(hours=hours), **{**filters, **page_args()})
    return render_template("console/stripe_events/list.html", title="Stripe events", page=page, status=status,
                           status_options=STRIPE_STATUS_OPTIONS,
                           attention=inbound.needing_attention(moment, timedelta(hours=hours)), overdue_hours=hours)


@console.post("/stripe-events/<string:event_id>/retry", endpoint="stripe_events_retry")
@staff_page(ADMINS)
def stripe_events_retry(event_id: str):
    overdue_after = timedelta(hours=settings().stripe_waiting_overdue_hours)
    event, problem = attempt(lambda: inbound.retry(event_id, now(), overdue_after))
    if problem:
        raise problem
    return done(f"Stripe event {event_id} tried again: {event.status}. {event.detail or ''}".strip(),
                "console.stripe_events", category="warning" if event.status == "failed" else "success")


# --- API keys ------------------------------------------------------------------------------------------------------

@console.get("/api-keys", endpoint="api_keys")
@staff_page(ADMINS)
def api_keys():
    page = auth.list_api_keys(**page_args())
    return render_template("console/api_keys/list.html", title="API keys", page=page)


@console.route("/api-keys/new", methods=["GET", "POST"], endpoint="api_keys_new")
@staff_page(ADMINS)
def api_keys_new():
    if request.method == "GET":
        return _api_key_form(values={"scopes": []})
    creator = current_user._get_current_object()
    created, problem = attempt(lambda: auth.create_api_key(**form_data(ApiKeyCreateSchema()), created_by=creator))
    if problem:
        return _api_key_form(values=submitted(["scopes"]), problem=problem)
    key, secret = created
    return render_template("console/api_keys/created.html", title="API key created", key=key, secret=secret), 201


@console.route("/api-keys/<string:key_id>/revoke", methods=["GET", "POST"], endpoint="api_keys_revoke")
@staff_page(ADMINS)
def api_keys_revoke(key_id: str):
    if request.method == "GET":
        key = auth.get_api_key(key_id)
        return render_template("console/api_keys/revoke.html", title=f"Revoke API key {key.name}", key=key)
    key, problem = attempt(lambda: auth.revoke_api_key(key_id))
    if problem:
        raise problem
    return done(f"API key “{key.name}” ({key.prefix}…) is revoked: requests made with it are refused.",
                "console.api_keys")


def _api_key_form(*, values: dict, problem: Problem | None = None):
    return render_form("console/api_keys/form.html", problem, title="Create an API key", values=values,
                       scope_options=SCOPE_OPTIONS)
