"""What every destination kind shares: registration, common options, rendering."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.config import Field, Spec, register_destination
from engine.config.channel_spec import StepList
from engine.config.hl7types import Condition
from engine.config.scalars import Bool
from engine.hl7.message import Message

DESTINATION_KINDS: dict[str, type[Destination]] = {}

COMMON_FIELDS = (
    Field("steps", StepList(), "Steps for this destination only, after the channel's steps.",
          default=[]),
    Field("when", Condition(), "Only messages this condition holds for go here."),
    Field("flagged_only", Bool(), "Only messages a flag step marked go here (an alert "
          "destination).", default=False),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rendered:
    payload: bytes
    content_type: str


class Destination:
    kind: ClassVar[str]
    spec: ClassVar[Spec]
    content_type = "x-application/hl7-v2+er7"

    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.name = config["name"]

    def render(self, message: Message) -> Rendered:
        return Rendered(message.to_bytes(), self.content_type)


def destination_kind(kind: str, description: str, fields: tuple[Field, ...]):
    """Class decorator: register a destination kind with its spec (plus the common options)."""

    def register(cls: type[Destination]) -> type[Destination]:
        cls.kind = kind
        cls.spec = Spec(kind, description, (*fields, *COMMON_FIELDS))
        DESTINATION_KINDS[kind] = cls
        register_destination(kind, cls.spec)
        return cls

    return register


def er7_as_json(message: Message) -> bytes:
    """The message as JSON: segments as lists of raw (escaped) fields, MSH numbered as HL7
    does (element 1 is MSH-1)."""
    segments = []
    for seg in message.segments:
        fields = seg.split(message.sep)
        if fields[0] == "MSH":
            fields = ["MSH", message.sep, *fields[1:]]
        segments.append(fields)
    return json.dumps({"segments": segments}, ensure_ascii=False).encode("utf-8")
