"""Encryption at rest of message bodies (messages.raw, messages.ack, deliveries.payload).

Sealed format: ``b"SB1:" + len(key id) (1 byte) + key id (ascii) + nonce (12 bytes) +
AES-256-GCM ciphertext and tag``. The header (magic, length, key id) is the GCM associated
data, so a key id cannot be swapped. Bytes without the magic are plaintext and pass through
:meth:`Sealer.open` unchanged: a store written before encryption keeps working.

Rotation: new writes use ``current``; rows sealed with any listed key stay readable;
:func:`rotate` re-seals the rest with ``current`` in small batches, after which old keys may go.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select, update

MAGIC = b"SB1:"
NONCE = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_ENV = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class SealError(Exception):
    """Sealed data that cannot be opened, or a bad key configuration."""


# Body fingerprints (messages.body_hash), which duplicate detection compares: a 2-byte tag
# naming the key, then BLAKE2b-128 of the body. With encryption on, BLAKE2b is keyed with a
# key derived from the current sealing key: a plain hash of a body would be a fingerprint of
# PHI sitting beside the sealed body, open to a guess-and-confirm search. Without encryption
# the body is stored in clear anyway and the tag is zero. Fingerprints under different keys
# (a rotation, encryption turned on) cannot be compared (engine.store.dedup).
FINGERPRINT_PERSON = b"sb-body"
UNKEYED_TAG = b"\x00\x00"
_UNKEYED = hashlib.blake2b(digest_size=16, person=FINGERPRINT_PERSON)


def _fingerprint(base, tag: bytes, parts) -> bytes:
    h = base.copy()  # cheaper than a new keyed hash: the key block is already absorbed
    h.update(parts[0])
    if len(parts) > 1:
        h.update(parts[1])
    return tag + h.digest()


class NullSealer:
    """Encryption off: identity (sealed rows from an earlier run would still fail loudly)."""

    active = False
    current = None

    def seal(self, data):
        return data

    def fingerprint(self, parts) -> bytes:
        """The body fingerprint of ``parts`` (one or two bytes-like, concatenated): unkeyed."""
        return _fingerprint(_UNKEYED, UNKEYED_TAG, parts)

    def open(self, data):
        if data is not None and bytes(data[: len(MAGIC)]) == MAGIC:
            raise SealError(f"data sealed with key '{key_id_of(data)}' but encryption is off")
        return data


NULL_SEALER = NullSealer()


def key_id_of(data) -> str | None:
    """The key id of sealed bytes, or None for plaintext."""
    data = bytes(data) if data is not None else b""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 1:
        return None
    n = data[len(MAGIC)]
    return data[len(MAGIC) + 1 : len(MAGIC) + 1 + n].decode("ascii", "replace")


class Sealer:
    active = True

    def __init__(self, keys: Mapping[str, bytes], current: str):
        if current not in keys:
            raise SealError(f"current key '{current}' is not among the keys")
        self._aead: dict[str, AESGCM] = {}
        for kid, key in keys.items():
            if not _KEY_ID.match(kid):
                raise SealError(f"key id {kid!r}: use 1-64 of A-Z a-z 0-9 . _ -")
            if len(key) != 32:
                raise SealError(f"key '{kid}' must be 32 bytes (AES-256), got {len(key)}")
            self._aead[kid] = AESGCM(bytes(key))
        self.current = current
        self.prefix = self._header(current)
        # its own key, derived from the sealing key (never the AES key itself)
        derived = hashlib.blake2b(b"switchboard body fingerprint v1", key=bytes(keys[current]),
                                  digest_size=32).digest()  # fmt: skip
        self._fp_base = hashlib.blake2b(digest_size=16, key=derived, person=FINGERPRINT_PERSON)
        tag = hashlib.blake2b(b"tag", key=derived, digest_size=2).digest()  # names the key
        self._fp_tag = tag if tag != UNKEYED_TAG else b"\x00\x01"

    def fingerprint(self, parts) -> bytes:
        """The body fingerprint of ``parts``, keyed (see FINGERPRINT_PERSON)."""
        return _fingerprint(self._fp_base, self._fp_tag, parts)

    @staticmethod
    def _header(kid: str) -> bytes:
        raw = kid.encode("ascii")
        return MAGIC + bytes([len(raw)]) + raw

    @property
    def key_ids(self) -> list[str]:
        return list(self._aead)

    def seal(self, data):
        """Seal with the current key; None stays None."""
        if data is None:
            return None
        nonce = os.urandom(NONCE)
        ct = self._aead[self.current].encrypt(nonce, bytes(data), self.prefix)
        return self.prefix + nonce + ct

    def open(self, data):
        """Plaintext (no magic) and None pass through; sealed data is checked and opened."""
        if data is None:
            return None
        data = bytes(data)
        if not data.startswith(MAGIC):
            return data
        kid = key_id_of(data)
        header = self._header_of(data)
        aead = self._aead.get(kid)
        if aead is None:
            raise SealError(f"data sealed with unknown key '{kid}' (not in the configured keys)")
        nonce = data[len(header) : len(header) + NONCE]
        try:
            return aead.decrypt(nonce, data[len(header) + NONCE :], header)
        except InvalidTag:
            raise SealError(f"sealed data failed authentication (key '{kid}'): "
                            "tampered, truncated or the wrong key") from None  # fmt: skip

    @staticmethod
    def _header_of(data: bytes) -> bytes:
        n = data[len(MAGIC)] if len(data) > len(MAGIC) else 0
        return data[: len(MAGIC) + 1 + n]

    def is_current(self, data) -> bool:
        return data is None or bytes(data[: len(self.prefix)]) == self.prefix

    def reseal(self, data):
        """Open and seal again with the current key (plaintext gets sealed too)."""
        return self.seal(self.open(data))


# configuration --------------------------------------------------------------------------
def _decode_key(kid: str, text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SealError(f"key '{kid}' is not valid base64") from None
    if len(key) != 32:
        raise SealError(f"key '{kid}' must decode to 32 bytes, got {len(key)}")
    return key


def _load_key(kid: str, spec, environ: Mapping[str, str]) -> bytes:
    if isinstance(spec, str):
        m = _ENV.match(spec.strip())
        if m:  # not substituted by the config loader: read it here
            spec = {"env": m.group(1)}
        else:
            return _decode_key(kid, spec)
    if isinstance(spec, dict) and set(spec) == {"env"}:
        name = spec["env"]
        if name not in environ:
            raise SealError(f"key '{kid}': environment variable {name} is not set")
        return _decode_key(kid, environ[name])
    if isinstance(spec, dict) and set(spec) == {"file"}:
        try:
            data = Path(spec["file"]).read_bytes()
        except OSError as exc:
            raise SealError(f"key '{kid}': cannot read {spec['file']}: {exc.strerror}") from None
        return data if len(data) == 32 else _decode_key(kid, data.decode("ascii", "replace"))
    raise SealError(f"key '{kid}': give base64 text, {{env: VAR}} or {{file: path}}")


def sealer_from_options(opts, environ: Mapping[str, str] | None = None):
    """The sealer for validated ``store_options`` (its ``encryption`` settings), NullSealer
    when absent.

    ``encryption: {current: key-2024, keys: {key-2024: "${SB_KEY_2024}", key-2023: {file: p}}}``
    A key is base64 of 32 bytes, ``{env: VAR}`` or ``{file: path}`` (32 raw bytes or base64).
    ``enabled: false`` turns it off (sealed rows then cannot be read).
    """
    environ = os.environ if environ is None else environ
    enc = opts.encryption if opts else None
    if enc is None or not enc.enabled:
        return NULL_SEALER
    keys, current = enc.keys, enc.current
    if not isinstance(keys, Mapping) or not keys:
        raise SealError("store_options.encryption.keys: at least one key is needed")
    if not isinstance(current, str) or current not in keys:
        raise SealError(f"store_options.encryption.current {current!r} is not one of the keys")
    return Sealer({str(k): _load_key(str(k), v, environ) for k, v in keys.items()}, current)


# row helpers ------------------------------------------------------------------------------
def seal_row(sealer, row: dict) -> dict:
    """The message row (with its ``_deliveries``) with raw, ack and payloads sealed."""
    if not sealer.active:
        return row

    def seal(v):
        return sealer.seal(v) if v else v  # None and b"" (emptied by a storage mode) stay

    row = {**row, "raw": seal(row.get("raw")), "ack": seal(row.get("ack"))}
    if row.get("_deliveries"):
        row["_deliveries"] = [{**o, "payload": seal(o["payload"])} for o in row["_deliveries"]]
    return row


SEALED_COLUMNS = (("messages", ("raw", "ack")), ("deliveries", ("payload",)))


def rotate(engine, sealer: Sealer, batch_size: int = 500) -> dict[str, int]:
    """Re-seal with the current key every sealed body under another key (and plaintext).

    Keyset batches, one short transaction each; an update only applies if the value is
    unchanged (retention may have emptied it meanwhile). Returns rows changed per table.
    Every key the rows use must still be listed. Empty values are left alone.
    """
    from engine.store.schema import deliveries, messages

    tables = {"messages": messages, "deliveries": deliveries}
    counts = {}
    for tname, cols in SEALED_COLUMNS:
        t = tables[tname]
        last, changed = 0, 0
        while True:
            with engine.begin() as conn:
                rows = conn.execute(
                    select(t.c.id, *(t.c[c] for c in cols))
                    .where(t.c.id > last).order_by(t.c.id).limit(batch_size)
                ).all()  # fmt: skip
                for r in rows:
                    new = {}
                    for c in cols:
                        v = r._mapping[c]
                        if v is not None and len(v) and not sealer.is_current(v):
                            new[c] = sealer.reseal(v)
                    if new:
                        guard = [t.c[c] == r._mapping[c] for c in new]
                        changed += conn.execute(
                            update(t).where(t.c.id == r.id, *guard).values(**new)
                        ).rowcount
            if len(rows) < batch_size:
                break
            last = rows[-1].id
        counts[tname] = changed
    return counts
