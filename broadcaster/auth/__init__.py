"""Who may do what: bearer tokens, roles, and the admin token API."""
