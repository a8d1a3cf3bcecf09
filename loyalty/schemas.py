"""Schemas shared across domains: the bounds input fields share, list pagination and problem documents.

Every input field is bounded by what it means and by the column that keeps it, with the rules below, so no
input can overflow a column, a sum or a time calculation: the schema refuses it (422, naming the field) before
any service sees it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

from loyalty.errors import Problem

INT4_MAX = 2**31 - 1  # a PostgreSQL integer column
MONEY_MAX = 10**12  # minor units: ten billion in a currency with cents; sums of these fit a bigint
POINTS_MAX = 10**12  # as the ledger's own bound

MONEY = validate.Range(min=0, max=MONEY_MAX)
POSITIVE_MONEY = validate.Range(min=1, max=MONEY_MAX)
POINTS = validate.Range(min=1, max=POINTS_MAX)
COUNT = validate.Range(min=0, max=INT4_MAX)  # stock, limits, version numbers: integer columns
POSITIVE_COUNT = validate.Range(min=1, max=INT4_MAX)

# Times a loyalty program can mean; far enough from datetime's own limits (years 1 and 9999) that converting
# to UTC or adding a validity period never overflows.
EARLIEST_YEAR, LATEST_YEAR = 2000, 2099

TEXT_MESSAGE = "Must not contain NUL characters or unpaired surrogates."
# A JSON string holds only whole characters once decoded: any surrogate left is a lone one (e.g. "\ud800"), which
# UTF-8, and so the database, cannot encode. NUL PostgreSQL text cannot hold.
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# No input is nested anywhere near this deep (a rules document is five levels); the limit keeps a body of
# "[[[[..." from exhausting the parser's recursion, and every recursion after it.
MAX_JSON_DEPTH = 32
_JSON_STRINGS = {str: re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"'), bytes: re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')}
_JSON_BRACKETS = {str: re.compile(r"[\[\]{}]"), bytes: re.compile(rb"[\[\]{}]")}
_OPENING = {"[", "{", b"[", b"{"}


class Moment(fields.AwareDateTime):
    """A time with its offset, in the years EARLIEST_YEAR to LATEST_YEAR."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
            raise ValidationError(f"Must be in the years {EARLIEST_YEAR} to {LATEST_YEAR}.")
        return moment


class Pattern(validate.Regexp):
    """A regular expression the whole value must match. marshmallow's Regexp matches a prefix, and a pattern's `$`
    also matches before a final newline: "usd\n" would pass as a currency, then overflow its column."""

    def __call__(self, value: str) -> str:
        if self.regex.fullmatch(value) is None:
            raise ValidationError(self._format_error(value))
        return value


CURRENCY = Pattern(r"^[a-z]{3}$", error="A lowercase ISO 4217 code, e.g. usd.")


class StrictSchema(Schema):
    """Input schemas reject unknown fields (marshmallow's default), stated here on purpose, and text no field
    means and no column can store: NUL characters and unpaired surrogates, at any depth."""

    class Meta:
        unknown = "raise"

    @pre_load
    def _refuse_unstorable_text(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, Mapping) and (found := _unstorable_in(data)):
            raise ValidationError(found)
        return data


def _unstorable_in(value: Any) -> Any:
    """Where in `value` a string (a key included) holds NUL or a lone surrogate, as marshmallow nests messages:
    `["..."]` for a string, `{key or index: ...}` inside objects and lists; None when nowhere."""
    if isinstance(value, str):
        return [TEXT_MESSAGE] if UNSTORABLE.search(value) else None
    if isinstance(value, Mapping | list):
        found = {}
        for key, item in value.items() if isinstance(value, Mapping) else enumerate(value):
            where = [TEXT_MESSAGE] if isinstance(key, str) and UNSTORABLE.search(key) else _unstorable_in(item)
            if where:
                found[key] = where
        return found or None
    return None


def refuse_deep_json(text: str | bytes) -> None:
    """Raise 400 `invalid_json` when JSON `text` nests arrays or objects deeper than MAX_JSON_DEPTH. Counted
    outside strings, before parsing: the parser itself is what a deep body would overflow."""
    kind = bytes if isinstance(text, bytes | bytearray) else str
    depth = 0
    for bracket in _JSON_BRACKETS[kind].findall(_JSON_STRINGS[kind].sub(kind(), text)):
        depth += 1 if bracket in _OPENING else -1
        if depth > MAX_JSON_DEPTH:
            raise Problem(f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json",
                          title="Bad request")


class ListArgsSchema(StrictSchema):
    limit = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    starting_after = fields.String(validate=validate.Length(min=1, max=64))


class ProblemSchema(Schema):
    type = fields.String()
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    code = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()))
