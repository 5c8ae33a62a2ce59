"""Build the twisted.application service tree from a validated config.

Every listener and the admin bind their addresses before anything else starts (see
:mod:`engine.lifecycle`). The tree, in start order: ``store`` (migrations, writer thread),
``retention``, ``delivery`` (a named child per destination worker), ``listeners`` (a named
child per listener) and ``admin``. Stop runs in reverse, each step after the one before has
finished: the admin and the listeners stop accepting and write the ACKs they owe; delivery
workers finish their sends in flight (bounded by ``store_options.stop_timeout``) and record
the outcomes; retention ends its batch; the writer commits what is queued and the store
closes.
"""

from __future__ import annotations

import time

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError

from engine.admin.server import admin_site
from engine.delivery.service import DeliveryService
from engine.intake import Intake
from engine.lifecycle import ListenError, OrderedMultiService
from engine.logging import get_logger
from engine.metrics import Metrics
from engine.pipeline import build_pipeline
from engine.sources.mllp import MLLPServerFactory, applies_live
from engine.store import migrations
from engine.store.checkpoint import WAL_LIMIT_PAGES, WalCheckpointer
from engine.store.crypto import sealer_from_options
from engine.store.db import create_store_engine, is_sqlite_file
from engine.store.retention import RetentionService
from engine.store.writer import GATHER_SECONDS, StoreWriter

log = get_logger("app")


