"""The points ledger: the only code that moves points."""
