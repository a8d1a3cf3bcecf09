"""Sign-in, staff and API key shapes."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from loyalty.auth.models import API_KEY_SCOPES, STAFF_ROLES
from loyalty.members.schemas import NAME, PASSWORD
from loyalty.schemas import StrictSchema


class StaffSchema(Schema):
    id = fields.String(attribute="public_id")
    email = fields.String()
    name = fields.String(allow_none=True)
    role = fields.String()
    active = fields.Boolean()
    created_at = fields.DateTime()
    last_login_at = fields.DateTime(allow_none=True)


class StaffCreateSchema(StrictSchema):
    email = fields.Email(required=True, validate=validate.Length(max=254))
    name = fields.String(validate=NAME, allow_none=True)
    role = fields.String(required=True, validate=validate.OneOf(STAFF_ROLES))
    password = fields.String(required=True, load_only=True, validate=PASSWORD)


class StaffListSchema(Schema):
    data = fields.List(fields.Nested(StaffSchema))
    has_more = fields.Boolean()


class ApiKeySchema(Schema):
    id = fields.String(attribute="public_id")
    name = fields.String()
    prefix = fields.String(metadata={"description": "The first characters of the key, to recognise it."})
    scopes = fields.List(fields.String(), attribute="scope_list")
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True, metadata={"description": "To the hour."})
    revoked_at = fields.DateTime(allow_none=True)


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String(attribute="secret", metadata={"description": "The secret. Shown once; store it now."})


class ApiKeyCreateSchema(StrictSchema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    scopes = fields.List(
        fields.String(validate=validate.OneOf(API_KEY_SCOPES)),
        required=True,
        validate=validate.Length(min=1, max=len(API_KEY_SCOPES)),
    )


class ApiKeyListSchema(Schema):
    data = fields.List(fields.Nested(ApiKeySchema))
    has_more = fields.Boolean()
