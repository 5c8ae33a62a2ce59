"""Encryption at rest: the sealed format, key configuration, rotation, and a running engine."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
import pytest_twisted
from sqlalchemy import insert, select
from twisted.internet import reactor
from twisted.internet.task import deferLater

from engine.admin.search import message_detail
from engine.app import Switchboard
from engine.components import load_config
from engine.config.store_spec import ENCRYPTION
from engine.delivery.queue import QueueStore
from engine.message_row import fingerprint_parts
from engine.mllp.client import BlockingMLLPClient
from engine.store import migrations
from engine.store.crypto import (
    MAGIC,
    NULL_SEALER,
    NullSealer,
    Sealer,
    SealError,
    key_id_of,
    rotate,
    seal_row,
    sealer_from_options,
)
from engine.store.db import create_store_engine
from engine.store.queries import get_message
from engine.store.schema import deliveries, messages

from .engine_harness import in_thread, settle, write_config
from .settings import store_options

KA, KB = os.urandom(32), os.urandom(32)
MSG = b"MSH|^~\\&|SND|SF|RCV|RF|20240101||ADT^A01|C1|P|2.5\rPID|1||SECRET-MRN^^^H^MR||DOE^JANE\r"


def sealer(current="a", **keys) -> Sealer:
    return Sealer(keys or {"a": KA, "b": KB}, current)


# format -----------------------------------------------------------------------------------
def test_round_trip_and_format():
    s = sealer()
    sealed = s.seal(MSG)
    assert sealed.startswith(MAGIC + b"\x01a") and b"SECRET" not in sealed
    assert len(sealed) == len(MAGIC) + 2 + 12 + len(MSG) + 16
    assert key_id_of(sealed) == "a"
    assert s.open(sealed) == MSG
    assert s.seal(MSG) != sealed  # a fresh nonce each time
    assert s.open(s.seal(b"")) == b""
    assert s.seal(None) is None and s.open(None) is None


def test_plaintext_passes_through():
    assert sealer().open(MSG) == MSG
    assert sealer().open(memoryview(MSG)) == MSG
    assert NULL_SEALER.seal(MSG) == MSG and NULL_SEALER.open(MSG) == MSG


def test_unknown_key_is_named():
    sealed = sealer("b").seal(MSG)
    with pytest.raises(SealError, match="unknown key 'b'"):
        Sealer({"a": KA}, "a").open(sealed)
    with pytest.raises(SealError, match=r"key 'b'.*encryption is off"):
        NullSealer().open(sealed)


def test_wrong_key_and_tampering_fail():
    s = sealer()
    sealed = s.seal(MSG)
    with pytest.raises(SealError, match="authentication"):
        Sealer({"a": KB}, "a").open(sealed)  # same id, other key bytes
    flipped = bytearray(sealed)
    flipped[-20] ^= 1
    with pytest.raises(SealError, match="authentication"):
        s.open(bytes(flipped))
    with pytest.raises(SealError, match="authentication"):
        s.open(sealed[:-1])
    relabelled = sealed.replace(MAGIC + b"\x01a", MAGIC + b"\x01b", 1)  # key id is bound (AAD)
    with pytest.raises(SealError, match="authentication"):
        s.open(relabelled)


def test_seal_row_leaves_metadata_and_empty_values():
    s = sealer()
    dels = [{"channel": "adt", "payload": MSG}, {"channel": "x", "payload": b""}]
    row = {"control_id": "C1", "raw": MSG, "ack": None, "_deliveries": dels}
    out = seal_row(s, row)
    assert out["control_id"] == "C1" and out["ack"] is None
    assert s.open(out["raw"]) == MSG and out["raw"] != MSG
    assert s.open(out["_deliveries"][0]["payload"]) == MSG
    assert out["_deliveries"][1]["payload"] == b""
    assert row["raw"] == MSG  # the input is not changed
    assert seal_row(NULL_SEALER, row) is row


# configuration ----------------------------------------------------------------------------
def test_body_fingerprint_is_keyed_when_encryption_is_on():
    """The fingerprint duplicate detection stores: keyed with encryption on (a plain hash of a
    body would let anyone with the store confirm a guessed message), naming its key."""

    def fp(sealer, message=MSG):
        return sealer.fingerprint(fingerprint_parts(message, "|"))

    plain, ka, kb = fp(NULL_SEALER), fp(Sealer({"a": KA}, "a")), fp(Sealer({"b": KB}, "b"))
    assert len(plain) == len(ka) == len(kb) == 18
    assert plain[:2] == b"\x00\x00" and len({plain[:2], ka[:2], kb[:2]}) == 3  # key tags
    assert len({plain[2:], ka[2:], kb[2:]}) == 3
    for body in (MSG, MSG[:-1]):  # the digest is not a plain hash of the body
        assert hashlib.blake2b(body, digest_size=16).digest() != ka[2:]
        assert hashlib.sha256(body).digest()[:16] != ka[2:]
    assert fp(Sealer({"a": KA, "b": KB}, "a")) == ka  # the current key's, whatever is listed
    # MSH-7 and trailing CRs aside, the whole message counts
    assert fp(Sealer({"a": KA}, "a"), MSG.replace(b"|20240101|", b"|20240102093000|")) == ka
    assert fp(Sealer({"a": KA}, "a"), MSG + b"\r\r") == ka
    assert fp(Sealer({"a": KA}, "a"), MSG.replace(b"JANE", b"JOHN")) != ka
    assert fp(Sealer({"a": KA}, "a"), MSG.replace(b"|RCV|", b"|RCW|")) != ka
    assert fingerprint_parts(b"MSH|^~\\&|A", "|") == (b"MSH|^~\\&|A",)  # short: all of it


def options(enc: dict | None):
    """store_options with these encryption settings, as given (some tests give bad ones)."""
    if enc is None:
        return store_options()
    return store_options().replace(encryption=ENCRYPTION.settings({"enabled": True, **enc}))


def test_sealer_from_options(tmp_path):
    assert sealer_from_options(options(None), {}) is NULL_SEALER
    off = {"enabled": False, "current": "a", "keys": {"a": base64.b64encode(KA).decode()}}
    assert sealer_from_options(store_options(encryption=off), {}) is NULL_SEALER
    raw_file, b64_file = tmp_path / "k1", tmp_path / "k2"
    raw_file.write_bytes(KB)
    b64_file.write_text(base64.b64encode(KA).decode() + "\n")
    env = {"SB_KEY": base64.b64encode(KA).decode()}
    enc = {"current": "k-2024", "keys": {
        "k-2024": "${SB_KEY}", "k-2023": {"file": str(raw_file)}, "k-old": {"file": str(b64_file)},
        "k-env": {"env": "SB_KEY"}}}  # fmt: skip
    s = sealer_from_options(store_options(encryption=enc), env)
    assert s.current == "k-2024" and sorted(s.key_ids) == ["k-2023", "k-2024", "k-env", "k-old"]
    old = sealer_from_options(store_options(encryption={**enc, "current": "k-2023"}), env)
    assert Sealer({"k-2023": KB}, "k-2023").open(old.seal(MSG)) == MSG
    assert Sealer({"k-2024": KA}, "k-2024").open(s.seal(MSG)) == MSG


@pytest.mark.parametrize(
    "enc, env, message",
    [
        ({"current": "a", "keys": {"a": "${NOPE}"}}, {}, "NOPE is not set"),
        ({"current": "a", "keys": {"a": base64.b64encode(b"short").decode()}}, {}, "32 bytes"),
        ({"current": "a", "keys": {"a": "not base64!"}}, {}, "not valid base64"),
        ({"current": "z", "keys": {"a": base64.b64encode(KA).decode()}}, {}, "current 'z'"),
        ({"current": "a", "keys": {}}, {}, "at least one key"),
        ({"current": "a", "keys": {"a": {"file": "/nonexistent/key"}}}, {}, "cannot read"),
    ],
)
def test_sealer_from_options_errors(enc, env, message):
    with pytest.raises(SealError, match=message):
        sealer_from_options(options(enc), env)


# rotation against a store -----------------------------------------------------------------
@pytest.fixture
def store(tmp_path):
    engine = create_store_engine(f"sqlite:///{tmp_path / 'rot.db'}")
    migrations.upgrade(engine)
    yield engine
    engine.dispose()


def _store_row(engine, s, n: int) -> int:
    body = MSG.replace(b"C1", f"C{n}".encode())
    row = seal_row(s, {"raw": body, "ack": b"MSH|ack" + body[-5:],
                       "_deliveries": [{"payload": body}]})  # fmt: skip
    with engine.begin() as conn:
        mid = conn.execute(insert(messages).values(
            received_at=1.0, listener="in", status="routed", size=len(body), control_id=f"C{n}",
            raw=row["raw"], ack=row["ack"], charset="iso-8859-1"))  # fmt: skip
        mid = mid.inserted_primary_key[0]
        conn.execute(insert(deliveries).values(
            message_id=mid, channel="adt", destination="files", status="pending",
            content_type="application/hl7-v2", payload=row["_deliveries"][0]["payload"],
            created_at=1.0))  # fmt: skip
    return mid


def _key_ids(engine) -> set[str | None]:
    with engine.connect() as conn:
        vals = list(conn.execute(select(messages.c.raw, messages.c.ack)).all())
        vals += [(p,) for p in conn.execute(select(deliveries.c.payload)).scalars()]
    return {key_id_of(v) for r in vals for v in r}


def test_rotation(store):
    a_only = Sealer({"a": KA}, "a")
    ids = [_store_row(store, a_only, n) for n in range(1, 6)]
    both = Sealer({"a": KA, "b": KB}, "b")  # current B, A still listed
    ids += [_store_row(store, both, n) for n in range(6, 8)]
    assert _key_ids(store) == {"a", "b"}
    for n, mid in enumerate(ids, 1):  # old and new rows readable at every read point
        row = get_message(store, mid, both)
        assert row["raw"] == MSG.replace(b"C1", f"C{n}".encode())
        detail = message_detail(store, mid, both)
        assert detail["raw"].startswith("MSH") and detail["ack"].startswith("MSH|ack")
        assert detail["deliveries"][0]["payload"].startswith("MSH")
    q = QueueStore(store, "node")
    q.sealer = both
    claimed = q.claim("adt", "files", 10, 2.0)
    assert [r.payload[:3] for r in claimed] == [b"MSH"] * 7
    with pytest.raises(SealError, match="unknown key 'b'"):
        get_message(store, ids[-1], a_only)

    counts = rotate(store, both, batch_size=2)  # several batches
    assert counts == {"messages": 5, "deliveries": 5}
    assert _key_ids(store) == {"b"}
    assert rotate(store, both, batch_size=2) == {"messages": 0, "deliveries": 0}
    b_only = Sealer({"b": KB}, "b")  # A can go now
    for n, mid in enumerate(ids, 1):
        assert get_message(store, mid, b_only)["raw"] == MSG.replace(b"C1", f"C{n}".encode())
    with pytest.raises(SealError):
        get_message(store, ids[0], a_only)


def test_rotate_seals_plaintext_rows(store):
    mid = _store_row(store, NULL_SEALER, 1)
    assert _key_ids(store) == {None}
    assert get_message(store, mid, sealer())["raw"] == MSG  # existing store keeps working
    rotate(store, sealer())
    assert _key_ids(store) == {"a"}
    assert get_message(store, mid, sealer())["raw"] == MSG


# a running engine -------------------------------------------------------------------------
CONFIG = """
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1"}
routes:
  - {match: {type: ADT}, to: [adt]}
