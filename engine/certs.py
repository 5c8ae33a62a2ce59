"""Development certificates: a private CA, a server and a client certificate.

``init_certs`` writes a ready-to-use set for local testing of TLS and mutual TLS; ``make_ca`` and
``make_cert`` are the building blocks, also used by the tests to create expired certificates or
certificates from an unrelated CA. Keys are EC P-256, files are unencrypted PEM, private key files
are readable by their owner only. Not meant for production certificates.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
DEFAULT_DAYS = 825
CA_COMMON_NAME = "Switchboard development CA"
CLIENT_COMMON_NAME = "switchboard-dev-client"

# Files written by init_certs, in this order: (certificate, key) per identity.
CA_FILES = ("ca.pem", "ca.key")
SERVER_FILES = ("server.pem", "server.key")
CLIENT_FILES = ("client.pem", "client.key")

# Backdate validity a little so a peer whose clock lags slightly still accepts new certificates.
_CLOCK_SKEW = timedelta(minutes=5)

Purpose = Literal["server", "client"]
_USAGES = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH}


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def load(cls, cert_path: Path, key_path: Path) -> Issued:
        """Read an EC certificate and key written by ``write`` (e.g. the CA from init_certs)."""
        certificate = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path} is not an EC private key")
        return cls(certificate, key)

    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write(self, cert_path: Path, key_path: Path) -> None:
        """Write the certificate (mode 0644) and the key (mode 0600) as PEM."""
        _write_file(cert_path, self.cert_pem(), 0o644)
        _write_file(key_path, self.key_pem(), 0o600)


def _write_file(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        # The mode given to os.open only applies to new files; enforce it on overwrite as well.
        os.fchmod(fd, mode)
        os.write(fd, data)
    finally:
        os.close(fd)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Switchboard development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _validity(
    days: int, not_before: datetime | None, not_after: datetime | None
) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else datetime.now(UTC) - _CLOCK_SKEW
    end = not_after if not_after is not None else start + _CLOCK_SKEW + timedelta(days=days)
    if end <= start:
        raise ValueError(f"certificate validity ends ({end}) before it starts ({start})")
    return start, end


def subject_alt_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    """SubjectAltName entries for host names and IP addresses (told apart by parsing)."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_ca(
    common_name: str = CA_COMMON_NAME,
    *,
    days: int = DEFAULT_DAYS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A self-signed CA certificate allowed to sign leaf certificates (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, not_before, not_after)
    name = _name(common_name)
    public_key = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def make_cert(
    common_name: str,
    issuer: Issued,
    *,
    purpose: Purpose,
    hosts: Sequence[str] = (),
    days: int = DEFAULT_DAYS,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> Issued:
    """A leaf certificate signed by ``issuer``.

    ``purpose`` sets the extended key usage (serverAuth or clientAuth). ``hosts`` become
    SubjectAltNames; a server certificate needs at least one, since TLS clients check the
    host name against the SubjectAltNames only. Pass ``not_before``/``not_after`` to create
    e.g. an expired certificate.
    """
    if purpose == "server" and not hosts:
        raise ValueError("a server certificate needs at least one host name or IP address")
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, not_before, not_after)
    usage = _USAGES[purpose]
    public_key = key.public_key()
    issuer_ski = issuer.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.certificate.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski.value),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(subject_alt_names(hosts)), critical=False
        )
    return Issued(builder.sign(issuer.key, hashes.SHA256()), key)


def init_certs(
    directory: Path,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    days: int = DEFAULT_DAYS,
    force: bool = False,
) -> list[Path]:
    """Create a development CA, a server and a client certificate in ``directory``.

    Returns the six paths written: ca.pem, ca.key, server.pem, server.key, client.pem,
    client.key. Without ``force``, raises FileExistsError before writing anything when any of
    them exists.
    """
    hosts = list(hosts)
    if not hosts:
        raise ValueError("init_certs needs at least one host name or IP address for the server")
    if days < 1:
        raise ValueError(f"days must be at least 1, not {days}")
    directory = Path(directory)
    paths = [directory / name for name in (*CA_FILES, *SERVER_FILES, *CLIENT_FILES)]
    if not force:
        for path in paths:
            if path.exists():
                raise FileExistsError(
                    f"{path} already exists; remove it or pass --force to overwrite "
                    "the development certificates"
                )
    directory.mkdir(parents=True, exist_ok=True)

    ca = make_ca(days=days)
    server = make_cert(hosts[0], ca, purpose="server", hosts=hosts, days=days)
    # Strict verifiers (e.g. cryptography's client verifier) want a SubjectAltName on clients too.
    client = make_cert(
        CLIENT_COMMON_NAME, ca, purpose="client", hosts=[CLIENT_COMMON_NAME], days=days
    )
    for issued, (cert_path, key_path) in zip(
        (ca, server, client), (paths[0:2], paths[2:4], paths[4:6]), strict=True
    ):
        issued.write(cert_path, key_path)
    return paths
