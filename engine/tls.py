"""TLS for listeners and destinations: context factories, wrapping and peer certificates.

A listener's TLS settings are its validated ``tls`` settings (engine.config.routes_spec.TLS):
``cert`` (PEM; the leaf first, then any intermediate certificates), ``key`` (unencrypted PEM
private key matching the leaf), ``client_ca`` (PEM CA certificate(s) for client certificates,
or None), ``require_client_cert`` (none, want, require) and ``min_version`` (1.2, 1.3).

Client authentication follows Camel's NONE/WANT/REQUIRE: ``none`` never asks for a client
certificate; ``want`` asks, verifies a presented certificate against ``client_ca`` (a bad one
fails the handshake) and accepts clients without one; ``require`` fails the handshake unless the
client presents a certificate signed by ``client_ca``.

``wrap_server_factory`` puts TLS on top of any plain server factory, so any Twisted server
endpoint (``tcp:0:interface=127.0.0.1``) can carry TLS. A peer that sends something other than a
TLS handshake loses its own connection only.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProtocolFactory,
)
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    KeyPair,
    PrivateCertificate,
    TLSVersion,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer

TLS_VERSIONS = {"1.2": TLSVersion.TLSv1_2, "1.3": TLSVersion.TLSv1_3}
CLIENT_CERT_MODES = ("none", "want", "require")


class TLSConfigError(Exception):
    """TLS settings that cannot work: unreadable files, a key not matching its certificate..."""


def _read(path: str | Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        reason = e.strerror or str(e)
        raise TLSConfigError(
            f"cannot read {what} file {path}: {reason}; check the path and its permissions"
        ) from e


def load_certificates(path: str | Path, what: str = "certificate") -> list[x509.Certificate]:
    """All PEM certificates in ``path``, in file order; TLSConfigError when there are none."""
    data = _read(path, what)
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise TLSConfigError(
            f"{what} file {path} contains no readable PEM certificate "
            "('-----BEGIN CERTIFICATE-----'); point it at a PEM certificate file"
        ) from e
    return certificates


def load_private_key(path: str | Path) -> PrivateKeyTypes:
    """The unencrypted PEM private key in ``path``; TLSConfigError otherwise."""
    data = _read(path, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError as e:
        raise TLSConfigError(
            f"private key file {path} is encrypted; Switchboard needs an unencrypted key "
            "(decrypt it with 'openssl pkey -in KEY -out NEWKEY' and keep it mode 0600)"
        ) from e
    except (ValueError, UnsupportedAlgorithm) as e:
        raise TLSConfigError(
            f"private key file {path} contains no readable PEM private key "
            "('-----BEGIN PRIVATE KEY-----'); point it at the key of the certificate"
        ) from e


def _public_key_der(key: Any) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _load_identity(
    cert_path: str | Path, key_path: str | Path
) -> tuple[crypto.X509, crypto.PKey, list[crypto.X509]]:
    """Leaf certificate, its key and the rest of the chain, as pyOpenSSL objects."""
    chain = load_certificates(cert_path, "certificate")
    key = load_private_key(key_path)
    if _public_key_der(chain[0].public_key()) != _public_key_der(key.public_key()):
        raise TLSConfigError(
            f"private key file {key_path} does not match the certificate in {cert_path} "
            "(the first certificate in the file must be the one issued for this key); "
            "use the key the certificate was issued for"
        )
    return (
        crypto.X509.from_cryptography(chain[0]),
        crypto.PKey.from_cryptography_key(key),
        [crypto.X509.from_cryptography(c) for c in chain[1:]],
    )


def _tls_version(min_version: str) -> Any:
    try:
        return TLS_VERSIONS[str(min_version)]
    except KeyError:
        raise TLSConfigError(
            f"min_version {min_version!r} is not supported; use one of {', '.join(TLS_VERSIONS)}"
        ) from None


def server_context_factory(tls: Any) -> CertificateOptions:
    """Server-side TLS options for a listener (``tls``: its validated tls settings, see
    engine.config.routes_spec.TLS)."""
    mode = tls.require_client_cert or "none"
    if mode not in CLIENT_CERT_MODES:
        raise TLSConfigError(
            f"require_client_cert {mode!r} is not supported; use one of "
            f"{', '.join(CLIENT_CERT_MODES)}"
        )
    minimum = _tls_version(tls.min_version)
    certificate, key, extra_chain = _load_identity(tls.cert, tls.key)

    ca_certs: list[crypto.X509] | None = None
    if mode != "none":
        client_ca = tls.client_ca
        if not client_ca:
            raise TLSConfigError(
                f"require_client_cert is {mode!r} but no client_ca is set; set client_ca to "
                "the PEM file of the CA that signs client certificates"
            )
        ca_certs = [
            crypto.X509.from_cryptography(c) for c in load_certificates(client_ca, "client CA")
        ]

    options = CertificateOptions(
        privateKey=key,
        certificate=certificate,
        extraCertChain=extra_chain or None,
        verify=mode != "none",
        caCerts=ca_certs,
        requireCertificate=mode == "require",
        raiseMinimumTo=minimum,
    )
    try:
        # Build the OpenSSL context now so that bad settings fail at start-up, not per connection.
        options.getContext()
    except SSL.Error as e:
        raise TLSConfigError(f"OpenSSL rejected the TLS settings for {tls.cert}: {e}") from e
    return options


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerTLS:
    """The server side of TLS for one listener, whose certificate and key can be read again
    (SIGHUP, switchboard reload): new connections use the new ones, established connections
    keep theirs."""

    def __init__(self, tls: Any):
        self.options = server_context_factory(tls)

    def reload(self, tls: Any) -> None:
        """Read the files again; on any problem raise TLSConfigError and keep the old ones."""
        self.options = server_context_factory(tls)

    def serverConnectionForTLS(self, protocol) -> SSL.Connection:
        return SSL.Connection(self.options.getContext(), None)


def serve_tls(factory: IProtocolFactory, tls: Any) -> tuple[TLSMemoryBIOFactory, Any]:
    """``factory`` speaking TLS (listen on any plain server endpoint with it), and its
    ReloadableServerTLS, which reads the certificate again on reload."""
    creator = ReloadableServerTLS(tls)
    return TLSMemoryBIOFactory(creator, False, factory), creator


def wrap_server_factory(factory: IProtocolFactory, tls: Any) -> TLSMemoryBIOFactory:
    """``factory`` speaking TLS, when nothing reloads its certificate."""
    return serve_tls(factory, tls)[0]


def _utc_iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def certificate_info(certificate: x509.Certificate) -> dict[str, str]:
    """Subject and issuer (RFC 4514), serial (lowercase hex), validity (ISO 8601 UTC)."""
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": format(certificate.serial_number, "x"),
        "not_before": _utc_iso(certificate.not_valid_before_utc),
        "not_after": _utc_iso(certificate.not_valid_after_utc),
    }


def peer_certificate_info(transport: Any) -> dict[str, str] | None:
    """The verified peer certificate of a TLS transport, after the handshake.

    On a listener this is the client certificate. None for a plain transport, before the
    handshake, when the peer presented no certificate, and whenever the certificate was not
    verified (``none`` mode): unverified data is never exposed.

    Contexts built here verify with OpenSSL's own check and no override callback, so a completed
    handshake with VERIFY_PEER set means the certificate chained to the configured CA.
    """
    get_handle = getattr(transport, "getHandle", None)
    connection = get_handle() if get_handle is not None else None
    if not isinstance(connection, SSL.Connection):
        return None
    if not connection.get_verify_mode() & SSL.VERIFY_PEER:
        return None
    if not connection.get_verified_chain():
        return None
    certificate = connection.get_peer_certificate(as_cryptography=True)
    if certificate is None:
        return None
    return certificate_info(certificate)


def client_tls_options(
    hostname: str,
    ca: str | None,
    cert: str | None,
    key: str | None,
    min_version: str = "1.2",
) -> IOpenSSLClientConnectionCreator:
    """Client-side TLS options for connecting to ``hostname`` (a DNS name or an IP address).

    The server certificate must be valid for ``hostname`` and chain to a certificate in ``ca``
    (a PEM file), or to the platform's trusted CAs when ``ca`` is None. ``cert`` and ``key``,
    given together, are the client certificate presented for mutual TLS.
    """
    if (cert is None) != (key is None):
        raise TLSConfigError(
            "a client certificate needs both cert and key; set both or neither "
            f"(cert={cert!r}, key={key!r})"
        )
    trust_root = None
    if ca is not None:
        trust_root = trustRootFromCertificates(
            [Certificate(crypto.X509.from_cryptography(c)) for c in load_certificates(ca, "CA")]
        )
    extra: dict[str, Any] = {"raiseMinimumTo": _tls_version(min_version)}
    client_certificate = None
    if cert is not None and key is not None:
        certificate, private_key, extra_chain = _load_identity(cert, key)
        client_certificate = PrivateCertificate.fromCertificateAndKeyPair(
            Certificate(certificate), KeyPair(private_key)
        )
        if extra_chain:
            extra["extraCertChain"] = extra_chain
    return optionsForClientTLS(
        hostname,
        trustRoot=trust_root,
        clientCertificate=client_certificate,
        extraCertificateOptions=extra,
    )


def certificate_expiry(path: str | Path) -> datetime:
    """``not_after`` (UTC) of the first certificate in the PEM file ``path``."""
    return load_certificates(path)[0].not_valid_after_utc
