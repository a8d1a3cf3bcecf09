"""Tiers: qualification over a rolling window, instant upgrades, downgrades after a grace period."""
