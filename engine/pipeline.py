"""What a message goes through after intake: the routes and the built channels.

One immutable object, swapped whole on reload, so a message sees either the old or the new
config, never a mix; changed channels apply to the next message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.channel import Channel, build_channels
from engine.config import Config
from engine.router import Router
from engine.steps import Runtime


@dataclass(frozen=True)
class Pipeline:
    router: Router
    channels: dict[str, Channel] = field(default_factory=dict)
    storage: dict[str, str | None] = field(default_factory=dict)  # channel -> storage mode
    default_storage: str = "everything"


def build_pipeline(config: Config, metrics=None, reloading: bool = False) -> Pipeline:
    """Routes and channels of a validated config; raises ConfigError for build problems."""
    runtime = Runtime(base_dir=config.base_dir, metrics=metrics, reloading=reloading)
    return Pipeline(
        Router(config.routes),
        build_channels(config, runtime),
        storage={name: ch.get("storage") for name, ch in config.channels.items()},
        default_storage=config.store_options.get("storage", "everything"),
    )
