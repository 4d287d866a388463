"""Delivering webhooks: the exact request (body, signatures) and the guarded HTTP sender."""