"""


@pytest_twisted.inlineCallbacks
def test_engine_end_to_end(tmp_path, monkeypatch):
    monkeypatch.setenv("SB_TEST_KEY_A", base64.b64encode(KA).decode())
    out = tmp_path / "out"
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(
        f"name: adt\ndestinations:\n  - {{name: files, file: {out}, "
        "filename: '{control_id}.hl7'}\n"
    )
    encrypted = (
        CONFIG + 'store_options: {encryption: {current: a, keys: {a: "${SB_TEST_KEY_A}"}}}\n'
    )
    config = load_config(write_config(tmp_path, encrypted, channels=()))
    sb = Switchboard(config, reactor)
    assert isinstance(sb.sealer, Sealer) and sb.intakes["in"].sealer is sb.sealer
    assert sb.delivery.queue.sealer is sb.sealer
    sb.startService()
    try:
        port = sb.port_of("in")

        def send():
            with BlockingMLLPClient("127.0.0.1", port, timeout=10) as c:
                return [c.send(MSG), c.send(MSG)]

        first, again = yield in_thread(send)
        assert first.startswith(b"MSH|") and b"\rMSA|AA|C1" in first
        assert again == first  # the duplicate's ACK, replayed from the store, opened
        yield settle(sb)
        for _ in range(500):  # bounded: 5 s
            if (out / "C1.hl7").exists():
                break
            yield deferLater(reactor, 0.01, lambda: None)
        assert (out / "C1.hl7").read_bytes() == MSG  # delivered in clear
        with sb.store.engine.connect() as conn:
            (row,) = conn.execute(select(messages)).all()
            payloads = list(conn.execute(select(deliveries.c.payload)).scalars())
        assert row.duplicates == 1 and row.control_id == "C1"  # metadata stays clear
        assert b"SECRET" not in row.raw and b"MSH" not in row.raw and key_id_of(row.raw) == "a"
        assert key_id_of(row.ack) == "a" and b"MSA" not in row.ack
        assert len(payloads) == 1 and b"SECRET" not in payloads[0]
        assert key_id_of(payloads[0]) == "a"
        assert sb.sealer.open(row.raw) == MSG and sb.sealer.open(row.ack) == first
        assert row.body_hash == sb.sealer.fingerprint(fingerprint_parts(MSG, "|"))  # keyed
        detail = message_detail(sb.store.engine, row.id, sb.sealer)
        assert "SECRET-MRN" in detail["raw"] and detail["ack"] == first.decode()
    finally:
        yield sb.stopService()


@pytest_twisted.inlineCallbacks
def test_encryption_from_routes_yaml(tmp_path, monkeypatch):
    from .engine_harness import start_engine

    monkeypatch.setenv("SB_TEST_KEY", base64.b64encode(os.urandom(32)).decode())
    sb = start_engine(tmp_path, """
