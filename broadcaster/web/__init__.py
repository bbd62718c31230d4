"""HTTP plumbing shared by every handler: errors and headers, strict JSON bodies, client
addresses, rate limits, live-connection caps."""
