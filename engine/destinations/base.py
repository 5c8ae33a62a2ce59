"""What every destination kind shares: its declaration (kind and spec, common options),
rendering, and how its sender is made.

A destination kind is a class built as ``cls(conf, ctx)`` (engine.context.Context) that
renders a message for its peer (``render``) and makes the sender that delivers it
(``sender(ctx)``, a class in the kind's own ``sender.py``). engine.components registers the
built-in kinds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from engine.config import Field, Spec
from engine.config.channel_spec import StepList
from engine.config.fieldtypes import FilePath
from engine.config.scalars import Bool, Duration, Enum, Int, String
from engine.config.spec import Nested
from engine.hl7.fieldtypes import Condition
from engine.hl7.message import Message

RETRY = Spec(
    "retry",
    "How often and how long a failed delivery is tried again (exponential backoff with "
    "jitter; a peer's Retry-After is honoured).",
    (
        Field("max_attempts", Int(min=1), "Attempts before the delivery is dead.", default=10),
        Field("backoff", Duration(), "Wait after the first failure; doubles each time.",
              default="2s"),
        Field("max_backoff", Duration(), "The longest wait between attempts.", default="5m"),
        Field("max_age", Duration(), "Give up on a delivery older than this (0: no limit).",
              default="0s"),
    ),
)  # fmt: skip

CLIENT_TLS = Spec(
    "client tls",
    "TLS to the peer: verify it against `ca`, present `cert`/`key` when it asks.",
    (
        Field("ca", FilePath(), "CA certificate(s) to verify the peer (default: system)."),
        Field("cert", FilePath(), "Client certificate."),
        Field("key", FilePath(), "Client private key."),
        Field("server_name", String(), "Name to check the peer certificate against."),
        Field("min_version", Enum("1.2", "1.3"), "Lowest TLS version.", default="1.2"),
    ),
)

COMMON_FIELDS = (
    Field("retry", Nested(RETRY), "Retry policy.", default={}),
    Field("on_failure", Enum("dead_letter", "block"), "When retries are spent (or the peer "
          "rejects the message): move it to dead letter and go on, or hold the queue until an "
          "operator replays or skips it.", default="dead_letter"),
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

    def __init__(self, config: Any, ctx: Any):
        self.config = config  # the settings its spec validated
        self.name = config.name

    def render(self, message: Message) -> Rendered:
        return Rendered(message.to_bytes(), self.content_type)

    def certificates(self) -> list[tuple[str, Any]]:
        """(role, file) of the certificates it uses, for the expiry metric: a kind with a
        `tls` option, its client certificate and CA."""
        tls = self.config.tls if self.spec.field("tls") is not None else None
        return [(role, path) for role, path in (("client", tls and tls.cert),
                                                ("ca", tls and tls.ca)) if path]  # fmt: skip

    def sender(self, ctx: Any):
        """The sender that delivers what this destination renders (engine.delivery.worker
        drives it)."""
        raise NotImplementedError


def destination_kind(kind: str, description: str, fields: tuple[Field, ...]):
    """Class decorator: a destination kind's name and spec, its own fields plus the common
    options (engine.components registers the class)."""

    def declare(cls: type[Destination]) -> type[Destination]:
        cls.kind = kind
        cls.spec = Spec(kind, description, (*fields, *COMMON_FIELDS), kind=kind)
        return cls

    return declare


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
