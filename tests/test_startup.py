"""Start-up order: every listener binds its address before the store or delivery start, so an
engine that cannot listen leaves no trace (no migration, no writer thread, no lease)."""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from twisted.internet import reactor

from engine.app import Switchboard
from engine.components import load_config

from .engine_harness import write_config
from .peers import wait_for


def bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


@pytest_twisted.inlineCallbacks
def test_a_busy_port_fails_before_the_store_and_delivery_start(tmp_path, busy_port):
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(
        "name: adt\ndestinations:\n  - {name: out, file: out}\n"
    )
    body = f"""
listeners:
  - {{name: free, mllp: "tcp:0:interface=127.0.0.1"}}
  - {{name: taken, mllp: "tcp:{busy_port}:interface=127.0.0.1"}}
routes:
  - {{match: {{type: ADT}}, to: [adt]}}
"""
    sb = Switchboard(load_config(write_config(tmp_path, body, channels=())), reactor)
    with pytest.raises(Exception) as caught:
        sb.startService()
    text = str(caught.value)
    assert "listener 'taken'" in text and f"tcp:{busy_port}:interface=127.0.0.1" in text
    assert not (tmp_path / "store.db").exists()  # no migration ran, no connection opened
    assert sb.writer._thread is None
    assert sb.delivery.workers == {} and not sb.delivery.running
    # the port bound before the failure is let go, so another engine could take it
    free = sb.listeners["free"].address.port
    assert (yield wait_for(lambda: bindable(free)))
