"""MLLP over TLS and mutual TLS on a running engine, with certificates from `certs init`."""

from __future__ import annotations

import socket
import ssl

import pytest
import pytest_twisted
from sqlalchemy import select

from engine.certs import init_certs
from engine.mllp.client import BlockingMLLPClient, MLLPClientError, ack_code, tls_context
from engine.mllp.framing import frame
from engine.store.schema import messages

from .engine_harness import in_thread, start_engine

MSG = b"MSH|^~\\&|SND|SF|RCV|RF|2024||ADT^A01|T1|P|2.5\rPID|1\r"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    init_certs(d)
    return d


def tls_config(certs, mode: str) -> str:
    return f"""
listeners:
  - name: tls-in
    mllp: "tcp:0:interface=127.0.0.1"
    tls:
      cert: {certs / "server.pem"}
      key: {certs / "server.key"}
      client_ca: {certs / "ca.pem"}
      require_client_cert: {mode}
routes:
  - {{match: {{type: ADT}}, to: [adt]}}
"""


@pytest.fixture
def mtls_engine(tmp_path, certs):
    sb = start_engine(tmp_path, tls_config(certs, "require"))
    yield sb
    pytest_twisted.blockon(sb.stopService())


def stored(sb):
    with sb.store.engine.connect() as conn:
        return conn.execute(select(messages.c.control_id, messages.c.peer_cert)).all()


