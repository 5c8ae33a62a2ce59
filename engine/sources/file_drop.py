"""The file-drop source (`directory:` on a listener): settled files claimed by atomic
rename, stored whole, then filed away.

A file is taken once its size and mtime have held still for ``settle_time`` (and its mtime is
that old), renamed into ``.processing/``, split (:mod:`engine.hl7.batch`) and all its messages
written in one transaction with its ``files`` row. Then the ACK goes to ``done/<name>.ack`` and
the file to ``done/``; a rejected file goes to ``error/`` with ``<name>.reason`` beside it. The
``files`` row (listener, name, sha256) makes a restart or a second drop of the same file
harmless: it is filed away, never stored twice. A failed store write puts the file back in the
drop directory to be tried again.
"""

from __future__ import annotations

import hashlib
import os
from fnmatch import fnmatchcase
from pathlib import Path

from sqlalchemy import select
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure

from engine.config import Field, Spec
from engine.config.fieldtypes import DirPath
from engine.config.scalars import Duration, String
from engine.hl7.batch import Batch, BatchError, file_ack, split_file
from engine.intake import Intake
from engine.logging import get_logger
from engine.store.schema import REJECTED, files

DONE = "done"
ERROR = "error"
PROCESSING = ".processing"
DUPLICATE = "duplicate"  # metrics outcome: the same file dropped again

SPEC = Spec(
    "directory",
    "Take files dropped in a directory (one message, or FHS/BHS batches).",
    (
        Field(
            "directory",
            DirPath(),
            "Directory to take files from; done/ and error/ are made beside it.",
            required=True,
            example="drop/in",
        ),
        Field(
            "poll_interval",
            Duration(),
            "How often the directory is scanned.",
            default="1s",
        ),
        Field(
            "settle_time",
            Duration(),
            "A file must stay unchanged this long before it is taken.",
            default="2s",
        ),
        Field(
            "pattern",
            String(),
            "Glob of the file names to take.",
            default="*",
            example="*.hl7",
        ),
    ),
)


