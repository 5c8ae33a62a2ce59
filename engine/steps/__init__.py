"""Channel steps: one module per kind, each registering itself with its config spec."""

from engine.steps import (  # noqa: F401  (registration happens on import)
    fields,
    filter,
    flag,
    python,
    translate,
    validate,
    values,
    xslt,
)
from engine.steps.base import (
    STEP_KINDS,
    RunContext,
    Runtime,
    Step,
    StepBuildError,
    StepError,
)

__all__ = ["STEP_KINDS", "RunContext", "Runtime", "Step", "StepBuildError", "StepError"]
