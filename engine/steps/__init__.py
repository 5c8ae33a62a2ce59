"""Channel steps: one module per kind, each class declaring its kind and config spec
(`step_kind`); engine.components registers the built-in ones."""

from engine.steps.base import RunContext, Step, StepBuildError, StepError, step_kind

__all__ = ["RunContext", "Step", "StepBuildError", "StepError", "step_kind"]
