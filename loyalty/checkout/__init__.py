"""Checkout: paid orders and what they earn (quotes, redemptions and refunds build on it)."""
