"""Tariffs (pure pricing), charge sessions and the supervisor."""
