"""TLS listeners and clients over real sockets on 127.0.0.1 (protocol.md cases 62-65)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue, inlineCallbacks
from twisted.internet.endpoints import (
    clientFromString,
    connectProtocol,
    serverFromString,
    wrapClientTLS,
)
from twisted.internet.interfaces import IHandshakeListener, IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, PrivateCertificate, TLSVersion
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

from engine.certs import CLIENT_COMMON_NAME, Issued, init_certs, make_ca, make_cert
from engine.config.routes_spec import TLS
from engine.tls import (
    TLSConfigError,
    certificate_expiry,
    client_tls_options,
    peer_certificate_info,
    server_context_factory,
    wrap_server_factory,
)

TIMEOUT = 10
MLLP_FRAME = b"\x0bMSH|^~\\&|LAB|HOSP|EHR|HOSP|20240101120000||ORU^R01|MSG1|P|2.5\r\x1c\x0d"


def within(d: Deferred, seconds: float = TIMEOUT) -> Deferred:
    return d.addTimeout(seconds, reactor)


# --------------------------------------------------------------------------------------------
# Certificates


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_server_cert: Path
    other_server_key: Path
    other_client_cert: Path
    other_client_key: Path
    expired_client_cert: Path
    expired_client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    init_certs(directory)

    # The development CA from init_certs signs an expired client certificate.
    ca = Issued.load(directory / "ca.pem", directory / "ca.key")
    now = datetime.now(UTC)
    expired = make_cert(
        "expired-client",
        ca,
        purpose="client",
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    expired.write(directory / "expired.pem", directory / "expired.key")

    other = make_ca("Some other CA")
    other.write(directory / "other-ca.pem", directory / "other-ca.key")
    other_server = make_cert("127.0.0.1", other, purpose="server", hosts=["127.0.0.1"])
    other_server.write(directory / "other-server.pem", directory / "other-server.key")
    other_client = make_cert(CLIENT_COMMON_NAME, other, purpose="client")
    other_client.write(directory / "other-client.pem", directory / "other-client.key")

    return Pki(
        directory=directory,
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.pem",
        other_server_cert=directory / "other-server.pem",
        other_server_key=directory / "other-server.key",
        other_client_cert=directory / "other-client.pem",
        other_client_key=directory / "other-client.key",
        expired_client_cert=directory / "expired.pem",
        expired_client_key=directory / "expired.key",
    )


def server_tls(pki: Pki, mode: str = "none", min_version: str = "1.2", **overrides):
    """A listener's tls settings as given (not validated: some tests give bad ones on
    purpose, as a file changed on disk after the config check would)."""
    tls = {
        "cert": str(pki.server_cert),
        "key": str(pki.server_key),
        "client_ca": str(pki.ca) if mode != "none" else None,
        "require_client_cert": mode,
        "min_version": min_version,
    }
    tls.update(overrides)
    return TLS.settings(tls)


def client_options(pki: Pki, *, with_cert: bool = False, **kwargs):
    args = {
        "hostname": "127.0.0.1",
        "ca": str(pki.ca),
        "cert": str(pki.client_cert) if with_cert else None,
        "key": str(pki.client_key) if with_cert else None,
    }
    args.update(kwargs)
    return client_tls_options(**args)


# --------------------------------------------------------------------------------------------
# Protocols


@implementer(IHandshakeListener)
class EchoServer(LineReceiver):
    """Answers each line with ``ACK <line>`` and records what it saw."""

    def connectionMade(self) -> None:
        self.raw = b""
        self.lines: list[bytes] = []
        self.handshake_done = False
        self.cert_at_handshake: dict | None = None
        self.cert_at_data: dict | None = None
        self.lost: Deferred = Deferred()
        self.factory.accepted.put(self)

    def handshakeCompleted(self) -> None:
        self.handshake_done = True
        self.cert_at_handshake = peer_certificate_info(self.transport)

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)
        self.cert_at_data = peer_certificate_info(self.transport)
        self.sendLine(b"ACK " + line)

    def connectionLost(self, reason) -> None:
        self.reason = reason
        self.lost.callback(None)


@implementer(IHandshakeListener)
class LineClient(LineReceiver):
    def __init__(self) -> None:
        self.lines: DeferredQueue = DeferredQueue()
        self.handshake_done = False
        self.lost: Deferred = Deferred()

    def handshakeCompleted(self) -> None:
        self.handshake_done = True

    def lineReceived(self, line: bytes) -> None:
        self.lines.put(line)

    def connectionLost(self, reason) -> None:
        self.reason = reason
        self.lost.callback(None)


class RawClient(Protocol):
    """Plain TCP: sends ``payload`` on connect and records what comes back."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.received = b""
        self.lost: Deferred = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.payload)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.reason = reason
        self.lost.callback(None)


