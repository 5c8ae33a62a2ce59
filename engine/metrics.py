"""Prometheus metrics. One registry per engine (no globals), so tests run engines side by side.

Labels stay low-cardinality: listener names, ACK codes, reason codes; never message content.
"""

from __future__ import annotations

import time
from bisect import bisect_left

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
_BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # The four metrics every message touches are reactor-thread families (see below).
        self.received = ReactorCounter(
            "switchboard_messages_received", "Messages received", ["listener"], registry=r
        )
        self.acks = ReactorCounter(
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
        self.conflicting_duplicates = Counter(
            "switchboard_conflicting_duplicates",
            "Messages with the MSH-10 and sender of an earlier one but another body, by the "
            "listener's on_conflicting_duplicate action",
            ["listener", "action"],
            registry=r,
        )
        self.reprocessed = Counter(
            "switchboard_messages_reprocessed",
            "Messages taken in again, linked to an earlier copy: a sender's resend of an "
            "errored or rejected message, an operator's replay",
            ["listener"],
            registry=r,
        )
        self.ack_latency = ReactorHistogram(
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

        self.channel_messages = ReactorCounter(
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


# Reactor-thread metric families ------------------------------------------------------------
# prometheus_client's Counter and Histogram take a lock and check their arguments on every
# update; the four updates of each message cost about 3 µs of the event loop's CPU
# (bench/, cProfile of intake). These families are only updated on the reactor thread, so a
# child is a plain attribute add, and the registry reads them when scraped. The scrape runs
# in the admin server's thread pool: copying the children (and a histogram's buckets) into a
# list happens under the GIL in one step, so it sees each child whole. Exposed exactly as
# prometheus_client's own (tests/test_metrics.py compares the two).


class _Child:
    __slots__ = ("created", "value")

    def __init__(self) -> None:
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1.0) -> None:
        self.value += amount


class _HistogramChild:
    __slots__ = ("bounds", "counts", "created", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, the last one +Inf
        self.sum = 0.0
        self.created = time.time()

    def observe(self, amount: float) -> None:
        self.counts[bisect_left(self.bounds, amount)] += 1  # le is inclusive
        self.sum += amount


class _ReactorFamily:
    def __init__(self, name: str, documentation: str, labelnames, registry) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self._children: dict[tuple[str, ...], object] = {}
        registry.register(self)

    def labels(self, *values):
        key = tuple(str(v) for v in values)
        child = self._children.get(key)
        if child is None:
            if len(key) != len(self.labelnames):
                raise ValueError(f"{self.name}: expected labels {self.labelnames}, got {values}")
            child = self._children[key] = self._new_child()
        return child

    def _new_child(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self):
        return [self._family()]

    def _family(self):  # pragma: no cover - abstract
        raise NotImplementedError


class ReactorCounter(_ReactorFamily):
    """A labelled counter updated on the reactor thread only."""

    def _new_child(self) -> _Child:
        return _Child()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self):
        family = self._family()
        for key, child in list(self._children.items()):
            family.add_metric(key, child.value, created=child.created)
        yield family


class ReactorHistogram(_ReactorFamily):
    """A labelled histogram observed on the reactor thread only."""

    def __init__(self, name, documentation, labelnames, buckets, registry) -> None:
        self.bounds = tuple(float(b) for b in buckets)
        self._les = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        super().__init__(name, documentation, labelnames, registry)

    def _new_child(self) -> _HistogramChild:
        return _HistogramChild(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self):
        family = self._family()
        for key, child in list(self._children.items()):
            counts, total = list(child.counts), child.sum
            cumulative, buckets = 0, []
            for le, n in zip(self._les, counts, strict=True):
                cumulative += n
                buckets.append((le, cumulative))
            family.add_metric(key, buckets, total)
            labels = dict(zip(self.labelnames, key, strict=True))
            family.samples.append(Sample(f"{self.name}_created", labels, child.created))
        yield family
