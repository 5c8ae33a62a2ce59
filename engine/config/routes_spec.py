"""The spec of routes.yaml: store, listeners, admin, logging, routes."""

from __future__ import annotations

import re
from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from .fieldtypes import (
    Bool,
    Charset,
    DirPath,
    Duration,
    EndpointString,
    Enum,
    FilePath,
    Int,
    ListOf,
    Size,
    String,
    StrOrList,
    resolve_path,
)
from .hl7types import Condition
from .spec import Field, Nested, Spec
from .validation import At, Ctx, FieldType, is_null


class Network(String):
    """An IP address range in CIDR notation (a lone address is its own /32 or /128)."""

    name = "address range"

    def check(self, node, ctx, at):
        import ipaddress

        value = super().check(node, ctx, at)
        if not isinstance(value, str):
            return value
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return ctx.error(node, f"invalid address range '{value}' for {at.key}: write an "
                             "address or a CIDR range like 10.20.0.0/16")  # fmt: skip
        return value


NAME_PATTERN = r"[A-Za-z0-9_.-]+"
NAME_HINT = "use only letters, digits, '_', '.' and '-'"
HL7_VERSIONS = (
    "2.1", "2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1",
    "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2",
)  # fmt: skip
DEFAULT_STORE = "sqlite:///var/switchboard.db"


def name_type() -> String:
    return String(NAME_PATTERN, NAME_HINT)


class StoreUrl(FieldType):
    """A SQLAlchemy URL for sqlite or postgresql; a relative sqlite path starts at the
    config file's directory (`sqlite:///var/x.db` -> `sqlite:////srv/var/x.db`)."""

    name = "database URL"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, ScalarNode) or is_null(node):
            return self.wrong_type(node, ctx, at)
        url = node.value
        scheme, sep, rest = url.partition("://")
        dialect = scheme.split("+", 1)[0]
        if not sep or dialect not in ("sqlite", "postgresql"):
            return ctx.error(
                node,
                f"unsupported store '{mask_password(url)}' for {at.key}: "
                "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
            )
        if dialect == "postgresql":
            return url
        if rest and not rest.startswith("/"):
            return ctx.error(node, f"invalid store '{url}' for {at.key}: write sqlite:///PATH")
        path, query_sep, query = rest[1:].partition("?")
        if not path or path == ":memory:" or path.startswith("/") or path.startswith("file:"):
            return url
        return f"{scheme}:///{resolve_path(path, ctx.base_dir)}{query_sep}{query}"

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": "^(sqlite|postgresql)(\\+[a-z0-9_]+)?://"}

    def doc(self) -> str:
        return "SQLAlchemy URL (sqlite:///PATH or postgresql+psycopg://...)"


_PASSWORD = re.compile(r"^([A-Za-z0-9+.-]+://[^:/@]*:)[^@/]*@")


def mask_password(url: str) -> str:
    """`postgresql://u:secret@h/db` -> `postgresql://u:***@h/db`."""
    return _PASSWORD.sub(r"\1***@", url)


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

