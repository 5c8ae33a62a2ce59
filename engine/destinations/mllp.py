"""MLLP destination: the message as ER7 to a peer that ACKs it."""

from __future__ import annotations

from engine.config import Field, Spec
from engine.config.external import EndpointString, FilePath
from engine.config.scalars import Duration, Enum, Int, String
from engine.config.spec import Nested
from engine.destinations.base import Destination, destination_kind

RETRY = Spec(
    "retry",
    "How often and how long a failed delivery is tried again.",
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
    ),
)


@destination_kind(
    "mllp",
    "Send the message over MLLP and wait for its ACK.",
    (
        Field("mllp", EndpointString(server=False), "Where to connect.", required=True,
              example="tcp:epic.example.org:6661"),
        Field("ack_timeout", Duration(), "How long to wait for the ACK.", default="30s"),
        Field("retry", Nested(RETRY), "Retry policy.", default={}),
        Field("on_failure", Enum("dead_letter", "block"), "When retries are spent: move the "
              "message to dead letter and go on, or hold the queue.", default="dead_letter"),
        Field("tls", Nested(CLIENT_TLS), "TLS options.", nullable=True),
    ),
)  # fmt: skip
class MLLPDestination(Destination):
    pass
