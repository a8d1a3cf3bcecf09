"""Schemas shared across domains: list pagination and problem documents."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, pre_load, validate

NUL_MESSAGE = "Must not contain NUL characters."


class StrictSchema(Schema):
    """Input schemas reject unknown fields (marshmallow's default), stated here on purpose, and text with NUL
    characters, which no field means and PostgreSQL cannot store."""

    class Meta:
        unknown = "raise"

    @pre_load
    def _refuse_nul(self, data: Any, **kwargs: Any) -> Any:
        if hasattr(data, "items"):
            bad = {name: [NUL_MESSAGE] for name, value in data.items() if _has_nul(value)}
            if bad:
                raise ValidationError(bad)
        return data


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    return isinstance(value, list) and any(isinstance(item, str) and "\x00" in item for item in value)


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

