"""Personal data: detect it before publication, make the editor review it, redact it
afterwards."""
