"""MLLP: framing on bytes (no parsing), and a small blocking client."""
