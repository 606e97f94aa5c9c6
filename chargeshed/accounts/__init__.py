"""People: residents and staff, their bikes, and access helpers."""
