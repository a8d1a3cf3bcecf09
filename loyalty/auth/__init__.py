"""Staff and member authentication, roles, and API keys with scopes."""