class StoreService(Service):
    """Runs migrations and owns the writer thread."""

    name = "store"

    def __init__(self, url: str, options: dict, reactor, metrics: Metrics):
        self.url = url
        every = options.get("checkpoint_rows", 300) if is_sqlite_file(url) else 0
        self.engine = create_store_engine(
            url,
            synchronous=options.get("synchronous", "full"),
            pool_size=options.get("pool_size", 5),
            wal_autocheckpoint=WAL_LIMIT_PAGES if every else 0,
        )
        self.writer = StoreWriter(
            self.engine,
            reactor,
            max_batch=options.get("max_batch", 2000),
            observer=metrics.observe_commit,
            inline=options.get("inline_commit", True),
            checkpointer=WalCheckpointer(self.engine, every) if every else None,
            gather_seconds=options.get("gather_time", GATHER_SECONDS),
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

    def __init__(self, endpoint, factory, description: str, mllp_factory=None, label=None):
        super().__init__(endpoint, factory)
        self.description = description
        self.mllp_factory = mllp_factory  # the MLLP factory under a TLS wrapper, if any
        self.label = label  # how errors name it; default "listener '<name>'"

    def privilegedStartService(self) -> None:
        """Bind the address (at once: every endpoint here listens synchronously)."""
        try:
            super().privilegedStartService()
        except CannotListenError as exc:
            self._waitingForPort = None
            raise ListenError(self.label or f"listener '{self.name}'", self.description,
                              exc) from None  # fmt: skip
        self._waitingForPort.addCallback(self._listening)

    def stopService(self):
        """Stop accepting, then wait (bounded) until every ACK owed has been written."""
        if self._waitingForPort is None:  # never started listening
            self.running = False
            return None
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


def _sealer(config):
    """The store's sealer; a key that cannot be loaded is a config error at its location."""
    from engine.config import ConfigError, Problem
    from engine.store.crypto import SealError

    try:
        return sealer_from_options(config.store_options)
    except SealError as exc:
        loc = config.location(("store_options", "encryption"))
        where = (loc.file, loc.line, loc.column) if loc else (str(config.path), 0, 0)
        raise ConfigError([Problem(*where, f"encryption: {exc}")]) from None


class Switchboard(OrderedMultiService):
    """The running engine: its config, store, listeners and admin (see the module docstring
    for the service tree and its start and stop order)."""

    def __init__(self, config, reactor):
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.metrics = Metrics()
        self.pipeline = build_pipeline(config, self.metrics)
        self.sealer = _sealer(config)  # NullSealer when not set
        self.store = StoreService(config.store, config.store_options, reactor, self.metrics)
        self.store.setServiceParent(self)
        self.retention = RetentionService(
            self.store.engine, reactor, config.store_options,
            lambda: {n: c.get("storage") for n, c in self.config.channels.items()},
            on_report=self._retention_report,
        )  # fmt: skip
        self.retention.setServiceParent(self)
        self.delivery = DeliveryService(
            self.store.engine, self.store.writer, reactor, self.metrics, self.pipeline,
            options=config.store_options, sealer=self.sealer,
        )  # fmt: skip
        self.delivery.setServiceParent(self)
        self.listening = MultiService()  # every listener at once: each drains its connections
        self.listening.setName("listeners")
        self.listening.setServiceParent(self)
        self.intakes: dict[str, Intake] = {}
        self.listeners: dict[str, Service] = {}
        for listener in config.listeners:
            self._add_listener(listener)
        self.admin = None
        if config.admin:
            self._add_admin(config.admin)
        self._reloading: Deferred | None = None
        self._bound = False
        self.watch_certificates()

    # start ------------------------------------------------------------------------------
    def privilegedStartService(self) -> None:
        """Bind every listener and the admin before anything else starts: an address that
        cannot be had raises ListenError here, before the store is migrated, the writer
        thread started or a delivery lease taken (those ports already bound are let go)."""
        bound = []
        try:
            for svc in self._bindable():
                svc.privilegedStartService()
                bound.append(svc)
        except Exception:
            for svc in bound:
                svc.stopService()
            raise
        self._bound = True

    def startService(self) -> None:
        if not self._bound:
            self.privilegedStartService()
        super().startService()

    def _bindable(self) -> list[ListenerService]:
        services = [*self.listening, *([self.admin] if self.admin is not None else [])]
        return [svc for svc in services if isinstance(svc, ListenerService)]

    def _add_admin(self, admin: dict) -> None:
        site = admin_site(self.metrics.registry, self.health, admin.get("token"),
                          readiness=self.readiness, engine=self)  # fmt: skip
        factory = site
        if admin.get("tls"):
            from engine.tls import wrap_server_factory

            factory = wrap_server_factory(site, admin["tls"])
        self.admin = ListenerService(
            serverFromString(self.reactor, admin["listen"]), factory, admin["listen"],
            label="the admin listener",
        )  # fmt: skip
        self.admin.tls_creator = getattr(factory, "tls_creator", None)
        self.admin.setName("admin")
        try:
            self.admin.setServiceParent(self)  # starts it at once when running (reload)
        except Exception:
            self.admin.disownServiceParent()
            self.admin = None
            raise

    # reload ---------------------------------------------------------------------------
    def reload(self) -> Deferred:
        """Re-read the config (SIGHUP, switchboard reload). Fires with (ok, lines).

        A bad config is refused with its errors logged and the running one kept. Listeners
        that did not change keep their connections; so do those whose only changes are
        limits and timeouts (engine.sources.mllp.LIVE_KEYS), applied to every open
        connection; other changed ones are stopped (their owed ACKs written first) and
        started again; channels and routes apply to the next message.
        """
        if self._reloading is not None:
            return succeed((False, ["a reload is already in progress"]))
        self._reloading = d = self._reload()

        def done(result):
            self._reloading = None
            return result

        return d.addBoth(done)

    @inlineCallbacks
    def _reload(self):
        from engine.config import ConfigError, load_config

        try:
            config = load_config(self.config.path)
            pipeline = build_pipeline(config, self.metrics, reloading=True)
        except ConfigError as exc:
            lines = [p.format() for p in exc.problems]
            log.error("reload refused; the running configuration stays", errors=len(lines))
            for line in lines:
                log.error("config error", problem=line)
            return False, lines
        if config.store != self.config.store or config.store_options != self.config.store_options:
            msg = "the store changed: that needs a restart; the running configuration stays"
            log.error("reload refused", reason=msg)
            return False, [msg]
        old = {item["name"]: item for item in self.config.listeners}
        new = {item["name"]: item for item in config.listeners}
        tuned = [n for n in old if n in new and applies_live(old[n], new[n])]
        changed = [n for n in old if (n not in new or new[n] != old[n]) and n not in tuned]
        for name in changed:
            svc = self.listeners.pop(name)
            self.intakes.pop(name, None)
            yield svc.disownServiceParent()
        for name in tuned:  # only limits changed: open connections stay and take them
            self.listeners[name].mllp_factory.applyLimits(new[name])
            self.intakes[name].listener = new[name]
        admin_changed = config.admin != self.config.admin
        if admin_changed and self.admin is not None:
            yield self.admin.disownServiceParent()
            self.admin = None
        self.pipeline = pipeline
        for intake in self.intakes.values():
            intake.pipeline = pipeline
        yield self.delivery.apply(pipeline)
        self.metrics.certificate_expiry.clear()
        self.config = config
        problems = []
        for name, item in new.items():
            if name in self.listeners:
                continue
            try:
                self._add_listener(item)
            except ListenError as exc:
                problems.append(str(exc))
            except Exception as exc:
                problems.append(f"listener '{name}' could not start: {exc}")
        if admin_changed and config.admin:
            try:
                self._add_admin(config.admin)
            except ListenError as exc:
                problems.append(str(exc))
            except Exception as exc:
                problems.append(f"admin could not start: {exc}")
        self.watch_certificates()
        for name in old:
            svc = self.listeners.get(name)
            creator = getattr(svc, "tls_creator", None)
            if name not in changed and creator is not None:
                from engine.tls import TLSConfigError

                try:  # certificates renewed on disk: new connections use them
                    creator.reload(new[name]["tls"])
                except TLSConfigError as exc:
                    problems.append(f"listener '{name}' keeps its old certificate: {exc}")
        creator = getattr(self.admin, "tls_creator", None)
        if creator is not None and not admin_changed:
            from engine.tls import TLSConfigError

            try:
                creator.reload(config.admin["tls"])
            except TLSConfigError as exc:
                problems.append(f"the admin listener keeps its old certificate: {exc}")
        kept = [n for n in old if n in new and n not in changed]
        log.info(
            "reloaded",
            kept=kept,
            limits_applied=tuned,
            restarted=[n for n in changed if n in new],
            stopped=[n for n in changed if n not in new],
            added=[n for n in new if n not in old],
            channels=len(pipeline.channels),
        )
        for line in problems:
            log.error("reload problem", problem=line)
        return not problems, problems or ["reloaded"]

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
        intake.notify = self.delivery.wake
        intake.sealer = self.sealer
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
            svc.tls_creator = getattr(wrapped, "tls_creator", None)
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
        self.listeners[name] = svc
        try:
            svc.setServiceParent(self.listening)  # starts it at once when running (reload)
        except Exception:
            self.listeners.pop(name, None)
            self.intakes.pop(name, None)
            if svc.parent is not None:
                svc.disownServiceParent()
            raise

    def health(self) -> tuple[bool, dict]:
        thread = self.writer._thread
        store_ok = thread is not None and thread.is_alive()
        listeners = {
            name: ("running" if svc.running else "stopped") for name, svc in self.listeners.items()
        }
        ok = store_ok and all(v == "running" for v in listeners.values())
        return ok, {"store": "ok" if store_ok else "down", "listeners": listeners}

    def _retention_report(self, report) -> None:
        for table in ("messages", "channel_runs", "deliveries", "files"):
            n = getattr(report.pruned, table, 0)
            if n:
                self.metrics.pruned.labels(table).inc(n)

    def readiness(self) -> tuple[bool, dict]:
        """/readyz: ready to take messages (store up, every listener running), with a state
        per listener and per destination (healthy, degraded, down) for the operator."""
        ok, details = self.health()
        details["destinations"] = {
            f"{channel}/{dest}": worker.health for (channel, dest), worker in
            sorted(self.delivery.workers.items())
        }  # fmt: skip
        return ok, details

    def watch_certificates(self) -> None:
        """switchboard_certificate_expiry_seconds for every certificate in the config:
        computed when scraped, so it counts down without a timer."""
        from engine.tls import certificate_expiry

        gauge = self.metrics.certificate_expiry
        files = []
        for listener in self.config.listeners:
            tls = listener.get("tls") or {}
            files += [(listener["name"], "server", tls.get("cert")),
                      (listener["name"], "client_ca", tls.get("client_ca"))]  # fmt: skip
        for name, channel in self.pipeline.channels.items():
            for target in channel.targets:
                tls = target.destination.config.get("tls") or {}
                files += [(f"{name}/{target.destination.name}", "client", tls.get("cert")),
                          (f"{name}/{target.destination.name}", "ca", tls.get("ca"))]  # fmt: skip
        for owner, kind, path in files:
            if not path:
                continue
            try:
                not_after = certificate_expiry(path).timestamp()
            except Exception as exc:  # unreadable now: the config check found it readable
                log.warning("certificate unreadable", owner=owner, kind=kind, error=str(exc))
                continue
            gauge.labels(owner, kind).set_function(lambda t=not_after: t - time.time())

    def port_of(self, name: str) -> int:
        """The TCP port a listener (or 'admin') is bound to; for tests and port 0 configs."""
        svc = self.admin if name == "admin" else self.listeners[name]
        return svc._waitingForPort.result.getHost().port
