"""Loyalty and membership backend."""

from loyalty.app import create_app

__all__ = ["create_app"]
