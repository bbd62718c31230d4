"""Live viewers: the hub's fan-out, WebSocket, SSE and store catch-up."""
