"""REST destination: the message POSTed (or PUT) as ER7 or JSON."""

from __future__ import annotations

from engine.config import Field
from engine.config.containers import FreeMapping
from engine.config.external import Url
from engine.config.scalars import Duration, Enum
from engine.destinations.base import Destination, Rendered, destination_kind, er7_as_json
from engine.hl7.message import Message


@destination_kind(
    "rest",
    "Send the message to an HTTP endpoint.",
    (
        Field("rest", Url(), "The URL.", required=True, example="https://api.example.org/hl7"),
        Field("method", Enum("POST", "PUT"), "HTTP method.", default="POST"),
        Field("format", Enum("er7", "json"), "Body: the message as ER7 text or as JSON.",
              default="er7"),
        Field("headers", FreeMapping(), "Extra request headers.", default={}),
        Field("timeout", Duration(), "Request timeout.", default="30s"),
    ),
)  # fmt: skip
class RestDestination(Destination):
    def render(self, message: Message) -> Rendered:
        if self.config["format"] == "json":
            return Rendered(er7_as_json(message), "application/json")
        return super().render(message)
