"""The outbox and the worker that delivers it (SMS and webhooks)."""
