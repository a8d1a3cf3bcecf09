"""Webhooks: inbound Stripe events applied exactly once (the outbound outbox comes with the worker)."""
