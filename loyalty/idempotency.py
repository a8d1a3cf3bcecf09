"""Idempotency: the client's `Idempotency-Key`, and the fingerprint of a request's fields.

Importable without Flask (the ledger uses `fingerprint`); only `request_key` reads the request.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from loyalty.errors import ValidationProblem

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 128


def fingerprint(*parts: Any) -> str:
    """A stable hash of a movement's or a request's fields: the same fields, the same hash."""
    return hashlib.sha256(json.dumps(parts, default=str, sort_keys=True).encode()).hexdigest()


def request_key() -> str | None:
    """The request's Idempotency-Key, or None when it sent none."""
    from flask import request

    key = request.headers.get(HEADER, "").strip()
    if len(key) > MAX_KEY_LENGTH:
        raise ValidationProblem(errors={HEADER: [f"At most {MAX_KEY_LENGTH} characters."]})
    if not key.isprintable():
        raise ValidationProblem(errors={HEADER: ["Printable characters only."]})
    return key or None
