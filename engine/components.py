"""Import the built-in step and destination kinds so their specs are registered, and register
the checks beyond the specs (engine.preflight) that `load_config` runs."""

import engine.destinations
import engine.steps  # noqa: F401
from engine.config import default_registry
from engine.preflight import CHECKS

for _check in CHECKS:
    default_registry.add_check(_check)
