"""Development certificates from engine.certs."""

from __future__ import annotations

import ipaddress
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from engine.certs import (
    CLIENT_COMMON_NAME,
    Issued,
    init_certs,
    make_ca,
    make_cert,
    subject_alt_names,
)

FILES = ["ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"]


def load_cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def certs_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "certs"
    init_certs(directory)
    return directory


def test_init_certs_writes_six_files(tmp_path):
    directory = tmp_path / "nested" / "certs"
    paths = init_certs(directory)
    assert paths == [directory / name for name in FILES]
    for path in paths:
        assert path.is_file() and path.stat().st_size > 0
    for key in ("ca.key", "server.key", "client.key"):
        assert mode(directory / key) == 0o600
        private_key = load_pem_private_key((directory / key).read_bytes(), password=None)
        assert isinstance(private_key, ec.EllipticCurvePrivateKey)
        assert private_key.curve.name == "secp256r1"
    for cert in ("ca.pem", "server.pem", "client.pem"):
        assert mode(directory / cert) == 0o644


def test_keys_match_certificates(certs_dir):
    for name in ("ca", "server", "client"):
        cert = load_cert(certs_dir / f"{name}.pem")
        key = load_pem_private_key((certs_dir / f"{name}.key").read_bytes(), password=None)
        assert cert.public_key() == key.public_key()


def test_ca_extensions(certs_dir):
    ca = load_cert(certs_dir / "ca.pem")
    assert ca.subject == ca.issuer
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    ca.verify_directly_issued_by(ca)


def test_server_certificate(certs_dir):
    ca = load_cert(certs_dir / "ca.pem")
    server = load_cert(certs_dir / "server.pem")
    server.verify_directly_issued_by(ca)
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    not_after = server.not_valid_after_utc
    assert timedelta(days=824) < not_after - datetime.now(UTC) <= timedelta(days=825)


def test_certificates_verify_against_the_ca(certs_dir):
    store = Store([load_cert(certs_dir / "ca.pem")])
    server = load_cert(certs_dir / "server.pem")
    client = load_cert(certs_dir / "client.pem")
    policy = PolicyBuilder().store(store)
    for name in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        chain = policy.build_server_verifier(name).verify(server, [])
        assert chain[-1] == load_cert(certs_dir / "ca.pem")
    with pytest.raises(VerificationError):
        policy.build_server_verifier(x509.DNSName("example.org")).verify(server, [])

    verified = policy.build_client_verifier().verify(client, [])
    assert verified.chain[0] == client
    assert verified.chain[-1] == load_cert(certs_dir / "ca.pem")
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        CLIENT_COMMON_NAME
    )
    eku = client.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # A client certificate is not a server certificate.
    with pytest.raises(VerificationError):
        policy.build_server_verifier(x509.DNSName("localhost")).verify(client, [])


def test_refuses_to_overwrite_without_force(certs_dir):
    before = {name: (certs_dir / name).read_bytes() for name in FILES}
    with pytest.raises(FileExistsError) as raised:
        init_certs(certs_dir)
    assert str(certs_dir / "ca.pem") in str(raised.value)
    assert "--force" in str(raised.value)
    assert {name: (certs_dir / name).read_bytes() for name in FILES} == before


def test_refuses_when_any_file_exists(tmp_path):
    (tmp_path / "client.key").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"client\.key"):
        init_certs(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["client.key"]
    assert (tmp_path / "client.key").read_text() == "keep me"


def test_force_overwrites_and_restores_key_mode(certs_dir):
    old_ca = (certs_dir / "ca.pem").read_bytes()
    (certs_dir / "server.key").chmod(0o644)
    init_certs(certs_dir, force=True)
    assert (certs_dir / "ca.pem").read_bytes() != old_ca
    assert mode(certs_dir / "server.key") == 0o600
    load_cert(certs_dir / "server.pem").verify_directly_issued_by(load_cert(certs_dir / "ca.pem"))


def test_custom_hosts_and_days(tmp_path):
    init_certs(tmp_path, hosts=["mllp.example.org", "10.0.0.5"], days=30)
    server = load_cert(tmp_path / "server.pem")
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mllp.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert server.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "mllp.example.org"
    )
    assert server.not_valid_after_utc - datetime.now(UTC) <= timedelta(days=30)


def test_rejects_empty_hosts(tmp_path):
    with pytest.raises(ValueError, match="at least one host"):
        init_certs(tmp_path, hosts=[])
    assert list(tmp_path.iterdir()) == []


def test_subject_alt_names_tell_ips_from_names():
    names = subject_alt_names(["localhost", "127.0.0.1", "::1", "1.2.3.4.example"])
    assert names == [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
        x509.DNSName("1.2.3.4.example"),
    ]


def test_make_cert_expired_and_from_another_ca():
    ca = make_ca()
    other = make_ca("Other CA")
    now = datetime.now(UTC)
    expired = make_cert(
        "old",
        ca,
        purpose="client",
        not_before=now - timedelta(days=10),
        not_after=now - timedelta(days=1),
    )
    assert expired.certificate.not_valid_after_utc < now
    expired.certificate.verify_directly_issued_by(ca.certificate)
    stranger = make_cert("stranger", other, purpose="client")
    with pytest.raises(ValueError):
        stranger.certificate.verify_directly_issued_by(ca.certificate)
    with pytest.raises(ValueError, match="before it starts"):
        make_cert("bad", ca, purpose="client", not_before=now, not_after=now)
    with pytest.raises(ValueError, match="at least one host"):
        make_cert("server", ca, purpose="server")


def test_issued_round_trips_through_files(tmp_path):
    ca = make_ca()
    ca.write(tmp_path / "ca.pem", tmp_path / "ca.key")
    loaded = Issued.load(tmp_path / "ca.pem", tmp_path / "ca.key")
    assert loaded.certificate == ca.certificate
    assert loaded.key.public_key() == ca.key.public_key()
