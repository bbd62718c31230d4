"""CAP 1.2 alerts per incident and per entry."""