LISTENER = Spec(
    "listener",
    "Where messages come in: an MLLP endpoint, or a directory that is watched for files.",
    (
        Field(
            "name",
            name_type(),
            "Unique name, used in routes, logs and metrics.",
            required=True,
            example="lab-in",
        ),
        Field(
            "mllp",
            EndpointString(),
            "Twisted server endpoint to accept MLLP on.",
            example="tcp:2575",
        ),
        Field(
            "directory",
            DirPath(),
            "Directory to take files from; done/ and error/ are made beside it.",
            example="drop/in",
        ),
        Field(
            "tls", Nested(TLS), "TLS settings; null for plain TCP.", nullable=True, requires="mllp"
        ),
        Field(
            "ack",
            Enum("on_receipt", "after_routing"),
            "Send AA once the message is stored (on_receipt) or once channels ran (after_routing).",
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
            "max_frame_size",
            Size(min=1024),
            "Largest MLLP frame accepted.",
            default="16MiB",
            requires="mllp",
        ),
        Field(
            "frame_timeout",
            Duration(),
            "Longest wait inside a frame before the connection is dropped.",
            default="10s",
            requires="mllp",
        ),
        Field(
            "idle_timeout",
            Duration(),
            "Close a connection idle this long; null never closes it.",
            nullable=True,
            requires="mllp",
        ),
        Field(
            "max_connections",
            Int(min=1),
            "Most connections open at once.",
            default=100,
            requires="mllp",
        ),
        Field(
            "allow_addresses",
            ListOf(Network()),
            "Only peers in these address ranges may connect (CIDR, e.g. 10.20.0.0/16); empty: any.",
            default=[],
            requires="mllp",
            example=["10.20.0.0/16", "127.0.0.1/32"],
        ),
        Field(
            "allow_subjects",
            ListOf(String()),
            "Only TLS clients whose verified certificate subject matches one of these "
            "(RFC 4514, * wildcards) may send; empty: any.",
            default=[],
            requires="tls",
            example=["CN=lab-gateway,O=Quest*"],
        ),
        Field(
            "require_end_of_data",
            Bool(),
            "A frame ends with 1C 0D (true) or a lone 1C is accepted too (false).",
            default=True,
            requires="mllp",
        ),
        Field(
            "normalize_newlines",
            Bool(),
            "Turn LF and CRLF segment separators into CR.",
            default=True,
        ),
        Field(
            "poll_interval",
            Duration(),
            "How often the directory is scanned.",
            default="1s",
            requires="directory",
        ),
        Field(
            "settle_time",
            Duration(),
            "A file must stay unchanged this long before it is taken.",
            default="2s",
            requires="directory",
        ),
        Field(
            "pattern",
            String(),
            "Glob of the file names to take.",
            default="*",
            requires="directory",
            example="*.hl7",
        ),
    ),
    label_key="name",
    exactly_one_of=("mllp", "directory"),
)

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


STORAGE_MODES = ("everything", "raw_and_final", "metadata_only")
_MESSAGE_STATUSES = ("received", "routed", "unrouted", "filtered", "errored", "rejected")


class EncryptionKeys(FieldType):
    """Key id -> a key: base64 of 32 bytes (write "${VAR}" to read it from the environment),
    {env: VAR} or {file: PATH}."""

    name = "mapping of key id to key"

    def check(self, node, ctx, at):
        from yaml.nodes import MappingNode, ScalarNode

        from .scalars import scalar_value

        if not isinstance(node, MappingNode) or not node.value:
            return self.wrong_type(node, ctx, at, " (like {key-2026: ${SB_KEY_2026}})")
        out = {}
        for key, value in node.value:
            ctx.record((*at.path, key.value), value)
            if isinstance(value, ScalarNode):
                out[key.value] = str(scalar_value(value))
            elif isinstance(value, MappingNode):
                pairs = {k.value: v.value for k, v in value.value if isinstance(v, ScalarNode)}
                if set(pairs) not in ({"env"}, {"file"}):
                    ctx.error(value, f"key '{key.value}' takes base64 text, {{env: VAR}} or "
                              "{file: PATH}")  # fmt: skip
                    continue
                out[key.value] = pairs
            else:
                ctx.error(value, f"key '{key.value}' takes base64 text, {{env: VAR}} or "
                          "{file: PATH}")  # fmt: skip
        return out

    def json_schema(self):
        key = {"oneOf": [{"type": "string"},
                         {"type": "object", "properties": {"env": {"type": "string"}},
                          "required": ["env"], "additionalProperties": False},
                         {"type": "object", "properties": {"file": {"type": "string"}},
                          "required": ["file"], "additionalProperties": False}]}  # fmt: skip
        return {"type": "object", "minProperties": 1, "additionalProperties": key}


ENCRYPTION = Spec(
    "encryption",
    "AES-256-GCM for message bodies, ACKs and delivery payloads; the key id is stored with "
    "each value, so keys rotate: new writes use `current`, older keys stay listed until "
    "`switchboard`'s rotate has re-sealed their rows.",
    (
        Field("enabled", Bool(), "Off keeps the keys but stores plaintext.", default=True),
        Field("current", String(), "The key id new writes use.", required=True,
              example="key-2026"),
        Field("keys", EncryptionKeys(), "Key ids and their keys.", required=True,
              example={"key-2026": "${SB_KEY_2026}"}),
    ),
)  # fmt: skip


