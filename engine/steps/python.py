"""python: call a function from transforms/ (``transforms.lab:normalize_units``).

The function is called as ``fn(message, ctx)``: ``message`` is an engine.hl7.message.Message
(``get``, ``set``, ``delete``, ``add_segment``...), ``ctx`` the run context (``channel``,
``flags``, ``meta``, ``options``: the step's ``options`` mapping). Returning False filters the
message out; raising an exception fails it with the exception's text as the reason.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

from engine.config import Field, Spec
from engine.config.fieldtypes import FreeMapping
from engine.config.scalars import String
from engine.steps.base import Step, StepBuildError, StepError, step_kind

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*"

PYTHON = Spec(
    "python",
    "Call a Python function as fn(message, ctx).",
    (
        Field("function", String(pattern=_DOTTED, pattern_hint="write module.path:function"),
              "Dotted module path and function name.", required=True,
              example="transforms.lab:normalize_units"),
        Field("options", FreeMapping(), "Passed to the function as ctx.options.", default={}),
    ),
    shorthand="function",
)  # fmt: skip


def load_function(spec: str, base_dir, fresh: dict | None = None):
    """The function `module.path:function` names, imported with `base_dir` on sys.path.

    With `fresh` (a dict: a config check, a reload), a module already loaded is run again
    from its file into a new module object, kept in `fresh` by name and not put in
    sys.modules: the check sees the file as it is now, each changed module runs once, and
    the module the engine runs stays as it is until a reload is accepted
    (:func:`install_fresh`).
    """
    module_name, _, name = spec.partition(":")
    root = str(base_dir)
    if root not in sys.path:
        sys.path.insert(0, root)
    try:
        if fresh is not None and module_name in fresh:
            module = fresh[module_name]
        elif fresh is not None and module_name in sys.modules:
            module = fresh[module_name] = _fresh_copy(sys.modules[module_name])
        else:
            module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, SyntaxError, errors at import time
        raise StepBuildError(
            f"cannot import {module_name}: {type(exc).__name__}: {exc}", "function"
        ) from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise StepBuildError(f"{module_name} has no function {name!r}", "function")
    return fn


def _fresh_copy(module):
    """`module` run again from its source into a new module object, not put in sys.modules."""
    spec = module.__spec__
    if spec is None or spec.origin is None or not hasattr(spec.loader, "exec_module"):
        return module  # built in or made by hand: nothing on disk to check
    copy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(copy)
    return copy


def install_fresh(fresh: dict) -> None:
    """A reload was accepted: the fresh copies of its modules replace the ones loaded."""
    sys.modules.update(fresh)


@step_kind(
    "python",
    PYTHON,
    example="python: transforms.lab:normalize_units\n"
    "python: {function: transforms.lab:normalize_units, options: {unit: mmol/L}}",
)
class Python(Step):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.fn = load_function(config.function, ctx.base_dir, ctx.fresh_modules)
        self.options = config.options

    def run(self, message, ctx):
        ctx.options = self.options
        try:
            result = self.fn(message, ctx)
        except StepError:
            raise
        except Exception as exc:
            raise StepError(f"{self.config.function} raised {type(exc).__name__}: {exc}") from None
        return None if result is None else bool(result)


__all__ = ["Python", "install_fresh", "load_function"]
