"""Paid orders and their refunds, as stored."""
