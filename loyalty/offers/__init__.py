"""Offers and coupons: exclusive tier discounts, early access, unique codes, the reward catalog."""
