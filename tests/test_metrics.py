"""The reactor-thread metric families are exposed exactly as prometheus_client's own."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from engine.metrics import Metrics, ReactorCounter, ReactorHistogram

BUCKETS = (0.001, 0.01, 0.1, 1.0)


def samples(registry: CollectorRegistry) -> list[tuple]:
    """Every sample of the text exposition, with the _created values blanked."""
    text = generate_latest(registry).decode()
    out = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            value = None if s.name.endswith("_created") else s.value
            out.append((family.type, s.name, tuple(sorted(s.labels.items())), value))
    return sorted(out, key=repr)


def feed(counter, histogram) -> None:
    counter.labels("lab", "AA").inc()
    counter.labels("lab", "AA").inc()
    counter.labels("lab", "AE").inc(3)
    counter.labels("adt", "AA").inc()
    for v in (0.0005, 0.001, 0.002, 0.01, 0.5, 1.0, 7.0):  # on and between the bounds
        histogram.labels("lab").observe(v)
    histogram.labels("adt").observe(0.0)


def test_same_exposition_as_prometheus_client():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    feed(
        ReactorCounter("t_acks", "ACKs", ["listener", "code"], registry=ours),
        ReactorHistogram("t_latency_seconds", "latency", ["listener"], BUCKETS, registry=ours),
    )
    feed(
        Counter("t_acks", "ACKs", ["listener", "code"], registry=theirs),
        Histogram("t_latency_seconds", "latency", ["listener"], buckets=BUCKETS, registry=theirs),
    )
    assert samples(ours) == samples(theirs)
    get = ours.get_sample_value
    assert get("t_acks_total", {"listener": "lab", "code": "AE"}) == 3
    assert get("t_latency_seconds_bucket", {"listener": "lab", "le": "0.001"}) == 2
    assert get("t_latency_seconds_count", {"listener": "lab"}) == 7


def test_wrong_label_count_and_name_clash_are_errors():
    registry = CollectorRegistry()
    counter = ReactorCounter("t_x", "x", ["listener"], registry=registry)
    with pytest.raises(ValueError, match="expected labels"):
        counter.labels("a", "b")
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counter("t_x", "again", registry=registry)


def test_engine_metrics_expose_the_per_message_families():
    m = Metrics()
    m.received.labels("lab").inc()
    m.ack_latency.labels("lab").observe(0.003)
    m.channel_messages.labels("adt", "passed").inc()
    get = m.registry.get_sample_value
    assert get("switchboard_messages_received_total", {"listener": "lab"}) == 1
    assert get("switchboard_ack_latency_seconds_bucket", {"listener": "lab", "le": "0.005"}) == 1
    assert get("switchboard_channel_messages_total", {"channel": "adt", "outcome": "passed"}) == 1
