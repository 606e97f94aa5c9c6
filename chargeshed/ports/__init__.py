"""Port drivers (simulated now, OCPP later) and the command outbox."""
