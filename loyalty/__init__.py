"""Loyalty and membership backend."""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    """`from loyalty import create_app`, without importing the whole app whenever any of its modules is
    imported: the package sits below its own layers, the app at their top (`[tool.importlinter]`)."""
    if name == "create_app":
        from loyalty.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