class Listener:
    """A TLS listener on 127.0.0.1 with an ephemeral port."""

    def __init__(self) -> None:
        self.factory = Factory.forProtocol(EchoServer)
        self.factory.accepted = DeferredQueue()
        self.port = None

    @inlineCallbacks
    def start(self, tls: dict):
        yield self.listen(wrap_server_factory(self.factory, tls))

    @inlineCallbacks
    def listen(self, factory):
        endpoint = serverFromString(reactor, "tcp:0:interface=127.0.0.1")
        self.port = yield endpoint.listen(factory)

    @property
    def port_number(self) -> int:
        return self.port.getHost().port

    def next_connection(self) -> Deferred:
        return within(self.factory.accepted.get())

    def stop(self) -> Deferred:
        return self.port.stopListening()

    def connect(self, options: IOpenSSLClientConnectionCreator, protocol=None) -> Deferred:
        tcp = clientFromString(reactor, f"tcp:127.0.0.1:{self.port_number}")
        return within(connectProtocol(wrapClientTLS(options, tcp), protocol or LineClient()))

    def connect_plain(self, payload: bytes) -> Deferred:
        tcp = clientFromString(reactor, f"tcp:127.0.0.1:{self.port_number}")
        return within(connectProtocol(tcp, RawClient(payload)))


@pytest.fixture
def listener():
    listener = Listener()
    yield listener
    if listener.port is not None:
        pytest_twisted.blockon(listener.stop())


# --------------------------------------------------------------------------------------------
# Outcomes


@inlineCallbacks
def round_trip(listener: Listener, options, line: bytes = b"PING"):
    """Connect, send one line, expect the ACK; returns (client, server) still connected."""
    client = yield listener.connect(options)
    server = yield listener.next_connection()
    client.sendLine(line)
    reply = yield within(client.lines.get())
    assert reply == b"ACK " + line
    assert server.handshake_done
    return client, server


@inlineCallbacks
def close(client, server):
    client.transport.loseConnection()
    yield within(client.lost)
    yield within(server.lost)


@inlineCallbacks
def refused(listener: Listener, options, client=None, error=SSL.Error):
    """Connect, send a line; expect the TLS handshake to fail and the server to see no data.

    Returns the client's connection-lost reason as text (the OpenSSL error).
    """
    client = yield listener.connect(options, client)
    server = yield listener.next_connection()
    client.sendLine(b"SHOULD-NOT-ARRIVE")
    yield within(client.lost)
    yield within(server.lost)
    reason = client.reason
    assert reason.check(error), f"expected {error.__name__}, got {reason.value!r}"
    assert server.raw == b""
    assert server.lines == []
    assert not server.handshake_done
    assert server.cert_at_handshake is None
    assert client.lines.pending == []
    return str(reason.value)


# --------------------------------------------------------------------------------------------
# Server-only and mutual TLS


@pytest_twisted.inlineCallbacks
def test_server_only_round_trip(pki, listener):
    yield listener.start(server_tls(pki, "none"))
    client, server = yield round_trip(listener, client_options(pki))
    assert server.transport.getHandle().get_protocol_version_name() in ("TLSv1.2", "TLSv1.3")
    # The client side sees the verified server certificate.
    server_info = peer_certificate_info(client.transport)
    assert server_info is not None
    assert server_info["subject"] == "CN=localhost,O=Switchboard development"
    assert server.cert_at_data is None
    yield close(client, server)


