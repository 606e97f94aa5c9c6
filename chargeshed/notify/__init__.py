"""Notifications: one Notifier interface (WeChat Official Account subscription messages, SMS), an outbox
sent by the worker with retries, per-channel consent, and one-shot "tell me when a port is free" watches."""