@pytest_twisted.inlineCallbacks
def test_mutual_tls_with_client_certificate(mtls_engine, certs):
    port = mtls_engine.port_of("tls-in")
    ctx = tls_context(str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client.key"))

    def run():
        with BlockingMLLPClient("127.0.0.1", port, timeout=10, tls=ctx,
                                server_hostname="localhost") as c:  # fmt: skip
            return ack_code(c.send(MSG))

    assert (yield in_thread(run)) == "AA"
    ((control_id, peer_cert),) = stored(mtls_engine)
    assert control_id == "T1" and "CN=switchboard-dev-client" in peer_cert


@pytest_twisted.inlineCallbacks
def test_no_client_certificate_refused_nothing_stored(mtls_engine, certs):  # case 62
    port = mtls_engine.port_of("tls-in")
    ctx = tls_context(str(certs / "ca.pem"), None, None)

    def run():
        try:
            with BlockingMLLPClient("127.0.0.1", port, timeout=10, tls=ctx,
                                    server_hostname="localhost") as c:  # fmt: skip
                c.send(MSG)
        except (ssl.SSLError, OSError, MLLPClientError) as exc:
            return type(exc).__name__
        return "accepted"

    assert (yield in_thread(run)) != "accepted"
    assert stored(mtls_engine) == []


@pytest_twisted.inlineCallbacks
def test_plain_tcp_on_tls_port_closes_only_that_connection(mtls_engine, certs):  # case 65
    port = mtls_engine.port_of("tls-in")
    ctx = tls_context(str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client.key"))

    def run():
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(frame(MSG))
        data = b""
        try:
            while chunk := s.recv(4096):
                data += chunk
        except OSError:
            pass
        s.close()
        with BlockingMLLPClient("127.0.0.1", port, timeout=10, tls=ctx,
                                server_hostname="localhost") as c:  # fmt: skip
            return data, ack_code(c.send(MSG.replace(b"T1", b"T2")))

    data, code = yield in_thread(run)
    assert b"MSA" not in data  # no ACK in clear text
    assert code == "AA"
    assert [r[0] for r in stored(mtls_engine)] == ["T2"]


@pytest_twisted.inlineCallbacks
def test_server_only_tls_untrusted_server_refused_by_client(tmp_path, certs, tmp_path_factory):
    sb = start_engine(tmp_path, tls_config(certs, "none"))
    other = tmp_path_factory.mktemp("other-ca")
    init_certs(other)
    port = sb.port_of("tls-in")

    def run(ca):
        ctx = tls_context(str(ca), None, None)
        try:
            with BlockingMLLPClient("127.0.0.1", port, timeout=10, tls=ctx,
                                    server_hostname="localhost") as c:  # fmt: skip
                return ack_code(c.send(MSG))
        except ssl.SSLCertVerificationError:
            return "untrusted"

    try:
        assert (yield in_thread(run, certs / "ca.pem")) == "AA"
        assert (yield in_thread(run, other / "ca.pem")) == "untrusted"  # case 64
    finally:
        yield sb.stopService()


@pytest_twisted.inlineCallbacks
def test_certificate_expiry_metric(tmp_path, certs):
    import time

    from engine.tls import certificate_expiry

    sb = start_engine(tmp_path, tls_config(certs, "require"))
    try:
        get = sb.metrics.registry.get_sample_value
        labels = {"listener": "tls-in", "kind": "server"}
        expected = certificate_expiry(certs / "server.pem").timestamp() - time.time()
        assert abs(get("switchboard_certificate_expiry_seconds", labels) - expected) < 5
        assert expected > 800 * 86400  # certs init: 825 days
        ca = get("switchboard_certificate_expiry_seconds",
                 {"listener": "tls-in", "kind": "client_ca"})  # fmt: skip
        assert ca > 0
    finally:
        yield sb.stopService()


@pytest_twisted.inlineCallbacks
def test_allow_subjects(tmp_path, certs):
    config = tls_config(certs, "require").replace(
        "require_client_cert: require",
        "require_client_cert: require\n    allow_subjects: ['CN=someone-else*']",
    )
    sb = start_engine(tmp_path, config)
    ctx = tls_context(str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client.key"))

    def run():
        try:
            with BlockingMLLPClient("127.0.0.1", sb.port_of("tls-in"), timeout=10, tls=ctx,
                                    server_hostname="localhost") as c:  # fmt: skip
                return ack_code(c.send(MSG))
        except (OSError, MLLPClientError) as exc:
            return type(exc).__name__

    try:
        assert (yield in_thread(run)) != "AA"  # a valid certificate, but not an allowed subject
        assert stored(sb) == []
    finally:
        yield sb.stopService()


@pytest_twisted.inlineCallbacks
def test_certificate_reload_keeps_established_connections(tmp_path, certs, tmp_path_factory):
    import shutil

    live = tmp_path / "live-certs"
    shutil.copytree(certs, live)
    sb = start_engine(tmp_path, tls_config(live, "none"))
    ctx = tls_context(str(live / "ca.pem"), None, None)
    port = sb.port_of("tls-in")
    client = yield in_thread(BlockingMLLPClient, "127.0.0.1", port, timeout=10, tls=ctx,
                             server_hostname="localhost")  # fmt: skip
    try:
        assert ack_code((yield in_thread(client.send, MSG))) == "AA"
        old_serial = client.sock.getpeercert()["serialNumber"]
        # renew: a new server certificate from the same CA, written over the old files
        from engine.certs import Issued, make_cert

        ca = Issued.load(live / "ca.pem", live / "ca.key")
        make_cert("localhost", ca, purpose="server", hosts=["localhost", "127.0.0.1"]).write(
            live / "server.pem", live / "server.key")  # fmt: skip
        ok, lines = yield sb.reload()
        assert ok, lines
        # the established connection still works ...
        assert ack_code((yield in_thread(client.send, MSG.replace(b"T1", b"T2")))) == "AA"
        # ... and a new one gets the new certificate
        fresh = yield in_thread(BlockingMLLPClient, "127.0.0.1", port, timeout=10, tls=ctx,
                                server_hostname="localhost")  # fmt: skip
        assert fresh.sock.getpeercert()["serialNumber"] != old_serial
        fresh.close()
    finally:
        client.close()
        yield sb.stopService()


@pytest_twisted.inlineCallbacks
def test_admin_over_mutual_tls(tmp_path, certs):
    import json
    import urllib.error
    import urllib.request

    sb = start_engine(tmp_path, f"""
listeners:
  - {{name: in, mllp: "tcp:0:interface=127.0.0.1"}}
admin:
  listen: "tcp:0:interface=127.0.0.1"
  token: secret
  tls: {{cert: {certs / "server.pem"}, key: {certs / "server.key"},
         client_ca: {certs / "ca.pem"}, require_client_cert: require}}
""")  # fmt: skip
    url = f"https://localhost:{sb.port_of('admin')}"

    def call(path, cert=True, method="GET"):
        ctx = tls_context(str(certs / "ca.pem"), str(certs / "client.pem") if cert else None,
                          str(certs / "client.key") if cert else None)  # fmt: skip
        data = b"{}" if method == "POST" else None
        headers = {"Authorization": "Bearer secret"}
        req = urllib.request.Request(url + path, method=method, data=data, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
                return resp.status, json.loads(resp.read())
        except (urllib.error.URLError, OSError) as exc:
            return "refused", str(exc)

    try:
        status, body = yield in_thread(call, "/api/status")
        assert status == 200 and body["listeners"][0]["name"] == "in"
        status, _ = yield in_thread(call, "/api/status", cert=False)
        assert status == "refused"  # no client certificate: no handshake
        yield in_thread(call, "/api/reload", method="POST")
        status, audit = yield in_thread(call, "/api/audit")
        assert status == 200
        assert audit["entries"][0]["action"] == "reload"
        assert audit["entries"][0]["actor"] == "cert:switchboard-dev-client"
    finally:
        yield sb.stopService()
