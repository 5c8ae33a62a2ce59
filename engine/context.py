"""What every component is built with: ``Cls(conf, ctx)``.

``conf`` is the component's validated settings (its spec's frozen settings object); ``ctx``
a :class:`Context`: the reactor and clock, metrics, a logger, the config's directory, the
sealer, the registry and the rest of what the running engine shares with its parts. No
globals and nothing set on a component after it is built, so a test hands in a Context of
its own (a ``task.Clock``, a ``MemoryReactorClock``, no metrics).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.logging import get_logger
from engine.store.crypto import NULL_SEALER


@dataclass(frozen=True)
class Context:
    reactor: Any = None  # twisted reactor: connections, threads, callLater
    clock: Any = None  # IReactorTime for timing (defaults to the reactor)
    metrics: Any = None  # engine.metrics.Metrics, or None (nothing counted)
    log: Any = None  # a structlog logger bound to the component (see `for_`)
    base_dir: Path = Path(".")  # the config file's directory: relative paths start here
    sealer: Any = NULL_SEALER  # engine.store.crypto: bodies sealed at rest
    registry: Any = None  # engine.components.REGISTRY: which class builds which kind
    tables: Any = None  # engine.steps.tables.TableCache shared by the steps of a build
    # python steps: None imports a module normally; a dict runs a module already loaded
    # again from its file into a fresh copy, collected here (a check, a reload)
    fresh_modules: dict[str, Any] | None = None
    # the running engine's parts, for intake and sources
    writer: Any = None  # engine.store.writer.StoreWriter
    pipeline: Callable[[], Any] | None = None  # the current engine.pipeline.Pipeline
    notify: Callable[[set], None] | None = None  # deliveries committed: wake their workers

    def __post_init__(self) -> None:
        if self.clock is None and self.reactor is not None:
            object.__setattr__(self, "clock", self.reactor)
        if self.log is None:
            object.__setattr__(self, "log", get_logger("switchboard"))

    def path(self, name: str | Path) -> Path:
        """A path from the config, relative to the config file's directory."""
        p = Path(name)
        return p if p.is_absolute() else self.base_dir / p

    def for_(self, logger: str, **bind: Any) -> Context:
        """This context with a logger of its own (``for_("intake", listener="lab-in")``)."""
        return dataclasses.replace(self, log=get_logger(logger, **bind))

    def replace(self, **changes: Any) -> Context:
        return dataclasses.replace(self, **changes)
