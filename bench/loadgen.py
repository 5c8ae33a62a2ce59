"""MLLP load generator: C connections, W messages in flight on each, ACKs checked in order.

One process drives a group of connections on one asyncio loop with raw byte framing; the
benchmark (``mllp_intake.py``) starts several for many connections. Per message the work is
one bytes concatenation on the way out and one ``find`` plus one ``split`` on the way back.

Every ACK must be MLLP-framed, carry MSA-1 ``AA`` and MSA-2 equal to the MSH-10 of the
oldest unanswered message on its connection. Latency is from the write of a message to the
read of its ACK (messages written together share a timestamp).

Stand-alone, it runs one measured pass and prints a JSON summary:

    python bench/loadgen.py --port 2575 --conns 8 --window 8 --messages 20000

Under ``mllp_intake.py`` (``--coordinated``) it connects, runs the warm-up, prints ``ready``,
waits for ``go`` on stdin, runs the measured pass (printing ``progress <acked>`` lines) and
prints ``result <json>``; latencies go to ``--lat-file`` as native doubles (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from array import array
from collections import deque

HOST = "127.0.0.1"  # the benchmark never sends anywhere else
SB = b"\x0b"
TRAILER = b"\x1c\r"
MAX_ERRORS_KEPT = 5

# A realistic ADT^A01 (about 1.5 KB); {CID} is replaced by a unique MSH-10 per message.
_SEGMENTS = (
    "MSH|^~\\&|BENCH_ADT|GENERAL_HOSP|SWITCHBOARD|HIE|20240315083012+0100||ADT^A01^ADT_A01|{CID}"
    "|P|2.5.1|||||USA|UNICODE UTF-8",
    "EVN|A01|20240315083000+0100|||OPER123^NURSE^JANE^^^^^^HOSP&1.2.3.4&ISO|20240315082900+0100",
    "PID|1||4711234^^^GENERAL_HOSP^MR~987-65-4321^^^USSSA^SS||DOE^JOHN^QUINCY^JR^^^L|"
    "SMITH^MARY^^^^^M|19620412083000|M||2106-3^White^CDCREC|1200 N ELM STREET^APT 4B^"
    "GREENSBORO^NC^27401-1020^USA^H^^GUILFORD||^PRN^PH^^1^336^5551234~^NET^Internet^"
    "john.doe@example.org|^WPN^PH^^1^336^5559876|eng^English^ISO639|M^Married^HL70002|"
    "CHR^Christian^HL70006|40007890^^^GENERAL_HOSP^AN|987-65-4321|||N^Not Hispanic^HL70189",
    "PD1|||GENERAL HOSPITAL^^1234|1234567890^WELBY^MARCUS^A^^DR^MD^^NPI",
    "NK1|1|DOE^JANE^M|SPO^Spouse^HL70063|1200 N ELM STREET^APT 4B^GREENSBORO^NC^27401^USA|"
    "^PRN^PH^^1^336^5551234||EC^Emergency Contact^HL70131",
    "PV1|1|I|4EAST^412^B^GENERAL_HOSP^^^^4EAST||||1234567890^WELBY^MARCUS^A^^DR^MD^^NPI|"
    "2345678901^KILDARE^JAMES^^^DR^MD^^NPI||MED|||7|A0|||1234567890^WELBY^MARCUS^A^^DR^MD^^NPI|"
    "IN||SELF|||||||||||||||||||GENERAL_HOSP||ADM|||20240315082500+0100",
    "PV2|||CHEST PAIN^Chest pain, unspecified^I10||||||20240318|3|||||||||||N",
    "OBX|1|NM|8302-2^Body height^LN||180|cm^centimeter^UCUM|||||F|||20240315081500+0100",
    "OBX|2|NM|29463-7^Body weight^LN||82.5|kg^kilogram^UCUM|||||F|||20240315081500+0100",
    "AL1|1|DA|7980^Penicillin^RXNORM|SV|Hives and shortness of breath|20010101",
    "AL1|2|FA|256349002^Peanut^SCT|MO|Swelling|19980101",
    "DG1|1||R07.9^Chest pain, unspecified^I10|||A|||||||||1",
    "DG1|2||I10^Essential (primary) hypertension^I10|||W|||||||||2",
)
TEMPLATE = "\r".join(_SEGMENTS) + "\r"
_PRE, _POST = (s.encode("ascii") for s in TEMPLATE.split("{CID}"))


def message(cid: bytes) -> bytes:
    """One unframed ADT^A01 payload with MSH-10 = ``cid``."""
    return _PRE + cid + _POST


def framed(cid: bytes) -> bytes:
    return SB + _PRE + cid + _POST + TRAILER


def check_ack(ack: bytes, cid: bytes) -> str | None:
    """None when ``ack`` (unframed) says AA for ``cid``, else what is wrong with it."""
    i = ack.find(b"\rMSA")
    if i < 0:
        return f"no MSA segment in ACK for {cid!r}: {ack[:80]!r}"
    j = ack.find(b"\r", i + 1)
    parts = ack[i + 1 : j if j > 0 else len(ack)].split(ack[i + 4 : i + 5] or b"|")
    code = parts[1] if len(parts) > 1 else b""
    got = parts[2] if len(parts) > 2 else b""
    if code != b"AA" or got != cid:
        return f"expected AA/{cid.decode()}, got MSA {code.decode()!r}/{got.decode()!r}"
    return None


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Pass:
    """Shared state of one pass (warm-up or measured) over all connections of this process."""

    def __init__(self, total: int, lat: array | None, progress_every: int = 0):
        self.total = total
        self.acked = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.lat = lat
        self.progress_every = progress_every
        self._next_progress = progress_every or -1
        self.done = asyncio.get_running_loop().create_future()
        self.start = time.monotonic()
        self.end = 0.0
        self._open = 0

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < MAX_ERRORS_KEPT:
            self.error_samples.append(text)

    def conn_started(self) -> None:
        self._open += 1

    def conn_finished(self) -> None:
        self._open -= 1
        if self._open <= 0 and not self.done.done():
            self.end = time.monotonic()
            self.done.set_result(None)

    def add_acked(self, n: int) -> None:
        self.acked += n
        if self.acked >= self._next_progress > 0:
            print(f"progress {self.acked}", flush=True)
            while self._next_progress <= self.acked:
                self._next_progress += self.progress_every


class Conn(asyncio.Protocol):
    """One MLLP connection keeping ``window`` messages in flight."""

    def __init__(self, tag: bytes, window: int):
        self.tag = tag
        self.window = window
        self.seq = 0
        self.buf = b""
        self.sent: deque = deque()  # (cid, send time), oldest first
        self.transport = None
        self.p: Pass | None = None
        self.to_send = 0
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        if not self.lost.done():
            self.lost.set_result(exc)
        p = self.p
        if p is not None and (self.sent or self.to_send):
            p.error(f"connection {self.tag.decode()} closed with {len(self.sent)} unanswered")
            self.sent.clear()
            self.to_send = 0
            self.p = None
            p.conn_finished()

    def start(self, p: Pass, count: int) -> None:
        if count <= 0:
            return
        if self.lost.done():  # the server closed it (max_connections, allow_addresses...)
            p.error(f"connection {self.tag.decode()} was closed by the server before the pass")
            return
        self.p = p
        self.to_send = count
        p.conn_started()
        self._send(min(self.window, count))

    def _send(self, k: int) -> None:
        now = time.monotonic()
        out = []
        sent = self.sent
        tag = self.tag
        seq = self.seq
        for _ in range(k):
            seq += 1
            cid = b"%s%d" % (tag, seq)
            out.append(SB + _PRE + cid + _POST + TRAILER)
            sent.append((cid, now))
        self.seq = seq
        self.to_send -= k
        self.transport.write(b"".join(out))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        now = time.monotonic()
        p = self.p
        sent = self.sent
        pos = 0
        n = 0
        lat = p.lat if p is not None else None
        while True:
            end = buf.find(TRAILER, pos)
            if end < 0:
                break
            start = buf.find(SB, pos, end)
            ack = buf[start + 1 : end] if start >= 0 else buf[pos:end]
            pos = end + 2
            if p is None or not sent:
                if p is not None:
                    p.error(f"unexpected ACK on {self.tag.decode()}: {ack[:80]!r}")
                continue
            cid, t = sent.popleft()
            n += 1
            if start < 0:
                p.error(f"ACK for {cid.decode()} has no start block")
            # Fast path: the usual ACK holds b"\rMSA|AA|<cid>\r" (or at the very end).
            i = ack.find(b"\rMSA|AA|" + cid)
            k = i + 8 + len(cid)
            if i < 0 or (k < len(ack) and ack[k] not in (13, 124)):
                p.error(check_ack(ack, cid) or f"malformed ACK for {cid.decode()}")
            if lat is not None:
                lat.append(now - t)
        self.buf = buf[pos:] if pos < len(buf) else b""
        if n and p is not None:
            p.add_acked(n)
            k = min(n, self.to_send)
            if k:
                self._send(k)
            elif not sent and not self.to_send:
                self.p = None
                p.conn_finished()


def split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


async def run(args) -> dict:
    loop = asyncio.get_running_loop()
    conns: list[Conn] = []
    deadline = time.monotonic() + args.time_cap
    result: dict = {"pid": os.getpid(), "conns": args.conns, "window": args.window}
    try:
        for c in range(args.conns):
            tag = b"%s%dc%d." % (args.tag.encode(), os.getpid(), c)
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda t=tag: Conn(t, args.window), HOST, args.port),
                timeout=10,
            )
            conns.append(proto)
    except (OSError, TimeoutError) as exc:
        result["error"] = f"connect failed: {exc!r}"
        return result

    async def one_pass(total: int, lat, progress_every: int = 0) -> Pass:
        p = Pass(total, lat, progress_every)
        for conn, count in zip(conns, split(total, len(conns)), strict=True):
            conn.start(p, count)
        if p._open == 0:
            p.end = p.start
            return p
        try:
            await asyncio.wait_for(asyncio.shield(p.done), max(0.1, deadline - time.monotonic()))
        except TimeoutError:
            p.end = time.monotonic()
            p.error(f"time cap reached after {p.acked} of {total} ACKs")
            result["timed_out"] = True
        return p

    if args.warmup:
        w = await one_pass(args.warmup, None)
        result["warmup_errors"] = w.error_samples
        if w.errors:
            result["error"] = "warm-up failed"
            return result
    if args.coordinated:
        print("ready", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if line.strip() != "go":
            result["error"] = "no go"
            return result
    lat = array("d")
    cpu0 = _cpu()
    p = await one_pass(args.messages, lat, args.progress_every)
    cpu1 = _cpu()
    for conn in conns:
        conn.transport.close()
    result.update(
        messages=args.messages,
        acked=p.acked,
        errors=p.errors,
        error_samples=p.error_samples,
        start=p.start,
        end=p.end,
        cpu_s=cpu1 - cpu0,
    )
    if args.lat_file:
        with open(args.lat_file, "wb") as f:
            lat.tofile(f)
    else:
        s = sorted(lat)
        wall = max(p.end - p.start, 1e-9)
        result.update(
            msg_per_s=round(p.acked / wall, 1),
            p50_ms=round(s[len(s) // 2] * 1e3, 3) if s else None,
            p99_ms=round(s[min(len(s) - 1, int(len(s) * 0.99))] * 1e3, 3) if s else None,
            cpu_us_per_msg=round((cpu1 - cpu0) / max(p.acked, 1) * 1e6, 1),
        )
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="MLLP load generator (127.0.0.1 only)")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=1)
    ap.add_argument("--window", type=int, default=1, help="messages in flight per connection")
    ap.add_argument("--messages", type=int, default=10000, help="measured messages, in total")
    ap.add_argument("--warmup", type=int, default=0, help="warm-up messages before the run")
    ap.add_argument("--time-cap", type=float, default=300.0, help="seconds for the whole run")
    ap.add_argument("--tag", default="LG", help="MSH-10 prefix")
    ap.add_argument("--lat-file", help="write latencies (native doubles, seconds) here")
    ap.add_argument("--progress-every", type=int, default=0)
    ap.add_argument("--coordinated", action="store_true", help="ready/go protocol on stdio")
    args = ap.parse_args(argv)
    if args.conns < 1 or args.window < 1 or args.messages < 0:
        ap.error("--conns and --window must be >= 1")
    result = asyncio.run(run(args))
    print(("result " if args.coordinated else "") + json.dumps(result), flush=True)
    return 1 if result.get("error") or result.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
