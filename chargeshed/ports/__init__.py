"""The hardware boundary: targets, telemetry store, command outbox, gateway, device adapters, registries.

Imports nothing from charging, safety or web: those read the telemetry and queue commands.
"""
