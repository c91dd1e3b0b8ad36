"""Webhooks: which URLs may be called, and the dispatcher that delivers the outbox."""
