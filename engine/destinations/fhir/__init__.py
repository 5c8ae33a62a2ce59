"""FHIR destination: each message as one R4 transaction Bundle, POSTed to the server's base
URL as application/fhir+json (mapping in engine/fhir, per the V2-to-FHIR guide)."""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.config import Field
from engine.config.fieldtypes import FreeMapping, ListOf, Url
from engine.config.scalars import Bool, Duration, Enum, Float, String
from engine.config.spec import Nested
from engine.destinations.base import CLIENT_TLS, Destination, Rendered, destination_kind
from engine.destinations.http_auth import AUTH
from engine.fhir.options import (
    ALL_RESOURCES,
    DEFAULT_LOCAL_SYSTEM,
    DEFAULT_RESOURCES,
    ConvertOptions,
)
from engine.hl7.message import Message

FHIR_JSON = "application/fhir+json"


@destination_kind(
    "fhir",
    "Convert each message to a FHIR R4 transaction Bundle and POST it to the server.",
    (
        Field("fhir", Url(), "The FHIR server's base URL.", required=True,
              example="https://fhir.example.org/R4"),
        Field("timezone", String(), "IANA zone for HL7 times without an offset (FHIR needs "
              "one).", default="UTC", example="America/New_York"),
        Field("local_system", String(), "Base URI for local code systems and identifier "
              "namespaces no table names.", default=DEFAULT_LOCAL_SYSTEM),
        Field("identifier_systems", FreeMapping(), "Identifier systems by assigning "
              "authority (CX.4.1), or by FACILITY/AUTHORITY for one sending facility (MSH-4).",
              default={}, example={"MRN": "http://hospital.example.org/mrn"}),
        Field("resources", ListOf(Enum(*sorted(ALL_RESOURCES))), "Resource types to emit.",
              default=sorted(DEFAULT_RESOURCES)),
        Field("hook", String(pattern=r"[A-Za-z_][\w.]*:[A-Za-z_]\w*",
                             pattern_hint="write module.path:function"),
              "A function fn(bundle, message, options) that may amend the bundle."),
        Field("validate", Bool(), "Check every bundle against the FHIR R4 models before it is "
              "queued (costs CPU; a failure errors the message).", default=False),
        Field("headers", FreeMapping(), "Extra request headers.", default={}),
        Field("timeout", Duration(), "Request timeout.", default="30s"),
        Field("auth", Nested(AUTH), "Credentials.", nullable=True),
        Field("tls", Nested(CLIENT_TLS), "TLS options: CA, client certificate.", nullable=True),
        Field("rate_limit", Float(min=0.001), "At most this many requests per second.",
              nullable=True),
    ),
)  # fmt: skip
class FhirDestination(Destination):
    content_type = FHIR_JSON

    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        try:
            zone = ZoneInfo(config.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {config.timezone!r}") from None
        self.systems = {str(k): str(v) for k, v in config.identifier_systems.items()}
        self.options = ConvertOptions(
            timezone=zone,
            local_system=config.local_system,
            identifier_systems={k: v for k, v in self.systems.items() if "/" not in k},
            resources=frozenset(config.resources or DEFAULT_RESOURCES),
        )
        self.hook = None
        if config.hook:
            from engine.steps.base import StepBuildError
            from engine.steps.python import load_function

            try:
                self.hook = load_function(config.hook, ctx.base_dir, ctx.fresh_modules)
            except StepBuildError as exc:
                raise ValueError(str(exc)) from None
        self.check = config.validate

    def sender(self, ctx):
        from engine.destinations.fhir.sender import FhirSender

        return FhirSender(self.config, ctx)

    def options_for(self, message: Message) -> ConvertOptions:
        facility = message.get("MSH-4.1") or ""
        prefix = f"{facility}/"
        specific = {k[len(prefix) :]: v for k, v in self.systems.items() if k.startswith(prefix)}
        if not specific:
            return self.options
        return ConvertOptions(
            timezone=self.options.timezone,
            local_system=self.options.local_system,
            identifier_systems={**self.options.identifier_systems, **specific},
            resources=self.options.resources,
        )

    def render(self, message: Message) -> Rendered:
        from engine.fhir.convert import convert, validate

        bundle = convert(message, self.options_for(message), self.hook)
        if self.check:
            validate(bundle)
        body = json.dumps(bundle, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return Rendered(body, FHIR_JSON)
