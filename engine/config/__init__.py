"""Configuration: YAML with file:line:column for every value, declarative specs, and every
problem of every file reported in one pass.

    config = load_config("routes.yaml")      # raises ConfigError
    print(summary(config))
"""

from .docs import describe_all, to_json_schema
from .errors import ConfigError, Problem
from .loader import Location, load_yaml
from .model import Config, load_config
from .registry import Registry, default_registry, register_destination, register_step
from .spec import Field, Spec, describe, json_schema
from .summary import summary

__all__ = [
    "Config",
    "ConfigError",
    "Field",
    "Location",
    "Problem",
    "Registry",
    "Spec",
    "default_registry",
    "describe",
    "describe_all",
    "json_schema",
    "load_config",
    "load_yaml",
    "register_destination",
    "register_step",
    "summary",
    "to_json_schema",
]
