"""Full-text search over published entries: the index hook, the query, the endpoint."""
