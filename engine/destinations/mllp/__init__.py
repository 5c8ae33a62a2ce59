"""MLLP destination: the message as ER7 to a peer that ACKs it."""

from __future__ import annotations

from engine.config import Field
from engine.config.fieldtypes import EndpointString
from engine.config.scalars import Duration, Enum
from engine.config.spec import Nested
from engine.destinations.base import CLIENT_TLS, Destination, destination_kind


@destination_kind(
    "mllp",
    "Send the message over MLLP and wait for its ACK.",
    (
        Field("mllp", EndpointString(server=False), "Where to connect.", required=True,
              example="tcp:epic.example.org:6661"),
        Field("ack_timeout", Duration(), "How long to wait for the ACK.", default="30s"),
        Field("connect_timeout", Duration(), "How long to wait for the connection (and the "
              "TLS handshake) before the attempt counts as failed.", default="30s"),
        Field("on_reject", Enum("dead", "retry"), "An AR/CR from the peer: dead letter at once "
              "(HL7: rejected, sending again will not help) or retry.", default="dead"),
        Field("on_error", Enum("retry", "dead"), "An AE/CE from the peer: retry per the policy, "
              "or dead letter at once.", default="retry"),
        Field("tls", Nested(CLIENT_TLS), "TLS options.", nullable=True),
    ),
)  # fmt: skip
class MLLPDestination(Destination):
    def sender(self, ctx):
        from engine.destinations.mllp.sender import MLLPSender

        return MLLPSender(self.config, ctx)
