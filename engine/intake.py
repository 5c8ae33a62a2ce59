"""Intake: one payload in, a durable row and the right ACK out.

The decision (accept, reject, which ACK) is a pure function of the payload and the listener's
settings (:func:`assess`); :class:`Intake` adds routing, the durable write, duplicate replay
and metrics. The ACK is written only after the row's commit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from engine.channel import ERRORED, FILTERED, PASSED, ChannelResult
from engine.hl7.ack import ENHANCED, AckError, build_ack
from engine.hl7.header import Header, NoUsableHeader, normalize_segments, read_header
from engine.hl7.message import Message
from engine.logging import get_logger
from engine.message_row import _children, _patient_id, dedup_key, fingerprint_parts
from engine.store.crypto import seal_row
from engine.store.retention import METADATA_ONLY, message_mode, storage_mode_rows
from engine.store.schema import ERRORED as ERRORED_STATUS
from engine.store.schema import FILTERED as FILTERED_STATUS
from engine.store.schema import REJECTED, ROUTED, UNROUTED

ACK_MODES = ("on_receipt", "after_routing")
_ACK_CONDITIONS = ("", "AL", "NE", "ER", "SU")


@dataclass(slots=True)
class Assessment:
    """What intake makes of a payload before storing it."""

    header: Header | None
    status: str
    reason: str | None = None
    reason_code: str | None = None  # low-cardinality reason for metrics
    code: str | None = None  # AA / AE / AR before enhanced mapping; None: no ACK possible
    errors: list[AckError] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    message: _LazyMessage | None = None
    results: list[ChannelResult] = field(default_factory=list)
    norm: bytes = b""  # the payload with CR separators (what the header was read from)


class _LazyMessage:
    """Parse the message on first use only (routes with `when`, channels)."""

    __slots__ = ("_message", "charset", "payload")

    def __init__(self, payload: bytes, charset: str):
        self.payload = payload
        self.charset = charset
        self._message: Message | None = None

    def __call__(self) -> Message:
        if self._message is None:
            self._message = Message.from_bytes(self.payload, self.charset)
        return self._message


def apply_channels(a: Assessment, pipeline, listener) -> None:
    """Run the routed channels and fold their outcome into status, ACK code and ERRs.

    A step error keeps the message (status errored, with channel, step and reason); in
    after_routing mode it answers AE: validation failures as their ERR list, other failures
    as ERR 207 naming the channel and step (HAPI's and Camel's choice for downstream errors,
    protocol.md case 44).
    """
    if a.status != ROUTED or not pipeline.channels:
        return
    name = listener.name
    channels = [pipeline.channels[ch] for ch in a.channels]
    if all(ch.empty for ch in channels):  # nothing to run: no need to parse the message
        a.results = [ChannelResult(ch.name, PASSED) for ch in channels]
        return
    message = a.message()
    a.results = [ch.run(message, listener=name) for ch in channels]
    errored = [r for r in a.results if r.status == ERRORED]
    if errored:
        a.status = ERRORED_STATUS
        first = errored[0]
        a.reason = f"channel {first.channel} step {first.step} ({first.step_kind}): {first.reason}"
        a.reason_code = "step_error"
        if listener.ack == "after_routing":
            a.code = "AE"
            for r in errored:
                where = f"channel {r.channel} step {r.step} ({r.step_kind})"
                a.errors.extend(r.errors or [AckError(207, f"{where}: {(r.reason or '')[:200]}")])
    elif all(r.status == FILTERED for r in a.results):
        a.status = FILTERED_STATUS


def assess(payload: bytes, listener, router=None) -> Assessment:
    """Decide status and ACK code for one payload (protocol.md sections B and C), before
    channels run (see :func:`apply_channels`)."""
    norm = normalize_segments(payload) if listener.normalize_newlines else payload
    try:
        header = read_header(norm, listener.charset)
    except NoUsableHeader as exc:
        return Assessment(None, REJECTED, str(exc), "no_msh")
    a = Assessment(header, REJECTED, norm=norm)
    if not header.charset_known:
        a.warnings.append("unknown_charset")
    end = norm.find(b"\r")
    if header.message_type == "ACK" or (end >= 0 and norm[end + 1 : end + 4] == b"MSA"):
        a.reason, a.reason_code = "unsolicited acknowledgement: not acknowledged", "ack_received"
        return a
    if not header.control_id:
        a.errors.append(AckError(101, "MSH-10 message control id is empty", "MSH", 10))
    if not header.encoding_ok:
        a.errors.append(
            AckError(102, f"MSH-2 encoding characters {header.field(2)!r} are not valid", "MSH", 2)
        )
    if not header.message_type:
        a.errors.append(AckError(101, "MSH-9 message type is empty", "MSH", 9))
    versions = listener.versions
    if versions and header.version not in versions:
        a.errors.append(
            AckError(203, f"version {header.version!r} is not accepted here", "MSH", 12)
        )
    pids = listener.processing_ids
    if pids and header.processing_id not in pids:
        a.errors.append(
            AckError(202, f"processing id {header.processing_id!r} is not accepted here", "MSH", 11)
        )
    for n, value in ((15, header.accept_ack_type), (16, header.application_ack_type)):
        if value not in _ACK_CONDITIONS:
            a.errors.append(
                AckError(103, f"MSH-{n} {value!r} is not one of AL, NE, ER, SU", "MSH", n)
            )
    if a.errors:
        a.code = "AR"
        a.reason = "; ".join(e.detail for e in a.errors)
        a.reason_code = f"err_{a.errors[0].code}"
        return a
    a.message = _LazyMessage(payload, header.charset)
    a.channels = router.channels_for(listener.name, header, a.message) if router else []
    if a.channels:
        a.status, a.code = ROUTED, "AA"
    else:
        a.status, a.code = UNROUTED, "AA"
        if listener.ack == "after_routing":
            kind = f"type {header.message_type}"
            if header.trigger:
                kind += f" trigger {header.trigger}"
            a.code = "AR"
            a.reason, a.reason_code = f"no route for {kind}", "no_route"
            a.errors.append(AckError(200, a.reason, "MSH", 9))
    return a


def ack_code_to_send(a: Assessment, enhanced_ack: bool = True) -> str | None:
    """The MSA-1 to send, or None when no ACK goes back (no MSH, or MSH-15 says so)."""
    if a.code is None or a.header is None:
        return None
    h = a.header
    if enhanced_ack and h.enhanced and not any(e.field in (15, 16) for e in a.errors):
        condition = h.accept_ack_type or "AL"
        if condition == "NE":
            return None
        if condition == "ER" and a.code == "AA":
            return None
        if condition == "SU" and a.code != "AA":
            return None
        return ENHANCED[a.code]
    return a.code


class Intake:
    """Per-listener intake: assess, route, store durably, then answer.

    Built as ``Intake(listener settings, ctx)``: the context gives the store writer, the
    current pipeline (a callable: a reload swaps it whole), ``notify`` (deliveries committed),
    the sealer (raw, ack and payloads sealed at rest), metrics and the clock."""

    def __init__(self, listener, ctx):
        self.listener = listener
        self.name = listener.name
        self.writer = ctx.writer
        self._pipeline = ctx.pipeline
        self.notify = ctx.notify  # callable(set of (channel, destination)) or None
        self.sealer = ctx.sealer
        self.clock = ctx.clock
        self.window = float(listener.duplicate_window or 0)
        self.enhanced_ack = listener.enhanced_ack
        self.on_conflict = listener.on_conflicting_duplicate
        # the row's policy for the store writer (engine.store.dedup); None: the first ACK
        self._conflict_policy = {"ack_first": None, "process": _store_as_is,
                                 "reject": self._reject_conflict}[self.on_conflict]  # fmt: skip
        self.log = get_logger("intake", listener=self.name)
        m = ctx.metrics
        self.m_received = m.received.labels(self.name)
        self.m_dup = m.duplicates.labels(self.name)
        self.m_conflicts = m.conflicting_duplicates.labels(self.name, self.on_conflict)
        self.m_reprocessed = m.reprocessed.labels(self.name)
        self.m_latency = m.ack_latency.labels(self.name)
        self.m_store_errors = m.store_errors.labels(self.name)
        self._acks = m.acks
        self._rejected = m.rejected
        self._channel_messages = m.channel_messages
        self._channel_children: dict[tuple[str, str], object] = {}
        self._ack_children: dict[str, object] = {}
        self._step_errors = m.step_errors

    @property
    def pipeline(self):
        """The routes and channels a message goes through now (swapped whole on reload)."""
        return self._pipeline()

    # building rows ---------------------------------------------------------------------
    def prepare(self, payload: bytes, peer: str, peer_cert: str | None = None):
        """Assess a payload and build its row and ACK; nothing is written yet."""
        pipeline = self.pipeline
        a = assess(payload, self.listener, pipeline.router)
        apply_channels(a, pipeline, self.listener)
        h = a.header
        now = self.clock.seconds()
        key = dedup_key(h) if h is not None and h.control_id else None
        code = ack_code_to_send(a, self.enhanced_ack)
        ack = None
        if code is not None:
            charset = h.charset
            ack = build_ack(h, code, now=now, errors=a.errors).encode(charset, errors="replace")
        row = {
            "received_at": now,
            "listener": self.name,
            "peer": peer,
            "peer_cert": peer_cert,
            "control_id": h.control_id[:199] if h else "",
            "message_type": h.message_type[:16] if h else "",
            "trigger": h.trigger[:16] if h else "",
            "version": h.version[:16] if h else "",
            "processing_id": h.processing_id[:8] if h else "",
            "sending_application": h.sending_application[:227] if h else "",
            "sending_facility": h.sending_facility[:227] if h else "",
            "dedup_key": key,
            "status": a.status,
            "reason": a.reason,
            "routes": ",".join(a.channels) or None,
            "charset": h.charset if h else "",
            "size": len(payload),
            "ack_code": code,
            "ack": ack,
            "duplicates": 0,
            "source_file": None,
            "raw": payload,
            "patient_id": _patient_id(a.norm, h),
            "body_hash": None,
            "reprocess_of": None,
            "conflicts_with": None,
        }
        if key is not None and self.window > 0:  # duplicate detection (engine.store.dedup)
            row["body_hash"] = self.sealer.fingerprint(fingerprint_parts(a.norm, h.sep))
            row["_on_conflict"] = self._conflict_policy
            row["_a"] = a
        if a.results:
            row["_runs"], row["_deliveries"] = _children(a.results, now)
        if pipeline.default_storage != "everything" or any(pipeline.storage.values()):
            mode = message_mode(row["routes"], pipeline.storage, pipeline.default_storage)
            row, _, _ = storage_mode_rows(
                mode, row, row.get("_runs") or [], row.get("_deliveries") or []
            )
        row["_ack"] = row["ack"]  # the plaintext ACK to send (the stored one may be sealed)
        return a, seal_row(self.sealer, row)

    def record(self, a: Assessment, row: dict, result) -> bytes | None:
        """Metrics and logs once the row is durable; returns the ACK to send."""
        self.m_received.inc()
        if result.conflict_with is not None:
            self._conflicted(a, row, result)
        elif result.reprocess_of is not None or row.get("reprocess_of") is not None:
            self.m_reprocessed.inc()
            self.log.info("taken in again", message_id=result.id,
                          reprocess_of=result.reprocess_of or row["reprocess_of"],
                          control_id=row["control_id"])  # fmt: skip
        changes = result.changes or row
        if result.duplicate_of is not None:
            if result.conflict_with is None:
                self.m_dup.inc()
                self.log.info("duplicate", message_id=result.id, control_id=row["control_id"])
            ack = self.sealer.open(result.ack)  # replayed from the store: sealed
            code = row["ack_code"] if ack is None else _msa1(ack)
        else:
            ack, code = changes["_ack"], changes["ack_code"]
            if a.status == REJECTED:
                self._rejected.labels(self.name, a.reason_code or "other").inc()
                if result.conflict_with is None:  # a conflict has its own warning
                    self.log.warning("rejected", message_id=result.id,
                                     control_id=row["control_id"], reason=a.reason_code,
                                     ack=code)  # fmt: skip
            if "unknown_charset" in a.warnings:
                self.log.warning(
                    "unknown MSH-18 character set; used the listener default",
                    message_id=result.id,
                    charset=row["charset"],
                )
        if code is not None:
            child = self._ack_children.get(code)
            if child is None:
                child = self._ack_children[code] = self._acks.labels(self.name, code)
            child.inc()
        outputs = changes.get("_deliveries")
        if result.duplicate_of is None and self.notify is not None and outputs:
            self.notify({(o["channel"], o["destination"]) for o in outputs})
        if result.duplicate_of is None:
            for r in a.results:
                self._count_channel(r.channel, r.status)
                if r.status == ERRORED:
                    self._step_errors.labels(r.channel, f"{r.step} {r.step_kind}").inc()
                    # the reason may quote message content: debug only
                    self.log.warning("step failed", message_id=result.id, channel=r.channel,
                                     step=r.step, step_kind=r.step_kind)  # fmt: skip
                    self.log.debug("step failure reason", message_id=result.id, reason=r.reason)
        return ack

    def _conflicted(self, a: Assessment, row: dict, result) -> None:
        """Same MSH-10 and sender as an earlier message, another body: counted and logged
        (ids and codes only); a rejection's assessment replaces the message's."""
        self.m_conflicts.inc()
        kept = result.duplicate_of is None
        self.log.warning("conflicting duplicate: same MSH-10 and sender, different body",
                         message_id=result.id if kept else None,
                         first_message_id=result.conflict_with, control_id=row["control_id"],
                         action=self.on_conflict)  # fmt: skip
        rejected = (result.changes or {}).get("_a")
        if rejected is not None:
            a.status, a.code, a.errors = rejected.status, rejected.code, rejected.errors
            a.reason, a.reason_code, a.results = rejected.reason, rejected.reason_code, []

    def _reject_conflict(self, row: dict) -> dict:
        """on_conflicting_duplicate: reject. The columns that change: stored as rejected and
        not routed, answered AR with an ERR saying why. Called by the store writer, on its
        thread (engine.store.dedup): it reads only the row and this listener's settings."""
        a = row["_a"]
        h = a.header
        if a.status == REJECTED:  # rejected anyway, for its own reasons: stored as it is
            return {}
        why = f"MSH-10 {h.control_id} from this sender was already taken in with a different body"
        b = Assessment(h, REJECTED, f"conflicting duplicate: {why}", "conflicting_duplicate",
                       "AR", [AckError(205, why, "MSH", 10)], norm=a.norm)  # fmt: skip
        code = ack_code_to_send(b, self.enhanced_ack)
        ack = None
        if code is not None:
            text = build_ack(h, code, now=row["received_at"], errors=b.errors)
            ack = text.encode(h.charset, errors="replace")
        changes = {"status": REJECTED, "reason": b.reason, "routes": None, "ack_code": code,
                   "ack": self.sealer.seal(ack) if ack else ack, "_ack": ack, "_runs": None,
                   "_deliveries": None, "_a": b}  # fmt: skip
        pipeline = self.pipeline
        if message_mode(None, pipeline.storage, pipeline.default_storage) == METADATA_ONLY:
            changes["raw"] = b""  # nothing to deliver: not kept (storage modes)
        return changes

    # MLLP path -------------------------------------------------------------------------
    def handle(self, payload: bytes, peer: str, peer_cert: str | None = None) -> Deferred:
        """Store one MLLP payload; fires with the ACK bytes to send (unframed) or None."""
        d = Deferred()
        self.handle_then(payload, peer, peer_cert, d.callback)
        return d

    def handle_then(self, payload: bytes, peer: str, peer_cert: str | None, reply) -> None:
        """:meth:`handle` with a plain callback: ``reply(ack or None)`` once the row is
        durable (or its write failed). Never raises for a bad payload."""
        started = time.perf_counter()
        a, row = self.prepare(payload, peer, peer_cert)
        self._store_then(a, row, self.window if row["dedup_key"] else 0.0, started, reply)

    def reprocess(self, payload: bytes, original_id: int, peer: str,
                  stands_in: tuple | None = None) -> Deferred:  # fmt: skip
        """Take a stored message in again on the current config (an operator's replay):
        routing, channels, storage modes and outputs as for any message, without the
        duplicate check, stored linked to the original. ``stands_in``: the original's
        (dedup_key, body_hash) when ``payload`` is an edited body; with the same dedup_key it
        takes the original's fingerprint, so the sender's resend of the original is answered
        as its duplicate. Fires with {id, status, ack_code, ack}, or None (not stored)."""
        started = time.perf_counter()
        a, row = self.prepare(payload, peer)
        row["reprocess_of"] = original_id
        if stands_in is not None and stands_in[0] == row["dedup_key"] and stands_in[1]:
            row["body_hash"] = stands_in[1]
        d = Deferred()

        def reply(ack, result) -> None:
            d.callback(None if result is None else {
                "id": result.id, "status": row["status"], "ack_code": row["ack_code"],
                "ack": ack})  # fmt: skip

        self._store_then(a, row, 0.0, started, reply, with_result=True)
        return d

    def _store_then(self, a, row, window, started, reply, with_result=False) -> None:
        def stored(outcome) -> None:
            result = None
            if isinstance(outcome, Failure):
                ack = self.store_failed(a, outcome)
            else:
                result = outcome[0]
                try:
                    ack = self.record(a, row, result)
                except Exception as exc:  # a bug in metrics or logging: the row is durable
                    # the exception's text may quote message content: its type only here
                    self.log.error("intake bookkeeping failed", error=type(exc).__name__)
                    self.log.debug("intake bookkeeping failure", exc_info=True)
                    ack = (result.changes or row)["_ack"] if result.duplicate_of is None else None
                self.m_latency.observe(time.perf_counter() - started)
            if with_result:
                reply(ack, result)
            else:
                reply(ack)

        try:
            self.writer.submit_then([row], [window], stored)
        except Exception:
            failed = self.store_failed(a, Failure())
            if with_result:
                reply(failed, None)
            else:
                reply(failed)

    def _count_channel(self, channel: str, status: str) -> None:
        child = self._channel_children.get((channel, status))
        if child is None:
            child = self._channel_children[(channel, status)] = self._channel_messages.labels(
                channel, status
            )
        child.inc()

    def store_failed(self, a: Assessment, f: Failure) -> bytes | None:
        """Safe storage failed (case 45): CR in enhanced mode, AE otherwise; not routed."""
        self.m_store_errors.inc()
        self.log.error("store write failed", error=f.getErrorMessage()[:200])
        h = a.header
        if h is None or not h.control_id:
            return None
        code = "CR" if self.enhanced_ack and h.enhanced else "AE"
        self._acks.labels(self.name, code).inc()
        err = AckError(207, "message could not be stored; send it again")
        return build_ack(h, code, now=self.clock.seconds(), errors=[err]).encode(
            h.charset, errors="replace"
        )


def _store_as_is(row: dict) -> dict:
    """on_conflicting_duplicate: process. Stored and routed as a message of its own."""
    return {}


def _msa1(ack: bytes) -> str | None:
    i = ack.find(b"\rMSA")
    if i < 0:
        return None
    return ack[i + 5 : i + 7].decode("ascii", "replace")
