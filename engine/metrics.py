"""Prometheus metrics. One registry per engine (no globals), so tests run engines side by side.

Labels stay low-cardinality: listener names, ACK codes, reason codes; never message content.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "switchboard_messages_received", "Messages received", ["listener"], registry=r
        )
        self.acks = Counter(
            "switchboard_acks", "ACKs sent by MSA-1 code", ["listener", "code"], registry=r
        )
        self.rejected = Counter(
            "switchboard_messages_rejected",
            "Messages stored as rejected, by reason code",
            ["listener", "reason"],
            registry=r,
        )
        self.frame_errors = Counter(
            "switchboard_frame_errors",
            "MLLP framing problems (junk, timeouts, oversize, closed mid-frame)",
            ["listener", "reason"],
            registry=r,
        )
        self.connections = Counter(
            "switchboard_connections", "Connections accepted", ["listener"], registry=r
        )
        self.connections_refused = Counter(
            "switchboard_connections_refused",
            "Connections refused over max_connections",
            ["listener"],
            registry=r,
        )
        self.connections_open = Gauge(
            "switchboard_connections_open", "Connections open now", ["listener"], registry=r
        )
        self.duplicates = Counter(
            "switchboard_duplicates",
            "Duplicate messages answered with the first ACK",
            ["listener"],
            registry=r,
        )
        self.ack_latency = Histogram(
            "switchboard_ack_latency_seconds",
            "From a complete frame to its ACK being written",
            ["listener"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            "switchboard_store_commit_seconds",
            "Duration of one group commit",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "switchboard_store_batch_size",
            "Messages written per group commit",
            buckets=_BATCH_BUCKETS,
            registry=r,
        )
        self.store_errors = Counter(
            "switchboard_store_errors", "Failed store writes", ["listener"], registry=r
        )
        self.files = Counter(
            "switchboard_files", "Files taken from drop directories", ["listener", "outcome"],
            registry=r,
        )  # fmt: skip

        self.channel_messages = Counter(
            "switchboard_channel_messages",
            "Messages through a channel by outcome (passed, filtered, errored)",
            ["channel", "outcome"],
            registry=r,
        )
        self.step_errors = Counter(
            "switchboard_step_errors",
            "Messages a step failed, by channel and step (number and kind)",
            ["channel", "step"],
            registry=r,
        )
        self.unmapped_codes = Counter(
            "switchboard_unmapped_codes",
            "Codes a translate step found no mapping for, by table",
            ["table"],
            registry=r,
        )
        self.flagged = Counter(
            "switchboard_flagged_messages",
            "Messages a flag step marked, by channel and flag",
            ["channel", "flag"],
            registry=r,
        )

        dest = ["channel", "destination"]
        self.delivered = Counter("switchboard_delivered", "Deliveries acknowledged by the peer",
                                 dest, registry=r)  # fmt: skip
        self.retried = Counter("switchboard_delivery_retries", "Delivery attempts that will be "
                               "retried", dest, registry=r)  # fmt: skip
        self.dead = Counter("switchboard_dead_letters", "Deliveries moved to dead letter (or "
                            "held by on_failure: block)", dest, registry=r)  # fmt: skip
        self.acks_received = Counter(
            "switchboard_peer_responses",
            "Responses from destinations: MSA-1 codes and HTTP statuses",
            [*dest, "code"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "switchboard_delivery_latency_seconds",
            "From the message's commit to the peer's acknowledgement",
            dest,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800, 3600),
            registry=r,
        )
        self.destination_health = Gauge(
            "switchboard_destination_health",
            "0 healthy, 1 degraded (retrying), 2 down (failing repeatedly or blocked)",
            dest,
            registry=r,
        )
        self.queue_depth = Gauge("switchboard_queue_depth", "Deliveries not yet delivered, "
                                 "by state", [*dest, "state"], registry=r)  # fmt: skip
        self.oldest_pending_age = Gauge(
            "switchboard_queue_oldest_age_seconds",
            "Age of the oldest delivery still in the queue",
            dest,
            registry=r,
        )

        self.pruned = Counter(
            "switchboard_pruned_rows", "Rows deleted by retention, by table", ["table"],
            registry=r,
        )  # fmt: skip
        self.certificate_expiry = Gauge(
            "switchboard_certificate_expiry_seconds",
            "Seconds until a configured certificate expires (negative: expired)",
            ["listener", "kind"],
            registry=r,
        )

    def observe_commit(self, rows: int, seconds: float) -> None:
        """Writer-thread callback; prometheus_client metrics are thread-safe."""
        self.batch_size.observe(rows)
        self.commit_latency.observe(seconds)