class FileDropService(Service):
    """Polls one drop directory and feeds its files through intake:
    ``FileDropService(listener settings, ctx)``, its intake built with it."""

    kind = "directory"
    spec = SPEC

    def __init__(self, listener, ctx):
        self.setName(listener.name)
        self.listener = listener
        self.listener_name = listener.name
        self.directory = Path(listener.directory)
        self.done_dir = self.directory / DONE
        self.error_dir = self.directory / ERROR
        self.processing_dir = self.directory / PROCESSING
        self.poll_interval = listener.poll_interval
        self.settle_time = listener.settle_time
        self.pattern = listener.pattern
        self.peer = f"file:{self.listener_name}"
        self.intake = Intake(listener, ctx)
        self.writer = ctx.writer
        self.clock = ctx.clock
        self.reactor = ctx.reactor
        self.log = get_logger("file_drop", listener=self.listener_name)
        self._outcomes = {
            o: ctx.metrics.files.labels(self.listener_name, o) for o in (DONE, ERROR, DUPLICATE)
        }
        self._seen: dict[str, tuple[tuple[int, int], float]] = {}  # name -> (size, mtime), since
        self._busy = False
        self._waiters: list[Deferred] = []
        self._loop: LoopingCall | None = None

    # service ---------------------------------------------------------------------------
    def startService(self) -> None:
        super().startService()
        for d in (self.done_dir, self.error_dir, self.processing_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._run(self._recover())
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(self.poll_interval, now=False).addErrback(self._crashed)

    def stopService(self) -> Deferred:
        """Stop polling; fires once the file in progress is finished."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return self.whenIdle()

    def whenIdle(self) -> Deferred:
        """Fires when no recovery or poll is in progress."""
        if not self._busy:
            return succeed(None)
        d = Deferred()
        self._waiters.append(d)
        return d

    def _tick(self) -> None:
        if not self._busy:  # never re-entrant: skip the tick while a file is in progress
            self._run(self._scan())

    def _run(self, work) -> None:
        self._busy = True
        Deferred.fromCoroutine(work).addErrback(self._crashed).addBoth(self._idle)

    def _idle(self, _) -> None:
        self._busy = False
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def _crashed(self, f: Failure) -> None:
        self.log.error("file drop poll failed", error=_brief(f.value))

    # finding and claiming files --------------------------------------------------------
    async def _recover(self) -> None:
        """Files left in .processing/ by a stop or crash: filed away if recorded, else processed."""
        with os.scandir(self.processing_dir) as it:
            names = sorted(e.name for e in it if e.is_file(follow_symlinks=False))
        for name in names:
            if not self.running:
                break
            await self._process_one(self.processing_dir / name, name, recovering=True)

    async def _scan(self) -> None:
        for name in self._settled():
            if not self.running:
                break
            path = self._claim(name)
            if path is not None:
                await self._process_one(path, name, recovering=False)

    def _settled(self) -> list[str]:
        """Names of files whose size and mtime held still for settle_time, oldest first."""
        now = self.clock.seconds()
        seen: dict[str, tuple[tuple[int, int], float]] = {}
        try:
            with os.scandir(self.directory) as it:
                entries = list(it)
        except OSError as exc:
            self.log.error("cannot list drop directory", error=_brief(exc))
            return []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or not fnmatchcase(name, self.pattern):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # vanished
            key = (st.st_size, st.st_mtime_ns)
            prev = self._seen.get(name)
            seen[name] = (key, prev[1] if prev is not None and prev[0] == key else now)
        self._seen = seen
        settle = self.settle_time
        ready = [
            (key[1], name)
            for name, (key, since) in seen.items()
            if now - since >= settle and now - key[1] / 1e9 >= settle
        ]
        return [name for _, name in sorted(ready)]

    def _claim(self, name: str) -> Path | None:
        target = self.processing_dir / name
        if target.exists():
            return None  # a file of that name is still in progress
        try:
            os.rename(self.directory / name, target)
        except FileNotFoundError:
            return None  # taken or deleted meanwhile
        except OSError as exc:
            self.log.warning("cannot claim file", file=name, error=_brief(exc))
            return None
        self._seen.pop(name, None)
        return target

    # processing ------------------------------------------------------------------------
    async def _process_one(self, path: Path, name: str, *, recovering: bool) -> None:
        try:
            await self._process(path, name, recovering)
        except Exception as exc:
            self.log.error("file processing failed", file=name, error=_brief(exc))

    async def _process(self, path: Path, name: str, recovering: bool) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            await self._reject(path, name, "", 0, f"unreadable: {exc.strerror or exc}")
            return
        digest = hashlib.sha256(data).hexdigest()
        try:
            recorded = await deferToThreadPool(
                self.reactor, self.reactor.getThreadPool(), self._lookup, name, digest
            )
        except Exception as exc:
            self._release(path, name, "store lookup failed", exc)
            return
        if recorded is not None:
            if recovering:
                self._file_recorded(path, name, data, *recorded)
            else:
                target = self._place(path, name, self.error_dir, b"already processed\n", ".reason")
                self._outcomes[DUPLICATE].inc()
                self.log.warning("file already processed", file=name, moved_to=target.name)
            return
        try:
            batch = split_file(data)
        except BatchError as exc:
            await self._reject(path, name, digest, len(data), exc.reason)
            return
        await self._store(path, name, digest, len(data), batch)

    def _lookup(self, name: str, digest: str) -> tuple[str, str | None] | None:
        """(status, reason) of the files row for this file, or None (runs in a thread)."""
        f = files.c
        query = select(f.status, f.reason).where(
            f.listener == self.listener_name, f.name == name, f.sha256 == digest
        )
        with self.writer.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (row.status, row.reason)

    def _file_row(self, name: str, digest: str, size: int, status: str, n: int, reason) -> dict:
        return {"listener": self.listener_name, "name": name, "sha256": digest, "size": size,
                "processed_at": self.clock.seconds(), "status": status, "messages": n,
                "reason": reason}  # fmt: skip

    async def _store(self, path: Path, name: str, digest: str, size: int, batch: Batch) -> None:
        prepared = [self.intake.prepare(m, peer=self.peer) for m in batch.messages]
        rows = [row for _, row in prepared]
        windows = [self.intake.window if row["dedup_key"] else 0.0 for row in rows]
        record = self._file_row(name, digest, size, DONE, len(rows), None)
        try:
            results = await self.writer.submit(rows, windows, file=record)
        except Exception as exc:
            self._release(path, name, "store write failed", exc)
            return
        acks = [
            self.intake.record(a, row, result)
            for (a, row), result in zip(prepared, results[1:], strict=True)
        ]
        target = self._place(path, name, self.done_dir, self._ack(batch, prepared, acks), ".ack")
        self._outcomes[DONE].inc()
        self.log.info(
            "file processed",
            file=name,
            moved_to=target.name,
            messages=len(rows),
            rejected=sum(row["status"] == REJECTED for row in rows),
            duplicates=sum(r.duplicate_of is not None for r in results[1:]),
        )

    async def _reject(self, path: Path, name: str, digest: str, size: int, reason: str) -> None:
        record = self._file_row(name, digest, size, ERROR, 0, reason)
        try:
            await self.writer.submit([], [], file=record)
        except Exception as exc:
            self.log.error("could not record rejected file", file=name, error=_brief(exc))
        target = self._place(path, name, self.error_dir, f"{reason}\n".encode(), ".reason")
        self._outcomes[ERROR].inc()
        self.log.warning("file rejected", file=name, moved_to=target.name, reason=reason)

    def _ack(self, batch: Batch, prepared: list, acks: list) -> bytes | None:
        """The batch ACK, or the per-message ACKs of a headerless file (None: nothing to send)."""
        assessments = [a for a, _ in prepared]
        text = file_ack(batch, assessments, self.clock.seconds())
        if text is None:
            return b"".join(ack for ack in acks if ack) or None
        charset = next((a.header.charset for a in assessments if a.header is not None), "latin-1")
        return text.encode(charset, errors="replace")

    def _file_recorded(self, path: Path, name: str, data: bytes, status: str, reason) -> None:
        """A file already in the store found in .processing/ after a restart: file it away."""
        if status == ERROR:
            directory, suffix = self.error_dir, ".reason"
        else:
            directory, suffix = self.done_dir, ".ack"
        target = directory / name
        if target.exists():
            target = _free_name(directory, name, suffix)
        companion = directory / (target.name + suffix)
        if not companion.exists():
            content = f"{reason}\n".encode() if status == ERROR else self._rebuilt_ack(data)
            if content is not None:
                _write_atomic(companion, content)
        os.rename(path, target)
        self.log.info("file was recorded before a restart", file=name, status=status)

    def _rebuilt_ack(self, data: bytes) -> bytes | None:
        """The ACK of a stored file whose ACK was not written: assessed again, not stored."""
        try:
            batch = split_file(data)
        except BatchError:
            return None
        prepared = [self.intake.prepare(m, peer=self.peer) for m in batch.messages]
        return self._ack(batch, prepared, [row["_ack"] for _, row in prepared])

    def _place(
        self, path: Path, name: str, directory: Path, companion: bytes | None, suffix: str
    ) -> Path:
        """Move a processed file to ``directory``, its companion (ACK or reason) beside it."""
        target = _free_name(directory, name, suffix)
        if companion is not None:
            _write_atomic(directory / (target.name + suffix), companion)
        os.rename(path, target)
        return target

    def _release(self, path: Path, name: str, what: str, exc: Exception) -> None:
        """The store failed: put the file back to be tried again (or at the next start)."""
        self.log.error(f"{what}; the file will be tried again", file=name, error=_brief(exc))
        back = self.directory / name
        if not back.exists():
            os.rename(path, back)


def _free_name(directory: Path, name: str, suffix: str) -> Path:
    """``directory/name``, or ``stem.N.ext`` when it or its companion file exists."""
    stem, ext = os.path.splitext(name)
    candidate, n = name, 0
    while (directory / candidate).exists() or (directory / (candidate + suffix)).exists():
        n += 1
        candidate = f"{stem}.{n}{ext}"
    return directory / candidate


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _brief(exc: BaseException) -> str:
    """First line of an error (database errors append SQL parameters: message content)."""
    return f"{type(exc).__name__}: {str(exc).split(chr(10), 1)[0][:200]}"
