"""Privacy: consent per purpose, the export of everything held on a member, and erasure."""
