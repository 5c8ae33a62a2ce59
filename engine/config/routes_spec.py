"""The spec of routes.yaml: listeners (the settings every listener has, and the options of
the registered source kinds: listener_spec), admin, logging and routes; the store's part is
in store_spec."""

from __future__ import annotations

import dataclasses
from typing import Any

from yaml.nodes import MappingNode, Node

from .fieldtypes import (
    Bool,
    Charset,
    DirPath,
    Duration,
    EndpointString,
    Enum,
    FilePath,
    ListOf,
    String,
    StrOrList,
)
from .registry import Registered, current
from .spec import Field, Nested, Spec
from .store_spec import STORE_OPTIONS, StoreUrl
from .validation import At, Ctx, FieldType

NAME_PATTERN = r"[A-Za-z0-9_.-]+"
NAME_HINT = "use only letters, digits, '_', '.' and '-'"
HL7_VERSIONS = (
    "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1",
    "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2",
)  # fmt: skip
DEFAULT_STORE = "sqlite:///var/switchboard.db"


def name_type() -> String:
    return String(NAME_PATTERN, NAME_HINT)


def _finish_tls(value: dict[str, Any], node: MappingNode, ctx: Ctx, where: str) -> None:
    if value["require_client_cert"] is None:
        value["require_client_cert"] = "want" if value["client_ca"] else "none"
    elif value["require_client_cert"] in ("want", "require") and value["client_ca"] is None:
        ctx.error(
            node,
            f"require_client_cert '{value['require_client_cert']}' needs 'client_ca' in {where}",
        )


TLS = Spec(
    "tls",
    "TLS for an MLLP listener; with client_ca it can require client certificates (mutual TLS).",
    (
        Field(
            "cert",
            FilePath(),
            "Server certificate (PEM), with its chain.",
            required=True,
            example="certs/server.pem",
        ),
        Field(
            "key",
            FilePath(),
            "Private key of the certificate (PEM).",
            required=True,
            example="certs/server.key",
        ),
        Field(
            "client_ca",
            FilePath(),
            "CA certificates (PEM) that client certificates must chain to.",
            example="certs/ca.pem",
        ),
        Field(
            "require_client_cert",
            Enum("none", "want", "require", bools={True: "require", False: "none"}),
            "Ask for a client certificate (want) or refuse peers without one (require).",
            default_doc="want when client_ca is given, else none",
        ),
        Field("min_version", Enum("1.2", "1.3"), "Lowest TLS version accepted.", default="1.2"),
    ),
    finish=_finish_tls,
)

LISTENER_FIELDS = (
    Field(
        "name",
        name_type(),
        "Unique name, used in routes, logs and metrics.",
        required=True,
        example="lab-in",
    ),
    Field(
        "ack",
        Enum("on_receipt", "after_routing"),
        "Both answer after the one commit that stores the message and its channel outputs. "
        "on_receipt: AA for every message stored, whatever routing and channels made of it "
        "(no route or a step error is kept and counted, not NAKed); after_routing: the ACK "
        "says what they made of it (AR with ERR for no route, AE for a step error).",
        default="on_receipt",
    ),
    Field(
        "enhanced_ack",
        Bool(),
        "Honour MSH-15/16 (enhanced acknowledgement mode).",
        default=True,
    ),
    Field("charset", Charset(), "Charset used when MSH-18 is empty.", default="iso-8859-1"),
    Field(
        "versions",
        ListOf(String(json_types=("string", "number"))),
        "HL7 versions (MSH-12) accepted.",
        default=list(HL7_VERSIONS),
    ),
    Field(
        "processing_ids",
        ListOf(Enum("P", "T", "D")),
        "Processing IDs (MSH-11) accepted.",
        default=["P", "T", "D"],
    ),
    Field(
        "duplicate_window",
        Duration(),
        "How long a control ID (MSH-10) from the same "
        "sender counts as a duplicate; 0 disables duplicate detection.",
        default="24h",
    ),
    Field(
        "on_conflicting_duplicate",
        Enum("ack_first", "process", "reject"),
        "A message with the MSH-10 and sender of one taken in within duplicate_window but "
        "another body (MSH-7 aside): reject answers AR with an ERR saying why and keeps it "
        "as rejected; process takes it in as a new message; ack_first answers with the "
        "first message's ACK and keeps nothing of it. Each is logged and counted. (A resend "
        "of an errored or rejected message is no duplicate: it is processed anew.)",
        default="reject",
    ),
    Field(
        "normalize_newlines",
        Bool(),
        "Turn LF and CRLF segment separators into CR.",
        default=True,
    ),
)
"""What every listener has, whatever its source; each source kind (`mllp:`, `directory:`)
adds its own (engine.sources, registered in engine.components)."""

LISTENER_DESCRIPTION = (
    "Where messages come in: an MLLP endpoint, or a directory that is watched for files."
)