store_options:
  encryption: {current: k1, keys: {k1: "${SB_TEST_KEY}"}}
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1"}
""")  # fmt: skip
    try:
        msg = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|E1|P|2.5\rPID|1||999^^^H^MR||SECRET^NAME\r"

        def send():
            with BlockingMLLPClient("127.0.0.1", sb.port_of("in"), timeout=10) as c:
                return c.send(msg)

        assert b"MSA|AA|E1" in (yield in_thread(send))
        with sb.store.engine.connect() as conn:
            raw = conn.execute(select(messages.c.raw)).scalar()
        assert raw.startswith(b"SB1:") and b"SECRET" not in raw
    finally:
        yield sb.stopService()


def test_bad_key_is_a_config_error(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    cfg = write_config(tmp_path, """
store_options:
  encryption: {current: k1, keys: {k1: "not base64 of 32 bytes"}}
""")  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "engine", "check", "-c", str(cfg)],
                         capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert out.returncode == 1 and "encryption:" in out.stderr and "Traceback" not in out.stderr


def test_rotate_keys_command(tmp_path, monkeypatch):
    import subprocess
    import sys
    from pathlib import Path

    key_a, key_b = os.urandom(32), os.urandom(32)
    env = {**os.environ, "SB_A": base64.b64encode(key_a).decode(),
           "SB_B": base64.b64encode(key_b).decode()}  # fmt: skip
    cfg = write_config(tmp_path, """
