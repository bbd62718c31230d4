"""Signed webhooks: the admin API, the sender, the SSRF guard."""
