"""Earning and redemption rules: versioned documents and a pure engine that explains every point."""
