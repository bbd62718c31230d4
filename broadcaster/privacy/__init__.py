"""Personal data: detect it before publication, have the editor review it, redact it later."""
