"""REST destination: the message POSTed (or PUT) as ER7 or JSON."""

from __future__ import annotations

import json
import re

from engine.config import Field
from engine.config.fieldtypes import FreeMapping, Url
from engine.config.scalars import Duration, Enum, Float, String
from engine.config.spec import Nested
from engine.destinations.base import (
    CLIENT_TLS,
    Destination,
    Rendered,
    destination_kind,
    er7_as_json,
)
from engine.destinations.http_auth import AUTH, HMAC
from engine.hl7.message import Message
from engine.hl7.path import parse_path


@destination_kind(
    "rest",
    "Send the message to an HTTP endpoint.",
    (
        Field("rest", Url(), "The URL.", required=True, example="https://api.example.org/hl7"),
        Field("method", Enum("POST", "PUT"), "HTTP method.", default="POST"),
        Field("format", Enum("er7", "json", "template"), "Body: the message as ER7 text, as "
              "JSON (segments and fields), or rendered from `template`.", default="er7"),
        Field("template", String(), "Body template: {{PID-3.1}}-style field paths are "
              "replaced by the field's value (JSON-escaped when content_type is JSON). (${VAR} "
              "still reads the environment when the config loads.)",
              example='{"mrn": "{{PID-3.1}}", "event": "{{MSH-9.2}}"}'),
        Field("content_type", String(), "Content-Type of a template body.",
              default="application/json"),
        Field("headers", FreeMapping(), "Extra request headers.", default={}),
        Field("timeout", Duration(), "Request timeout.", default="30s"),
        Field("auth", Nested(AUTH), "Credentials.", nullable=True),
        Field("hmac", Nested(HMAC), "Sign each body (HMAC over timestamp.body, Stripe style).",
              nullable=True),
        Field("tls", Nested(CLIENT_TLS), "TLS options (https only): CA, client certificate.",
              nullable=True),
        Field("rate_limit", Float(min=0.001), "At most this many requests per second.",
              nullable=True),
    ),
)  # fmt: skip
class RestDestination(Destination):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.template = None
        if config.format == "template":
            if not config.template:
                raise ValueError("format: template needs a 'template'")
            self.template = compile_template(config.template)

    def sender(self, ctx):
        from engine.destinations.rest.sender import RestSender

        return RestSender(self.config, ctx)

    def render(self, message: Message) -> Rendered:
        fmt = self.config.format
        if fmt == "json":
            return Rendered(er7_as_json(message), "application/json")
        if fmt == "template":
            ctype = self.config.content_type
            body = render_template(self.template, message, json_escape="json" in ctype)
            return Rendered(body.encode("utf-8"), ctype)
        return super().render(message)


_PLACEHOLDER = re.compile(r"\{\{([^}]*)\}\}")


def compile_template(text: str) -> list:
    """Split a template into literal text and parsed field paths (checked at load)."""
    parts: list = []
    pos = 0
    for m in _PLACEHOLDER.finditer(text):
        parts.append(text[pos : m.start()])
        parts.append(parse_path(m.group(1).strip()))
        pos = m.end()
    parts.append(text[pos:])
    return parts


def render_template(parts: list, message: Message, json_escape: bool) -> str:
    out = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = message.get(part) or ""
        out.append(json.dumps(value)[1:-1] if json_escape else value)
    return "".join(out)