RETENTION_RULE = Spec(
    "retention rule",
    "Keep messages in these statuses for a shorter (or longer) time.",
    (
        Field("status", StrOrList(Enum(*_MESSAGE_STATUSES), min_items=1), "Message statuses.",
              required=True, example=["rejected", "filtered"]),
        Field("max_age", Duration(), "How long they are kept.", required=True, example="30d"),
    ),
)  # fmt: skip

RETENTION = Spec(
    "retention",
    "Pruning by age and status, in small batches (no long locks); a message with a delivery "
    "still to make is never pruned.",
    (
        Field("max_age", Duration(), "Messages older than this are deleted with their history "
              "(null: keep forever).", nullable=True, example="90d"),
        Field("rules", ListOf(Nested(RETENTION_RULE)), "Other ages for some statuses.",
              default=[]),
        Field("compact_after", Duration(), "When the storage mode drops delivered payloads or "
              "raw messages, how long after delivery.", default="1h"),
        Field("interval", Duration(min=1.0), "How often the pass runs.", default="10m"),
        Field("batch_size", Int(min=1, max=10000), "Rows per short transaction.", default=500),
        Field("max_batches", Int(min=1), "Batches per step and pass at most.", default=100),
        Field("pause", Duration(), "Pause between batches, for other writers.", default="10ms"),
    ),
)  # fmt: skip

STORE_OPTIONS = Spec(
    "store_options",
    "Tuning of the message store.",
    (
        Field(
            "synchronous",
            Enum("off", "normal", "full", "extra"),
            "SQLite synchronous pragma (full: an ACKed message survives a power cut).",
            default="full",
        ),
        Field(
            "max_batch",
            Int(min=1, max=100000),
            "Most writes committed in one transaction.",
            default=2000,
        ),
        Field(
            "inline_commit",
            Bool(),
            "SQLite: when a small batch (up to 32 messages) is all there is in flight, commit "
            "it on the event loop instead of handing it to the writer thread: lower latency "
            "and CPU at light load and for senders that wait for each ACK. Under load writes "
            "go to the writer's group commits.",
            default=True,
        ),
        Field(
            "gather_time",
            Duration(max=0.1),
            "Most time a group commit waits for the senders its last commits answered to "
            "send their next message, so that they share one commit (senders that wait for "
            "each ACK). It never waits for a lone sender or while the writer is busy; 0 "
            "never waits.",
            default="2ms",
        ),
        Field(
            "checkpoint_rows",
            Int(min=0),
            "SQLite: copy the write-ahead log back into the database on a thread of its own "
            "after this many rows, so group commits do not wait for it (0: SQLite's own "
            "checkpoints, inside the commit that takes the log past 1,000 pages).",
            default=300,
        ),
        Field("pool_size", Int(min=1), "Database connections (PostgreSQL).", default=5),
        Field(
            "lease_ttl",
            Duration(min=1.0),
            "How long a node holds a destination without renewing (several nodes on "
            "PostgreSQL): when a node dies, another takes its destinations over after this.",
            default="15s",
        ),
        Field(
            "poll_interval",
            Duration(min=0.01),
            "How often idle delivery workers look for work from other nodes and operators.",
            default="1s",
        ),
        Field(
            "stop_timeout",
            Duration(),
            "On shutdown, how long a delivery worker waits for the answer to its send in "
            "flight (an ACK, an HTTP response) before leaving it to be sent again after the "
            "restart. Outcomes already answered are always recorded.",
            default="10s",
        ),
        Field(
            "storage",
            Enum(*STORAGE_MODES),
            "What is kept of each message: everything; the raw message and final outputs (a "
            "delivered payload is emptied); or metadata only (the raw message is emptied once "
            "delivered). A channel may set its own.",
            default="everything",
        ),
        Field("retention", Nested(RETENTION), "Pruning by age and status.", default={}),
        Field(
            "encryption",
            Nested(ENCRYPTION),
            "Message bodies and delivery payloads encrypted at rest (AES-256-GCM).",
            nullable=True,
        ),
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
            Condition(),
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
        Field("listeners", ListOf(Nested(LISTENER)), "Where messages come in.", default=[]),
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
