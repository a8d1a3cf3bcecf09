"""The console's navigation: each area, and the roles that see it."""

from __future__ import annotations

from loyalty.console.access import ADMINS, READERS

NAV = (
    ("console.dashboard", "Dashboard", READERS),
    ("console.reports", "Reports", READERS),
    ("console.members", "Members", READERS),
    ("console.tiers", "Tiers", READERS),
    ("console.rules", "Rules", READERS),
    ("console.offers", "Offers", READERS),
    ("console.rewards", "Rewards", READERS),
    ("console.webhooks", "Webhooks", ADMINS),
    ("console.stripe_events", "Stripe events", ADMINS),
    ("console.api_keys", "API keys", ADMINS),
    ("console.staff_users", "Staff", ADMINS),
    ("console.audit_log", "Audit log", ADMINS),
)
