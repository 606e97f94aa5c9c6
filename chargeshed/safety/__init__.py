"""Hazard reports, safety cases, and incidents from port events."""
