"""Durations and sizes as analysts write them: `250ms`, `30s`, `1h30m`, `64KiB`, `1GB`."""

from __future__ import annotations

import math
import re

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")

_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in `text`: a bare number of seconds, or units ms/s/m/h/d, combinable (`1h30m`).

    Raises ValueError for anything else, negative numbers included.
    """
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        if not _DURATION.fullmatch(text):
            raise ValueError(f"not a duration: {text!r}") from None
        return sum(float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(text))
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"not a duration: {text!r}")
    return seconds


def parse_size(text: str) -> int:
    """Bytes in `text`: a bare integer, or a number with B, KB, MB, GB, TB (powers of 1000)
    or KiB, MiB, GiB, TiB (powers of 1024), case-insensitive. Raises ValueError otherwise."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise ValueError(f"not a size: {text!r}")
    number, unit = match.groups()
    if not unit:
        if "." in number:
            raise ValueError(f"not a size: {text!r}")
        return int(number)
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise ValueError(f"unknown size unit {unit!r}")
    return round(float(number) * factor)


def format_duration(seconds: float) -> str:
    """The shortest exact spelling: 0.25 -> `250ms`, 90 -> `90s`, 86400 -> `1d`."""
    if seconds == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        count = seconds / _DURATION_UNITS[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    millis = seconds * 1000
    if millis == int(millis):
        return f"{int(millis)}ms"
    return f"{seconds}s"


def format_size(size: int) -> str:
    """The largest binary unit that divides `size`: 16777216 -> `16MiB`, 1000 -> `1000B`."""
    for unit in ("tib", "gib", "mib", "kib"):
        factor = _SIZE_UNITS[unit]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit[0].upper()}iB"
    return f"{size}B"