def listener_spec(sources: dict[str, Spec]) -> Spec:
    """The listener spec for these source kinds: `name`, one key per kind (exactly one is
    given), the settings every listener has, then each kind's own options (which apply only
    with its key). Made once per set of kinds."""
    key = tuple((kind, id(spec)) for kind, spec in sources.items())
    made = _LISTENER_SPECS.get(key)
    if made is None:
        name, *common = LISTENER_FIELDS
        kind_keys, options = [], []
        for kind, spec in sources.items():
            for f in spec.fields:
                if f.name == kind:
                    kind_keys.append(dataclasses.replace(f, required=False))
                else:
                    options.append(f if f.requires else dataclasses.replace(f, requires=kind))
        made = _LISTENER_SPECS[key] = Spec(
            "listener", LISTENER_DESCRIPTION, (name, *kind_keys, *common, *options),
            label_key="name", kinds=tuple(sources),
        )  # fmt: skip
    return made


_LISTENER_SPECS: dict[tuple, Spec] = {}
_NO_SOURCES = Spec("listener", LISTENER_DESCRIPTION, LISTENER_FIELDS, label_key="name")


class ListenerList(FieldType):
    """Listeners, each validated with the spec of the registered source kinds; with none
    registered, with the settings every listener has (LISTENER_FIELDS) alone."""

    name = "list of listeners"

    def _spec(self) -> Spec:
        registry = current()
        sources = registry.specs("source") if registry is not None else {}
        if not sources:
            return _NO_SOURCES
        return listener_spec(sources)

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        return ListOf(Nested(self._spec())).check(node, ctx, at)

    def json_schema(self) -> dict[str, Any]:
        return ListOf(Nested(self._spec())).json_schema()

    def doc(self) -> str:
        return "list of mapping (listener)"

    def nested_specs(self) -> list[Any]:
        return [self._spec()]


ADMIN = Spec(
    "admin",
    "The admin HTTP API, dashboard, /metrics and health checks.",
    (
        Field(
            "listen",
            EndpointString(),
            "Twisted server endpoint of the admin API.",
            default="tcp:8480:interface=127.0.0.1",
        ),
        Field(
            "token",
            String(),
            "Bearer token the API requires; keep it out of git with ${SWITCHBOARD_ADMIN_TOKEN}.",
            example="${SWITCHBOARD_ADMIN_TOKEN}",
        ),
        Field(
            "tls",
            Nested(TLS),
            "HTTPS for the admin listener; with client_ca and require_client_cert: require, "
            "only holders of a client certificate from that CA get in (the audit log names "
            "them).",
            nullable=True,
        ),
    ),
)

LOGGING = Spec(
    "logging",
    "Log level and format (auto: readable on a terminal, JSON otherwise).",
    (
        Field(
            "level",
            Enum("debug", "info", "warning", "error"),
            "Lowest level logged.",
            default="info",
        ),
        Field("format", Enum("auto", "console", "json"), "Output format.", default="auto"),
    ),
)


def _match_values() -> StrOrList:
    return StrOrList(String(json_types=("string", "number")))


MATCH = Spec(
    "match",
    "What a route takes; every key given must match (a list means any of its values). "
    "An empty match takes every message.",
    (
        Field("listener", _match_values(), "Listener names.", example="lab-in"),
        Field("type", _match_values(), "Message type, MSH-9.1.", example="ORU"),
        Field("trigger", _match_values(), "Trigger event, MSH-9.2.", example="R01"),
        Field("sending_application", _match_values(), "MSH-3.1.", example="LIS"),
        Field("sending_facility", _match_values(), "MSH-4.1.", example="QUEST"),
        Field("version", _match_values(), "MSH-12.1.", example="2.5.1"),
        Field("processing_id", StrOrList(Enum("P", "T", "D")), "MSH-11.1.", example="P"),
        Field(
            "when",
            Registered("condition"),
            "A condition on any field (equals, in, regex, exists; all/any/not).",
            example={"field": "PV1-2", "in": ["I", "E"]},
        ),
    ),
)

ROUTE = Spec(
    "route",
    "Sends the messages it matches to channels.",
    (
        Field("name", String(), "Optional name, shown in logs."),
        Field("match", Nested(MATCH), "What the route takes.", default={}),
        Field(
            "to",
            StrOrList(name_type(), min_items=1),
            "Channel names.",
            required=True,
            example=["lab-results"],
        ),
    ),
    label_key="name",
)

ROUTES = Spec(
    "routes.yaml",
    "The file `switchboard run` reads: store, listeners, admin, logging and routes.",
    (
        Field(
            "store",
            StoreUrl(),
            "Where messages and queues are kept.",
            default=DEFAULT_STORE,
            example="postgresql+psycopg://switchboard:${PGPASSWORD}@db/switchboard",
        ),
        Field("store_options", Nested(STORE_OPTIONS), "Store tuning.", default={}),
        Field(
            "channels_dir",
            DirPath(),
            "Directory of the channel files (*.yaml).",
            default="channels",
        ),
        Field("listeners", ListenerList(), "Where messages come in.", default=[]),
        Field(
            "admin",
            Nested(ADMIN),
            "Admin API; off unless given (`admin: {}` turns it on with its defaults).",
            nullable=True,
        ),
        Field("logging", Nested(LOGGING), "Logging.", default={}),
        Field("routes", ListOf(Nested(ROUTE)), "Which channels get which messages.", default=[]),
    ),
)