@pytest_twisted.inlineCallbacks
def test_require_accepts_client_certificate_and_exposes_subject(pki, listener):
    yield listener.start(server_tls(pki, "require"))
    client, server = yield round_trip(listener, client_options(pki, with_cert=True))
    info = server.cert_at_data
    assert info is not None
    assert server.cert_at_handshake == info
    client_cert = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    ca_cert = x509.load_pem_x509_certificate(pki.ca.read_bytes())
    assert info["subject"] == f"CN={CLIENT_COMMON_NAME},O=Switchboard development"
    assert info["issuer"] == ca_cert.subject.rfc4514_string()
    assert info["serial"] == format(client_cert.serial_number, "x")
    assert info["not_before"] == client_cert.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert info["not_after"] == client_cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    yield close(client, server)


@pytest.mark.parametrize(
    ("client_max", "alert"),
    [(None, "alert certificate required"), ("1.2", "alert handshake failure")],
)
@pytest_twisted.inlineCallbacks
def test_require_refuses_client_without_certificate(pki, listener, client_max, alert):
    # Case 62, over TLS 1.3 (client learns of the failure after its Finished) and TLS 1.2.
    yield listener.start(server_tls(pki, "require"))
    if client_max == "1.2":
        options = LegacyClient(SSL.TLS1_2_VERSION, pki.ca)
    else:
        options = client_options(pki)
    error = yield refused(listener, options)
    assert alert in error.lower()


@pytest_twisted.inlineCallbacks
def test_require_refuses_client_certificate_from_other_ca(pki, listener):
    yield listener.start(server_tls(pki, "require"))
    options = client_options(pki, cert=str(pki.other_client_cert), key=str(pki.other_client_key))
    error = yield refused(listener, options)
    assert "unknown ca" in error.lower()


@pytest_twisted.inlineCallbacks
def test_require_refuses_expired_client_certificate(pki, listener):
    yield listener.start(server_tls(pki, "require"))
    options = client_options(
        pki, cert=str(pki.expired_client_cert), key=str(pki.expired_client_key)
    )
    error = yield refused(listener, options)
    assert "expired" in error.lower()


@pytest_twisted.inlineCallbacks
def test_want_accepts_client_with_certificate_and_exposes_it(pki, listener):
    # Case 63 (want).
    yield listener.start(server_tls(pki, "want"))
    client, server = yield round_trip(listener, client_options(pki, with_cert=True))
    assert server.cert_at_data is not None
    assert server.cert_at_data["subject"] == f"CN={CLIENT_COMMON_NAME},O=Switchboard development"
    yield close(client, server)


@pytest_twisted.inlineCallbacks
def test_want_accepts_client_without_certificate(pki, listener):
    yield listener.start(server_tls(pki, "want"))
    client, server = yield round_trip(listener, client_options(pki))
    assert server.cert_at_handshake is None
    assert server.cert_at_data is None
    yield close(client, server)


@pytest_twisted.inlineCallbacks
def test_want_refuses_client_certificate_that_fails_verification(pki, listener):
    # "want" verifies a presented certificate: one from another CA fails the handshake.
    yield listener.start(server_tls(pki, "want"))
    options = client_options(pki, cert=str(pki.other_client_cert), key=str(pki.other_client_key))
    error = yield refused(listener, options)
    assert "unknown ca" in error.lower()


@pytest_twisted.inlineCallbacks
def test_none_accepts_client_certificate_but_exposes_nothing(pki, listener):
    # Case 63 (none): the server never asks, so no certificate data is exposed.
    yield listener.start(server_tls(pki, "none"))
    client, server = yield round_trip(listener, client_options(pki, with_cert=True))
    assert server.cert_at_handshake is None
    assert server.cert_at_data is None
    assert server.transport.getHandle().get_peer_certificate() is None
    yield close(client, server)


@pytest_twisted.inlineCallbacks
def test_none_ignores_client_ca(pki, listener):
    # A client_ca left in the settings does not turn client authentication on in "none" mode.
    yield listener.start(server_tls(pki, "none", client_ca=str(pki.ca)))
    client, server = yield round_trip(listener, client_options(pki, with_cert=True))
    assert server.cert_at_data is None
    yield close(client, server)


# --------------------------------------------------------------------------------------------
# Client-side verification


@pytest_twisted.inlineCallbacks
def test_client_refuses_server_certificate_from_untrusted_ca(pki, listener):
    # Case 64.
    tls = server_tls(pki, "none", cert=str(pki.other_server_cert), key=str(pki.other_server_key))
    yield listener.start(tls)
    error = yield refused(listener, client_options(pki))
    assert "certificate verify failed" in error.lower()