store_options:
  encryption: {current: b, keys: {a: "${SB_A}", b: "${SB_B}"}}
""")  # fmt: skip
    monkeypatch.setenv("SB_A", env["SB_A"])
    monkeypatch.setenv("SB_B", env["SB_B"])
    config = load_config(cfg)
    engine = create_store_engine(config.store)
    migrations.upgrade(engine)
    old = Sealer({"a": key_a}, "a")
    with engine.begin() as conn:
        row = {"id": 1, "received_at": 1.0, "listener": "in", "status": "routed", "size": 3,
               "raw": old.seal(b"MSH"), "ack": old.seal(b"ACK")}  # fmt: skip
        conn.execute(insert(messages).values(**row))
    out = subprocess.run([sys.executable, "-m", "engine", "rotate-keys", "-c", str(cfg)], env=env,
                         capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "re-sealed 1 messages" in out.stdout
    with engine.connect() as conn:
        raw = conn.execute(select(messages.c.raw)).scalar()
    assert Sealer({"b": key_b}, "b").open(raw) == b"MSH"  # key a is no longer needed
    from engine.admin.audit import recent

    (entry,) = recent(engine)  # audited like every operator action from the command line
    assert (entry["action"], entry["target"], entry["source"]) == ("rotate-keys", "store", "cli")
    assert entry["actor"].startswith("cli:") and entry["detail"]["messages"] == 1
    engine.dispose()
