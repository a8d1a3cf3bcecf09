"""Password hashing: Werkzeug's scrypt, with the cost from configuration."""

from __future__ import annotations

from flask import current_app
from werkzeug.security import check_password_hash, generate_password_hash

# Checked against when an account does not exist, so a miss costs as long as a hit.
_DUMMY_HASHES: dict[str, str] = {}


def hash_password(password: str) -> str:
    return generate_password_hash(password, method=current_app.config["PASSWORD_HASH_METHOD"])


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        method = current_app.config["PASSWORD_HASH_METHOD"]
        if method not in _DUMMY_HASHES:
            _DUMMY_HASHES[method] = generate_password_hash("not-a-password", method=method)
        check_password_hash(_DUMMY_HASHES[method], password)
        return False
    return check_password_hash(password_hash, password)
