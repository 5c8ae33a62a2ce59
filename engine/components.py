"""Import the built-in step and destination kinds so their specs are registered."""

import engine.destinations
import engine.steps  # noqa: F401
