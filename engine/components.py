"""The engine's registry of kinds, and loading a config with it in one pass.

:data:`REGISTRY` lists every built-in source, step and destination class (each declares its
``kind`` and ``spec``; ``cls(conf, ctx)`` builds it) and the config field types and checks
that need the engine. engine.config validates with it and imports nothing from here.

:func:`load` validates routes.yaml and the channel files and builds the channels in the same
pass, so a python step that does not import or a missing table is reported with every
structural problem, and what was built is what runs: start-up and reload build each channel
(and run each changed transforms module) once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from engine import config as _config
from engine.channel import build_channels
from engine.config import Config, ConfigError, Problem, Registry
from engine.config.validation import has_invalid
from engine.context import Context
from engine.destinations.fhir import FhirDestination
from engine.destinations.file import FileDestination
from engine.destinations.mllp import MLLPDestination
from engine.destinations.rest import RestDestination
from engine.hl7.fieldtypes import Condition
from engine.pipeline import Pipeline
from engine.sources.file_drop import FileDropService
from engine.sources.mllp import MLLPSource
from engine.steps.fields import Copy, Delete, Move, Set
from engine.steps.filter import Filter
from engine.steps.flag import Flag
from engine.steps.python import Python
from engine.steps.tables import TableCache
from engine.steps.translate import Translate
from engine.steps.validate import Validate
from engine.steps.values import Map, Replace
from engine.steps.xslt import Xslt

SOURCES = (MLLPSource, FileDropService)
STEPS = (Filter, Set, Copy, Move, Delete, Map, Replace, Translate, Validate, Xslt, Python, Flag)
DESTINATIONS = (MLLPDestination, RestDestination, FileDestination, FhirDestination)


def encryption_problems(config: Config) -> list[Problem]:
    """Keys that cannot be loaded (an unset variable, an unreadable file, not 32 bytes)."""
    options = config.store_options
    if not options or has_invalid(options.encryption):
        return []
    from engine.store.crypto import SealError, sealer_from_options

    try:
        sealer_from_options(options)
    except SealError as exc:
        return [config.problem(("store_options", "encryption"), f"encryption: {exc}")]
    return []


def _registry() -> Registry:
    registry = Registry()
    for role, classes in (("source", SOURCES), ("step", STEPS), ("destination", DESTINATIONS)):
        for cls in classes:
            registry.add_class(role, cls)
    registry.add_type("condition", Condition())
    registry.add_check(encryption_problems)
    return registry


REGISTRY = _registry()


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Validate and build (then drop what was built): `switchboard check`, `test`, tools.
    Raises ConfigError with every problem of the pass."""
    return load(path, Context(fresh_modules={}), environ)[0]


def load(
    path: str | os.PathLike[str], ctx: Context, environ: Mapping[str, str] | None = None
) -> tuple[Config, Pipeline]:
    """The config at ``path`` and its pipeline, built with ``ctx`` (metrics; with
    ``fresh_modules`` a dict, transforms modules already loaded run again into fresh copies
    kept there, see engine.steps.python). Raises ConfigError listing every problem."""
    built: dict[str, object] = {}

    def build(config: Config) -> list[Problem]:
        problems: list[Problem] = []
        built["channels"] = _channels(config, ctx, problems)
        return problems

    config = _config.load_config(path, environ, REGISTRY, checks=(build,))
    return config, Pipeline.of(config, built["channels"])


def build_pipeline(config: Config, ctx: Context) -> Pipeline:
    """The pipeline of a config loaded without one (tests, tools); ConfigError if a channel
    cannot be built."""
    problems: list[Problem] = []
    channels = _channels(config, ctx, problems)
    if problems:
        raise ConfigError(problems)
    return Pipeline.of(config, channels)


def _channels(config: Config, ctx: Context, problems: list[Problem]) -> dict:
    tables = TableCache(config.base_dir)
    return build_channels(
        config, ctx.replace(registry=REGISTRY, base_dir=config.base_dir, tables=tables), problems
    )


def schema(kind: str) -> dict:
    """The JSON Schema of routes.yaml or a channel file, with the engine's kinds."""
    return _config.to_json_schema(kind, REGISTRY)


def docs() -> str:
    """`switchboard docs`: every setting of every file and kind."""
    return _config.describe_all(REGISTRY)


__all__ = ["REGISTRY", "ConfigError", "build_pipeline", "docs", "load", "load_config", "schema"]
