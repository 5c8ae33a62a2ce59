"""The delivery service: one worker per channel destination, each a named child service
("channel/destination"), started with the engine and changed on reload; queue gauges
refreshed from the store. Stopping it stops the workers together, each waiting (at most
``store_options.stop_timeout``) for its send in flight."""

from __future__ import annotations

import os
import socket
import uuid

from twisted.application.service import MultiService
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool

from engine.delivery.queue import QueueStore
from engine.delivery.worker import DestinationWorker
from engine.logging import get_logger
from engine.store.schema import OPEN_STATES

log = get_logger("delivery")


def node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class DeliveryService(MultiService):
    name = "delivery"
    depth_interval = 5.0

    def __init__(self, store_engine, options, ctx, pipeline, node: str | None = None):
        """Workers for the pipeline's destinations, timed by ``options`` (store_options);
        ``ctx`` gives the reactor, the writer, metrics and the sealer that opens payloads."""
        super().__init__()
        self.options = options
        self.ctx = ctx
        self.reactor = ctx.reactor
        self.writer = ctx.writer
        self.metrics = ctx.metrics
        self.node = node or node_id()
        self.queue = QueueStore(store_engine, self.node, ctx.sealer)
        self.pipeline = pipeline
        self.workers: dict[tuple[str, str], DestinationWorker] = {}
        self._configs: dict[tuple[str, str], dict] = {}
        self._depths = LoopingCall(self._refresh_depths)
        self._depths.clock = ctx.clock

    def _run_db(self, fn, *args):
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args)

    def _wanted(self, pipeline) -> dict[tuple[str, str], object]:
        """(channel, destination name) -> the destination, for every channel destination."""
        return {
            (name, target.destination.name): target.destination
            for name, channel in pipeline.channels.items()
            for target in channel.targets
        }

    def _start_worker(self, key, destination) -> None:
        o = self.options
        worker = DestinationWorker(
            key[0], destination.config, destination.sender(self.ctx), queue=self.queue,
            writer=self.writer, clock=self.ctx.clock, metrics=self.metrics,
            run_db=self._run_db, poll_interval=o.poll_interval, lease_ttl=o.lease_ttl,
            stop_timeout=o.stop_timeout,
        )  # fmt: skip
        self.workers[key] = worker
        self._configs[key] = destination.config
        worker.setServiceParent(self)  # starts it if delivery runs

    def startService(self) -> None:
        for key, destination in self._wanted(self.pipeline).items():
            self._start_worker(key, destination)
        super().startService()  # starts the workers
        self._depths.start(self.depth_interval, now=True).addErrback(
            lambda f: log.error("queue gauges stopped", error=f.getErrorMessage())
        )
        log.info("delivery started", node=self.node, destinations=len(self.workers))

    def stopService(self):
        if self._depths.running:
            self._depths.stop()
        return super().stopService()  # every worker at once; fires when all have stopped

    @inlineCallbacks
    def apply(self, pipeline):
        """Reload: restart the workers whose destination changed, add and remove the rest."""
        wanted = self._wanted(pipeline)
        self.pipeline = pipeline
        for key in list(self.workers):
            if key not in wanted or wanted[key].config != self._configs[key]:
                worker = self.workers.pop(key)
                self._configs.pop(key, None)
                yield worker.disownServiceParent()
        for key, destination in wanted.items():
            if key not in self.workers:
                self._start_worker(key, destination)

    def wake(self, keys) -> None:
        for key in keys:
            worker = self.workers.get(key)
            if worker is not None:
                worker.wake()

    def wake_all(self) -> None:
        self.wake(list(self.workers))

    @inlineCallbacks
    def _refresh_depths(self):
        now = self.reactor.seconds()
        try:
            depths = yield self._run_db(self.queue.depths, now)
        except Exception as exc:
            log.warning("queue depths unavailable", error=str(exc)[:200])
            return
        for e in depths:
            labels = (e["channel"], e["destination"])
            for state in OPEN_STATES:
                self.metrics.queue_depth.labels(*labels, state).set(e.get(state, 0))
            self.metrics.queue_depth.labels(*labels, "dead").set(e.get("dead", 0))
            self.metrics.oldest_pending_age.labels(*labels).set(e["oldest_age"])
