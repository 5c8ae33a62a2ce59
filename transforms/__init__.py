"""Analysts' Python steps live here, importable as ``transforms.<module>:<function>``."""
