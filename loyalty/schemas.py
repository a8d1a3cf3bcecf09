"""Schemas shared across domains: list pagination and problem documents."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class StrictSchema(Schema):
    """Input schemas reject unknown fields (marshmallow's default), stated here on purpose."""

    class Meta:
        unknown = "raise"


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

