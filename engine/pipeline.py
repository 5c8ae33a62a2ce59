"""What a message goes through after intake: the routes and the built channels.

One immutable object, swapped whole on reload, so a message sees either the old or the new
config, never a mix; changed channels apply to the next message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.channel import Channel
from engine.config import Config
from engine.router import Router


@dataclass(frozen=True)
class Pipeline:
    router: Router
    channels: dict[str, Channel] = field(default_factory=dict)
    storage: dict[str, str | None] = field(default_factory=dict)  # channel -> storage mode
    default_storage: str = "everything"

    @classmethod
    def of(cls, config: Config, channels: dict[str, Channel]) -> Pipeline:
        """The routes of a validated config with its built channels (engine.components)."""
        return cls(
            Router(config.routes),
            channels,
            storage={name: ch.storage for name, ch in config.channels.items()},
            default_storage=config.store_options.storage,
        )
