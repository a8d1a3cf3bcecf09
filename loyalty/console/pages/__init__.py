"""The staff console's pages, one module per area; importing them registers their views."""

from loyalty.console.pages import (  # noqa: F401
    dashboard,
    integrations,
    members,
    offers,
    rules,
    session,
    staff,
    tiers,
)
