"""File destination: one file per message, written atomically (temp file, fsync, rename)."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread

from engine.delivery.outcome import Delivery, Outcome

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


class FileSender:
    state = "up"

    def __init__(self, config, ctx):
        self.directory = Path(config.file)
        self.template = config.filename

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)

    def stop(self) -> Deferred:
        from twisted.internet.defer import succeed

        return succeed(None)

    def filename(self, delivery: Delivery) -> str:
        payload = delivery.payload
        first = payload.split(b"\r", 1)[0].decode("latin-1")
        fields = first.split(first[3]) if first.startswith("MSH") and len(first) > 3 else []
        msh9 = fields[8].split("^") if len(fields) > 8 else [""]
        values = {
            "control_id": delivery.control_id or (fields[9] if len(fields) > 9 else ""),
            "message_id": delivery.message_id,
            "delivery_id": delivery.id,
            "type": msh9[0],
            "trigger": msh9[1] if len(msh9) > 1 else "",
            "channel": delivery.channel,
            "timestamp": time.strftime("%Y%m%d%H%M%S", time.gmtime(delivery.created_at)),
        }
        try:
            name = self.template.format(**values)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"filename template {self.template!r}: {exc}") from None
        name = _UNSAFE.sub("_", name).lstrip(".") or f"{delivery.id}.hl7"
        return name

    def _write(self, delivery: Delivery) -> Outcome:
        try:
            name = self.filename(delivery)
        except ValueError as exc:
            return Outcome.dead(str(exc))
        target = self.directory / name
        tmp = self.directory / f".{name}.{delivery.id}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as f:
                f.write(delivery.payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            return Outcome.retry(f"cannot write {target}: {exc.strerror}")
        return Outcome.ok(None, f"wrote {target.name}")

    def send(self, delivery: Delivery) -> Deferred:
        return deferToThread(self._write, delivery)
