"""A small blocking MLLP client for ``switchboard send`` (the engine itself never blocks)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time

from engine.mllp.framing import frame


class MLLPClientError(Exception):
    pass


class AckTimeout(MLLPClientError):
    pass


class BlockingMLLPClient:
    """Send framed messages one at a time and read each framed ACK."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ):
        self.timeout = timeout
        sock = socket.create_connection((host, port), timeout=timeout)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
        self.sock = sock
        self._buf = b""

    def send(self, payload: bytes) -> bytes:
        """Send one message; return the ACK payload (unframed)."""
        self.sock.sendall(frame(payload))
        return self.read_frame()

    def read_frame(self) -> bytes:
        deadline = time.monotonic() + self.timeout
        while True:
            start = self._buf.find(b"\x0b")
            if start >= 0:
                end = self._buf.find(b"\x1c\x0d", start)
                if end >= 0:
                    payload = self._buf[start + 1 : end]
                    self._buf = self._buf[end + 2 :]
                    return payload
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AckTimeout(f"no ACK within {self.timeout:g} s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise AckTimeout(f"no ACK within {self.timeout:g} s") from None
            if not chunk:
                raise MLLPClientError("connection closed by the peer before an ACK arrived")
            self._buf += chunk

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def tls_context(
    ca: str | None, cert: str | None, key: str | None, verify: bool = True
) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def ack_code(ack: bytes) -> str:
    """MSA-1 of an ACK ('' when the reply is not an ACK)."""
    text = ack.decode("latin-1")
    if not text.startswith("MSH") or len(text) < 4:
        return ""
    sep = text[3]
    for seg in text.replace("\n", "\r").split("\r"):
        if seg.startswith("MSA" + sep):
            return seg.split(sep)[1][:2]
    return ""


def split_messages(data: bytes) -> list[bytes]:
    """Split a file into messages: on lines starting with MSH, LF/CRLF made CR, MLLP bytes and
    batch envelopes (FHS/BHS/BTS/FTS) dropped. For the CLI; the file-drop listener checks
    batches strictly."""
    data = data.replace(b"\x0b", b"").replace(b"\x1c", b"")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    lines = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    messages: list[list[bytes]] = []
    for line in lines:
        if not line or line.startswith(b"#"):
            continue
        if line[:3] in (b"FHS", b"BHS", b"BTS", b"FTS"):
            continue
        if line.startswith(b"MSH"):
            messages.append([line])
        elif messages:
            messages[-1].append(line)
    return [b"\r".join(m) + b"\r" for m in messages]
