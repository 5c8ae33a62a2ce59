"""The admin listener: /metrics and /healthz (the API and dashboard come later)."""
