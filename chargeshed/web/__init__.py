"""Web layer: thin blueprints by audience."""
