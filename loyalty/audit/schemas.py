"""Shapes of the audit log."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from loyalty.schemas import ListArgsSchema, Moment, Pattern


class AuditLogArgsSchema(ListArgsSchema):
    actor_id = fields.String(validate=validate.Length(min=1, max=32),
                             metadata={"description": "A staff member's (stf_) or API key's (key_) id."})
    table = fields.String(validate=Pattern(r"^[a-z_]{1,64}$", error="A table name: a-z and _."),
                          metadata={"description": "Entries that changed rows of this table, e.g. `tiers`."})
    resource_id = fields.String(validate=validate.Length(min=1, max=64),
                                metadata={"description": "Entries that changed this row (a public id such as "
                                                         "`tier_...`), or rows of this member (`mem_...`)."})
    from_ = Moment(data_key="from", metadata={"description": "From this time on, inclusive."})
    to = Moment(metadata={"description": "Before this time, exclusive."})

    @validates_schema
    def _from_before_to(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("from_") and data.get("to") and data["from_"] >= data["to"]:
            raise ValidationError("Must be later than `from`.", "to")


class AuditChangeSchema(Schema):
    table = fields.String()
    id = fields.String(metadata={"description": "The row's public id, or its primary key if it has none."})
    op = fields.String(metadata={"description": "insert, update or delete."})
    before = fields.Dict(allow_none=True, metadata={
        "description": "Updates: the changed columns only; deletes: the row. Secrets read `[redacted]`, a "
                       "member's personal fields `[personal data]`."})
    after = fields.Dict(allow_none=True, metadata={"description": "Inserts: the row; updates: the changed columns."})
    more = fields.Integer(metadata={"description": "Rows of this table changed beyond those listed."})


class AuditEntrySchema(Schema):
    id = fields.String(attribute="public_id")
    occurred_at = fields.DateTime()
    actor_kind = fields.String(metadata={"description": "staff or api_key."})
    actor_id = fields.String()
    actor_label = fields.String(metadata={"description": "The staff email, or the key's name and prefix, then."})
    action = fields.String(metadata={"description": "The method and route, e.g. "
                                                    "`POST /v1/admin/members/{member_id}/adjustments`."})
    request_id = fields.String(allow_none=True, metadata={"description": "The request's X-Request-Id."})
    status_code = fields.Integer(allow_none=True, metadata={"description": "Null for console forms."})
    changes = fields.List(fields.Nested(AuditChangeSchema), attribute="change_list")


class AuditEntryPageSchema(Schema):
    data = fields.List(fields.Nested(AuditEntrySchema))
    has_more = fields.Boolean()
