"""Bare Twisted MLLP server for the intake benchmark: the "bare baseline in the same run".

It frames on bytes (``0B payload 1C 0D``), reads MSH-10 and answers ``MSA|AA|<MSH-10>`` at
once: no parsing beyond that, no store, no metrics, no logging. Whatever the engine costs
above this is the engine's own cost.

    python bench/baseline_server.py --port 2575

Listens on 127.0.0.1 only; stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import time

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol

START = b"\x0b"
TRAILER = b"\x1c\r"
_STAMP = time.strftime("%Y%m%d%H%M%S", time.gmtime()).encode()
_ACK_HEAD = b"\x0bMSH|^~\\&|BASELINE|BENCH|||" + _STAMP + b"||ACK^A01^ACK|B1|P|2.5\rMSA|AA|"
_ACK_TAIL = b"\r\x1c\r"


def control_id(payload: bytes) -> bytes:
    """MSH-10 of a payload that starts with MSH (field separator at index 3)."""
    end = payload.find(b"\r")
    msh = payload if end < 0 else payload[:end]
    parts = msh.split(msh[3:4], 10)
    return parts[9] if len(parts) > 9 else b""


class BaselineMLLP(Protocol):
    def connectionMade(self) -> None:
        self._buf = b""

    def dataReceived(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos = 0
        out = []
        while True:
            start = buf.find(START, pos)
            if start < 0:
                pos = len(buf)
                break
            end = buf.find(TRAILER, start + 1)
            if end < 0:
                pos = start
                break
            payload = buf[start + 1 : end]
            out.append(_ACK_HEAD + control_id(payload) + _ACK_TAIL)
            pos = end + 2
        self._buf = buf[pos:]
        if out:
            self.transport.write(b"".join(out))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args(argv)
    factory = Factory.forProtocol(BaselineMLLP)
    factory.noisy = False
    reactor.listenTCP(args.port, factory, interface="127.0.0.1", backlog=128)
    reactor.run()


if __name__ == "__main__":
    main()
