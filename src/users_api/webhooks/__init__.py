"""Signed webhooks: endpoints, the fan-out of events to them, and their delivery."""
