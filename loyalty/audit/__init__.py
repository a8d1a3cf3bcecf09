"""The audit log: every write by staff or an API key (who, what, when, before and after), append-only."""
