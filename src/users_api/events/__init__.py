"""Audit events: one row per change of state, written in the change's own transaction."""
