"""HTTP plumbing: JSON errors, strict bodies, client addresses, rate limits, live caps."""
