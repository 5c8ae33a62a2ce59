"""Start a whole engine in-process on 127.0.0.1 port 0 from YAML, for integration tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from sqlalchemy import select
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater

from engine.app import Switchboard
from engine.components import load_config
from engine.mllp.client import BlockingMLLPClient
from engine.store.schema import deliveries

DEFAULT_CHANNELS = ("adt", "lab")


def write_config(tmp_path: Path, body: str, channels=DEFAULT_CHANNELS, store: str | None = None):
    (tmp_path / "channels").mkdir(exist_ok=True)
    for name in channels:
        (tmp_path / "channels" / f"{name}.yaml").write_text(f"name: {name}\n")
    store = store or f"sqlite:///{tmp_path / 'store.db'}"
    text = f"store: {store}\n" + textwrap.dedent(body)
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return path


def start_engine(tmp_path: Path, body: str, **kw) -> Switchboard:
    config = load_config(write_config(tmp_path, body, **kw))
    engine = Switchboard(config, reactor)
    engine.startService()
    return engine


@inlineCallbacks
def settle(engine: Switchboard, timeout: float = 5.0):
    """Wait (bounded) until the store writer has nothing pending."""
    waited = 0.0
    while engine.writer.pending and waited < timeout:
        yield deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


def in_thread(fn, *args, **kw) -> Deferred:
    """Run a blocking client (python-hl7's MLLPClient) off the reactor thread."""
    return threads.deferToThread(fn, *args, **kw)


def send_all(port: int, payloads) -> list[bytes]:
    """Send each payload over one MLLP connection; the ACKs."""
    with BlockingMLLPClient("127.0.0.1", port, timeout=10) as c:
        return [c.send(p) for p in payloads]


def statuses(sb) -> list[str]:
    """Delivery statuses of a running engine, in delivery id order."""
    with sb.store.engine.connect() as conn:
        return list(conn.execute(select(deliveries.c.status).order_by(deliveries.c.id)).scalars())
