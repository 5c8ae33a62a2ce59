"""Sources: where messages come in (MLLP over TCP/TLS, drop directories)."""
