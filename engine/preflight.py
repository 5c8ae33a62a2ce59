"""The checks `load_config` runs beyond the specs: the channels are built (functions import,
tables and stylesheets load) and the encryption keys load.

engine.components registers them with the default config registry, so they run in the same
pass as the validation, on whatever validated: `switchboard check`, `run`, `test` and reload
report every problem at once, and nothing starts on a config that has one.
"""

from __future__ import annotations

from engine.channel import channel_problems
from engine.config import Config, Problem
from engine.config.validation import has_invalid


def encryption_problems(config: Config) -> list[Problem]:
    """Keys that cannot be loaded (an unset variable, an unreadable file, not 32 bytes)."""
    options = config.store_options
    if not isinstance(options, dict) or has_invalid(options.get("encryption")):
        return []
    from engine.store.crypto import SealError, sealer_from_options

    try:
        sealer_from_options(options)
    except SealError as exc:
        return [config.problem(("store_options", "encryption"), f"encryption: {exc}")]
    return []


CHECKS = (channel_problems, encryption_problems)
