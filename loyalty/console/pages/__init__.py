"""The staff console's pages, one module per area; importing them registers their views."""

from loyalty.console.pages import (  # noqa: F401
    audit,
    dashboard,
    integrations,
    members,
    offers,
    reports,
    rules,
    session,
    staff,
    tiers,
)
