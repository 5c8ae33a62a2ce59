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

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred, inlineCallbacks, succeed
from twisted.internet.endpoints import serverFromString

from engine.admin.server import admin_site
from engine.components import REGISTRY, build_pipeline
from engine.context import Context
from engine.delivery.service import DeliveryService
from engine.lifecycle import ListenError, OrderedMultiService
from engine.logging import get_logger
from engine.metrics import Metrics
from engine.sources.listening import ListenerService
from engine.sources.mllp import applies_live
from engine.store import migrations
from engine.store.checkpoint import WAL_LIMIT_PAGES, WalCheckpointer
from engine.store.crypto import sealer_from_options
from engine.store.db import create_store_engine, is_sqlite_file
from engine.store.retention import RetentionService
from engine.store.writer import StoreWriter

log = get_logger("app")


class StoreService(Service):
    """Runs migrations and owns the writer thread."""

    name = "store"

    def __init__(self, url: str, options, reactor, metrics: Metrics):
        self.url = url
        every = options.checkpoint_rows if is_sqlite_file(url) else 0
        self.engine = create_store_engine(
            url,
            synchronous=options.synchronous,
            pool_size=options.pool_size,
            wal_autocheckpoint=WAL_LIMIT_PAGES if every else 0,
        )
        self.writer = StoreWriter(
            self.engine,
            reactor,
            max_batch=options.max_batch,
            observer=metrics.observe_commit,
            inline=options.inline_commit,
            checkpointer=WalCheckpointer(self.engine, every) if every else None,
            gather_seconds=options.gather_time,
        )

    def startService(self) -> None:
        migrations.upgrade(self.engine)
        self.writer.start()
        super().startService()

    def stopService(self):
        super().stopService()
        return self.writer.stop()


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

    def __init__(self, config, reactor, pipeline=None, metrics: Metrics | None = None):
        """The engine for a validated config. ``pipeline`` is what engine.components.load
        built with ``metrics`` in the same pass (built here when not given)."""
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.metrics = metrics or Metrics()
        self.sealer = _sealer(config)  # NullSealer when not set
        self.store = StoreService(config.store, config.store_options, reactor, self.metrics)
        self.store.setServiceParent(self)
        self.ctx = Context(
            reactor=reactor, metrics=self.metrics, base_dir=config.base_dir, sealer=self.sealer,
            registry=REGISTRY, writer=self.store.writer, pipeline=lambda: self.pipeline,
            notify=self._notify,
        )  # fmt: skip
        if pipeline is None:
            pipeline = build_pipeline(config, self.ctx)
        self.pipeline = pipeline
        self.retention = RetentionService(
            self.store.engine, reactor, config.store_options,
            lambda: {n: c.storage for n, c in self.config.channels.items()},
            on_report=self._retention_report,
        )  # fmt: skip
        self.retention.setServiceParent(self)
        self.delivery = DeliveryService(
            self.store.engine, config.store_options, self.ctx, self.pipeline
        )
        self.delivery.setServiceParent(self)
        self.listening = MultiService()  # every listener at once: each drains its connections
        self.listening.setName("listeners")
        self.listening.setServiceParent(self)
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

    def _notify(self, keys) -> None:
        """Deliveries committed for these (channel, destination): wake their workers."""
        self.delivery.wake(keys)

    @property
    def intakes(self) -> dict:
        """Each listener's intake, by listener name (replays take a message in through it)."""
        return {name: svc.intake for name, svc in self.listeners.items()}

    def _add_admin(self, admin) -> None:
        site = admin_site(self.metrics.registry, self.health, admin.token,
                          readiness=self.readiness, engine=self)  # fmt: skip
        factory, creator = site, None
        if admin.tls:
            from engine.tls import serve_tls

            factory, creator = serve_tls(site, admin.tls)
        self.admin = ListenerService(
            serverFromString(self.reactor, admin.listen), factory, admin.listen,
            label="the admin listener", tls_creator=creator,
        )  # fmt: skip
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
        from engine.components import load
        from engine.config import ConfigError
        from engine.steps.python import install_fresh

        fresh: dict = {}
        try:
            config, pipeline = load(self.config.path, self.ctx.replace(fresh_modules=fresh))
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
        install_fresh(fresh)  # accepted: the transforms modules it ran are the ones now
        old = {item.name: item for item in self.config.listeners}
        new = {item.name: item for item in config.listeners}
        tuned = [n for n in old if n in new and applies_live(old[n], new[n])]
        changed = [n for n in old if (n not in new or new[n] != old[n]) and n not in tuned]
        for name in changed:
            svc = self.listeners.pop(name)
            yield svc.disownServiceParent()
        for name in tuned:  # only limits changed: open connections stay and take them
            self.listeners[name].apply(new[name])
        admin_changed = config.admin != self.config.admin
        if admin_changed and self.admin is not None:
            yield self.admin.disownServiceParent()
            self.admin = None
        self.pipeline = pipeline  # every intake reads it for its next message
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
                    creator.reload(new[name].tls)
                except TLSConfigError as exc:
                    problems.append(f"listener '{name}' keeps its old certificate: {exc}")
        creator = getattr(self.admin, "tls_creator", None)
        if creator is not None and not admin_changed:
            from engine.tls import TLSConfigError

            try:
                creator.reload(config.admin.tls)
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

    def _add_listener(self, listener) -> None:
        svc = REGISTRY.cls("source", listener.kind)(listener, self.ctx)
        self.listeners[listener.name] = svc
        try:
            svc.setServiceParent(self.listening)  # starts it at once when running (reload)
        except Exception:
            self.listeners.pop(listener.name, None)
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
            if listener.tls:
                files += [(listener.name, "server", listener.tls.cert),
                          (listener.name, "client_ca", listener.tls.client_ca)]  # fmt: skip
        for name, channel in self.pipeline.channels.items():
            for target in channel.targets:
                owner = f"{name}/{target.destination.name}"
                files += [(owner, role, path) for role, path in target.destination.certificates()]
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
        return (self.admin if name == "admin" else self.listeners[name]).port
