"""Build the twisted.application service tree from a validated config.

Start order: store (migrations, writer thread), listeners, admin. Stop runs in reverse: the
admin and the listeners stop accepting, the writer commits what is queued (those ACKs still go
out), then the store closes.
"""

from __future__ import annotations

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import serverFromString

from engine.admin.server import admin_site
from engine.intake import Intake
from engine.logging import get_logger
from engine.metrics import Metrics
from engine.pipeline import build_pipeline
from engine.sources.mllp import MLLPServerFactory
from engine.store import migrations
from engine.store.db import create_store_engine
from engine.store.writer import StoreWriter

log = get_logger("app")


class StoreService(Service):
    """Runs migrations and owns the writer thread."""

    name = "store"

    def __init__(self, url: str, options: dict, reactor, metrics: Metrics):
        self.url = url
        self.engine = create_store_engine(
            url,
            synchronous=options.get("synchronous", "full"),
            pool_size=options.get("pool_size", 5),
        )
        self.writer = StoreWriter(
            self.engine,
            reactor,
            max_batch=options.get("max_batch", 2000),
            observer=metrics.observe_commit,
        )

    def startService(self) -> None:
        migrations.upgrade(self.engine)
        self.writer.start()
        super().startService()

    def stopService(self):
        super().stopService()
        return self.writer.stop()


class ListenerService(StreamServerEndpointService):
    _raiseSynchronously = True

    def __init__(self, endpoint, factory, description: str, mllp_factory=None):
        super().__init__(endpoint, factory)
        self.description = description
        self.mllp_factory = mllp_factory  # the MLLP factory under a TLS wrapper, if any

    def startService(self) -> None:
        super().startService()
        self._waitingForPort.addCallback(self._listening)

    def stopService(self):
        """Stop accepting, then wait (bounded) until every ACK owed has been written."""
        d = super().stopService()
        if self.mllp_factory is not None:
            drained = self.mllp_factory.stopReading()
            d.addCallback(lambda _: drained)
        return d

    def _listening(self, port):
        addr = port.getHost()
        self.address = addr
        log.info("listening", listener=self.name, endpoint=self.description,
                 port=getattr(addr, "port", None))  # fmt: skip
        return port


class Switchboard(MultiService):
    """The running engine: its config, store, listeners and admin."""

    def __init__(self, config, reactor):
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.metrics = Metrics()
        self.pipeline = build_pipeline(config, self.metrics)
        self.store = StoreService(config.store, config.store_options, reactor, self.metrics)
        self.store.setServiceParent(self)
        self.intakes: dict[str, Intake] = {}
        self.listeners: dict[str, Service] = {}
        for listener in config.listeners:
            self._add_listener(listener)
        self.admin = None
        if config.admin:
            site = admin_site(self.metrics.registry, self.health)
            self.admin = ListenerService(
                serverFromString(reactor, config.admin["listen"]), site, config.admin["listen"]
            )
            self.admin.setName("admin")
            self.admin.setServiceParent(self)

    @property
    def writer(self) -> StoreWriter:
        return self.store.writer

    def _add_listener(self, listener: dict) -> None:
        name = listener["name"]
        intake = Intake(
            listener,
            writer=self.writer,
            pipeline=self.pipeline,
            metrics=self.metrics,
            clock=self.reactor,
        )
        self.intakes[name] = intake
        if listener.get("mllp"):
            tls = listener.get("tls")
            factory = MLLPServerFactory(listener, intake, self.metrics, self.reactor, bool(tls))
            wrapped = factory
            if tls:
                from engine.tls import wrap_server_factory

                wrapped = wrap_server_factory(factory, tls)
            svc = ListenerService(
                serverFromString(self.reactor, listener["mllp"]), wrapped, listener["mllp"], factory
            )
        else:
            from engine.sources.file_drop import FileDropService

            svc = FileDropService(
                listener,
                intake=intake,
                writer=self.writer,
                metrics=self.metrics,
                clock=self.reactor,
                reactor=self.reactor,
            )
        svc.setName(name)
        svc.setServiceParent(self)
        self.listeners[name] = svc

    def health(self) -> tuple[bool, dict]:
        thread = self.writer._thread
        store_ok = thread is not None and thread.is_alive()
        listeners = {
            name: ("running" if svc.running else "stopped") for name, svc in self.listeners.items()
        }
        ok = store_ok and all(v == "running" for v in listeners.values())
        return ok, {"store": "ok" if store_ok else "down", "listeners": listeners}

    def port_of(self, name: str) -> int:
        """The TCP port a listener (or 'admin') is bound to; for tests and port 0 configs."""
        svc = self.admin if name == "admin" else self.listeners[name]
        return svc._waitingForPort.result.getHost().port