@pytest_twisted.inlineCallbacks
def test_client_refuses_server_certificate_for_another_host(pki, listener):
    yield listener.start(server_tls(pki, "none"))
    # The server certificate names localhost, 127.0.0.1 and ::1 only.
    options = client_options(pki, hostname="switchboard.example")
    error = yield refused(listener, options, error=VerificationError)
    assert "switchboard.example" in error


@pytest_twisted.inlineCallbacks
def test_client_with_platform_trust_refuses_development_ca(pki, listener):
    yield listener.start(server_tls(pki, "none"))
    error = yield refused(listener, client_options(pki, ca=None))
    assert "certificate verify failed" in error.lower()


@pytest_twisted.inlineCallbacks
def test_client_accepts_server_by_dns_name(pki, listener):
    yield listener.start(server_tls(pki, "require"))
    client, server = yield round_trip(
        listener, client_options(pki, hostname="localhost", with_cert=True)
    )
    assert server.cert_at_data is not None
    yield close(client, server)


# --------------------------------------------------------------------------------------------
# Protocol versions


@implementer(IOpenSSLClientConnectionCreator)
class LegacyClient:
    """A bare OpenSSL client capped at ``max_version``, with legacy protocols allowed.

    Security level 0 lets the client offer TLS 1.0/1.1 at all, so a refusal can only come from
    the server's floor.
    """

    def __init__(self, max_version: int, ca: Path) -> None:
        self.context = SSL.Context(SSL.TLS_METHOD)
        self.context.set_min_proto_version(SSL.TLS1_VERSION)
        self.context.set_max_proto_version(max_version)
        self.context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")
        self.context.load_verify_locations(str(ca))
        self.context.set_verify(SSL.VERIFY_PEER)

    def clientConnectionForTLS(self, tls_protocol) -> SSL.Connection:
        return SSL.Connection(self.context, None)


@pytest.mark.parametrize(
    ("server_min", "refused_max", "accepted_max"),
    [
        ("1.2", SSL.TLS1_1_VERSION, SSL.TLS1_2_VERSION),
        ("1.2", SSL.TLS1_VERSION, SSL.TLS1_2_VERSION),
        ("1.3", SSL.TLS1_2_VERSION, SSL.TLS1_3_VERSION),
    ],
)
@pytest_twisted.inlineCallbacks
def test_minimum_version_refuses_older_client(pki, listener, server_min, refused_max, accepted_max):
    yield listener.start(server_tls(pki, "none", min_version=server_min))
    # Control: the same kind of client at the floor gets through.
    client, server = yield round_trip(listener, LegacyClient(accepted_max, pki.ca))
    yield close(client, server)

    error = yield refused(listener, LegacyClient(refused_max, pki.ca))
    # The server answered the ClientHello with a protocol_version alert.
    assert "alert protocol version" in error.lower()


@pytest_twisted.inlineCallbacks
def test_client_minimum_version_refuses_older_server(pki, listener):
    # A server capped at TLS 1.2 (built by hand: server_context_factory has no maximum).
    identity = PrivateCertificate.loadPEM(
        pki.server_cert.read_bytes() + pki.server_key.read_bytes()
    )
    capped = CertificateOptions(
        privateKey=identity.privateKey.original,
        certificate=identity.original,
        lowerMaximumSecurityTo=TLSVersion.TLSv1_2,
    )
    yield listener.listen(TLSMemoryBIOFactory(capped, False, listener.factory))
    # Control: a default client gets through; a client with a 1.3 floor does not.
    client, server = yield round_trip(listener, client_options(pki))
    assert server.transport.getHandle().get_protocol_version_name() == "TLSv1.2"
    yield close(client, server)
    error = yield refused(listener, client_options(pki, min_version="1.3"))
    assert "protocol version" in error.lower()


# --------------------------------------------------------------------------------------------
# Plain TCP on a TLS port (case 65)


