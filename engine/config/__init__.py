"""Configuration: YAML with file:line:column for every value, declarative specs, and every
problem of every file reported in one pass. A leaf package: it imports nothing of the
engine, which hands it its registry of kinds (engine.components).

    config = load_config("routes.yaml", registry=REGISTRY)      # raises ConfigError
    print(summary(config))
"""

from .docs import describe_all, to_json_schema
from .errors import ConfigError, Problem
from .loader import Location, load_yaml
from .model import Config, load_config
from .registry import Component, Registry
from .spec import Field, Settings, Spec, describe, json_schema
from .summary import summary

__all__ = [
    "Component",
    "Config",
    "ConfigError",
    "Field",
    "Location",
    "Problem",
    "Registry",
    "Settings",
    "Spec",
    "describe",
    "describe_all",
    "json_schema",
    "load_config",
    "load_yaml",
    "summary",
    "to_json_schema",
]