@pytest_twisted.inlineCallbacks
def test_plain_tcp_to_tls_port_closes_that_connection_only(pki, listener):
    yield listener.start(server_tls(pki, "require"))
    # An established TLS connection before the stray plain-TCP peer arrives.
    first, first_server = yield round_trip(listener, client_options(pki, with_cert=True))

    raw = yield listener.connect_plain(MLLP_FRAME)
    raw_server = yield listener.next_connection()
    yield within(raw.lost)
    yield within(raw_server.lost)
    assert raw_server.raw == b""
    assert raw_server.lines == []
    assert not raw_server.handshake_done
    # Whatever the server wrote back (at most a TLS alert record) is not an MLLP frame.
    assert not raw.received.startswith(b"\x0b")

    # The earlier connection still works, and so does a new one.
    first.sendLine(b"AGAIN")
    assert (yield within(first.lines.get())) == b"ACK AGAIN"
    second, second_server = yield round_trip(listener, client_options(pki, with_cert=True))
    assert second_server.cert_at_data is not None
    yield close(first, first_server)
    yield close(second, second_server)


# --------------------------------------------------------------------------------------------
# Configuration errors


def test_missing_certificate_file_is_named(pki, tmp_path):
    missing = tmp_path / "nope.pem"
    with pytest.raises(TLSConfigError) as raised:
        server_context_factory(server_tls(pki, cert=str(missing)))
    message = str(raised.value)
    assert str(missing) in message
    assert "cannot read certificate file" in message
    assert "check the path" in message


def test_missing_client_ca_file_is_named(pki, tmp_path):
    missing = tmp_path / "no-ca.pem"
    with pytest.raises(TLSConfigError, match="cannot read client CA file") as raised:
        server_context_factory(server_tls(pki, "require", client_ca=str(missing)))
    assert str(missing) in str(raised.value)


def test_mismatched_key_is_reported(pki):
    with pytest.raises(TLSConfigError) as raised:
        server_context_factory(server_tls(pki, key=str(pki.client_key)))
    message = str(raised.value)
    assert str(pki.client_key) in message
    assert str(pki.server_cert) in message
    assert "does not match" in message


def test_mismatched_client_key_is_reported(pki):
    with pytest.raises(TLSConfigError, match="does not match"):
        client_options(pki, cert=str(pki.client_cert), key=str(pki.server_key))


def test_ca_file_without_certificate_is_reported(pki):
    with pytest.raises(TLSConfigError) as raised:
        server_context_factory(server_tls(pki, "require", client_ca=str(pki.server_key)))
    message = str(raised.value)
    assert str(pki.server_key) in message
    assert "no readable PEM certificate" in message


def test_key_file_without_key_is_reported(pki):
    with pytest.raises(TLSConfigError, match="no readable PEM private key"):
        server_context_factory(server_tls(pki, key=str(pki.server_cert)))


def test_encrypted_key_is_reported(pki, tmp_path):
    key = serialization.load_pem_private_key(pki.server_key.read_bytes(), password=None)
    encrypted = tmp_path / "encrypted.key"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(TLSConfigError, match="is encrypted"):
        server_context_factory(server_tls(pki, key=str(encrypted)))


@pytest.mark.parametrize("mode", ["want", "require"])
def test_client_auth_without_client_ca_is_reported(pki, mode):
    with pytest.raises(TLSConfigError, match="no client_ca is set"):
        server_context_factory(server_tls(pki, mode, client_ca=None))


def test_unknown_settings_are_reported(pki):
    with pytest.raises(TLSConfigError, match=r"min_version '1\.1'"):
        server_context_factory(server_tls(pki, min_version="1.1"))
    with pytest.raises(TLSConfigError, match="require_client_cert 'maybe'"):
        server_context_factory(server_tls(pki, "maybe"))
    with pytest.raises(TLSConfigError, match="both cert and key"):
        client_options(pki, cert=str(pki.client_cert), key=None)


def test_certificate_chain_file_is_accepted(pki, tmp_path):
    chain = tmp_path / "chain.pem"
    chain.write_bytes(pki.server_cert.read_bytes() + pki.ca.read_bytes())
    options = server_context_factory(server_tls(pki, cert=str(chain)))
    assert len(options.extraCertChain) == 1


def test_certificate_expiry(pki):
    cert = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
    expiry = certificate_expiry(pki.server_cert)
    assert expiry == cert.not_valid_after_utc
    assert expiry.tzinfo is not None
    assert certificate_expiry(pki.expired_client_cert) < datetime.now(UTC)


def test_peer_certificate_info_of_plain_transport_is_none():
    assert peer_certificate_info(StringTransport()) is None
    assert peer_certificate_info(object()) is None
