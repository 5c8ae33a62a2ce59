"""The admin JSON API under /api/ (twisted.web): status, queues, message search and detail,
operator actions (pause, resume, skip, replay, reload) and the audit log.

Every endpoint requires the bearer token when ``admin.token`` is set (:func:`authorized`, the
admin listener's one check). Store work runs on the reactor's thread pool, never on the
reactor thread. Every action is written to the audit log (actor, action, target, ids and
codes; never message content); the queue actions are engine.admin.actions, which the CLI
runs too when no engine runs, and the API wakes the workers they concern. Errors are
{"error": "..."}.
"""

from __future__ import annotations

import hmac
import json
import time

from twisted.internet.defer import inlineCallbacks, maybeDeferred
from twisted.internet.threads import deferToThreadPool
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from engine.admin import actions, audit, search
from engine.admin.actions import REPLAY_STATUSES, REPROCESS_STATUSES, Operator
from engine.logging import get_logger
from engine.store.crypto import SealError
from engine.store.schema import DEAD, STATUSES

log = get_logger("admin.api")

MAX_BODY = 1 << 20


def authorized(request, token: str | None) -> bool:
    """The admin listener's one bearer check, constant-time (hmac.compare_digest); the header
    comes as bytes from twisted.web. Without a token configured, everyone is let in."""
    if not token:
        return True
    given = request.getHeader(b"authorization") or b""
    if isinstance(given, str):
        given = given.encode("latin-1", "replace")
    return hmac.compare_digest(given, b"Bearer " + token.encode())


class ApiError(Exception):
    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _int(value: str, what: str, low: int = 0, high: int | None = None) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"{what} must be an integer") from None
    if n < low or (high is not None and n > high):
        raise ApiError(400, f"{what} must be between {low} and {high}")
    return n


class ApiResource(Resource):
    """Everything below /api/; routes are matched on the path segments."""

    isLeaf = True

    def __init__(self, engine, token: str | None):
        super().__init__()
        self.sb = engine  # the Switchboard
        self.token = token
        # (method, path pattern, handler); "*" matches one segment, passed to the handler
        self.routes = [
            ("GET", ("status",), self.status),
            ("GET", ("queues",), self.queues),
            ("GET", ("queues", "*", "*"), self.queue_head),
            ("POST", ("queues", "*", "*", "pause"), self.pause),
            ("POST", ("queues", "*", "*", "resume"), self.resume),
            ("POST", ("queues", "*", "*", "skip"), self.skip),
            ("GET", ("messages",), self.messages),
            ("GET", ("messages", "*"), self.message),
            ("POST", ("messages", "*", "replay"), self.replay_message),
            ("POST", ("replay",), self.replay),
            ("POST", ("reload",), self.reload),
            ("GET", ("audit",), self.audit),
        ]

    # plumbing ---------------------------------------------------------------------------
    def _db(self, fn, *args, **kw):
        reactor = self.sb.reactor
        return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args, **kw)

    @property
    def store(self):
        return self.sb.store.engine

    def render(self, request):
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        if not authorized(request, self.token):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b"Bearer")
            return b'{"error": "missing or wrong bearer token"}'
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        d = maybeDeferred(self._dispatch, request)

        def done(result):
            code, body = result if isinstance(result, tuple) else (200, result)
            self._finish(request, gone, code, body)

        def failed(f):
            if f.check(ApiError):
                self._finish(request, gone, f.value.code, {"error": f.value.message})
                return
            log.error("admin api failure", path=request.path.decode("ascii", "replace"),
                      error=f.getErrorMessage()[:200])  # fmt: skip
            self._finish(request, gone, 500, {"error": "internal error"})

        d.addCallbacks(done, failed)
        return NOT_DONE_YET

    def _finish(self, request, gone, code: int, body) -> None:
        if gone:
            return
        request.setResponseCode(code)
        request.write(json.dumps(body, default=str).encode())
        request.finish()

    def _dispatch(self, request):
        try:
            parts = [p.decode("utf-8") for p in request.postpath]
        except UnicodeDecodeError:
            raise ApiError(400, "the path is not UTF-8") from None
        while parts and parts[-1] == "":
            parts.pop()
        method = request.method.decode("ascii", "replace")
        allowed = []
        for verb, pattern, handler in self.routes:
            if len(pattern) != len(parts):
                continue
            if not all(p == "*" or p == s for p, s in zip(pattern, parts, strict=True)):
                continue
            if verb != method:
                allowed.append(verb)
                continue
            args = [s for p, s in zip(pattern, parts, strict=True) if p == "*"]
            return handler(request, *args)
        if allowed:
            request.setHeader(b"allow", ", ".join(sorted(set(allowed))).encode())
            raise ApiError(405, f"method {method} not allowed here")
        raise ApiError(404, "no such endpoint")

    def _args(self, request) -> dict[str, str]:
        out = {}
        for k, v in request.args.items():
            try:
                out[k.decode()] = v[-1].decode()
            except UnicodeDecodeError:
                raise ApiError(400, "query parameters must be UTF-8") from None
        return out

    def _body(self, request) -> dict:
        data = request.content.read(MAX_BODY + 1) if request.content else b""
        if len(data) > MAX_BODY:
            raise ApiError(400, "the body is too large")
        if not data.strip():
            return {}
        try:
            body = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def _actor(self, request) -> str:
        try:
            cert = request.transport.getPeerCertificate()
        except Exception:
            cert = None
        if cert is not None:
            try:
                from cryptography.x509.oid import NameOID

                names = cert.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
                return "cert:" + (names[0].value if names else cert.to_cryptography().subject
                                  .rfc4514_string())  # fmt: skip
            except Exception:
                pass
        return "token" if self.token else "anonymous"

    def _source(self, request) -> str:
        addr = request.getClientAddress()
        host, port = getattr(addr, "host", None), getattr(addr, "port", None)
        return f"{host}:{port}" if host is not None else str(addr)

    def _operator(self, request) -> Operator:
        return Operator(self._actor(request), self._source(request))

    def _audit(self, request, action: str, target: str, detail: dict):
        return self._db(actions.record, self.store, self._operator(request), action, target,
                        detail)  # fmt: skip

    def _act(self, fn, request, *args, **kw):
        """An operator action (engine.admin.actions: the store change and its audit entry)."""
        return self._db(fn, self.sb.delivery.queue, self._operator(request), *args, **kw)

    def _known_queue(self, channel: str, destination: str) -> None:
        if (channel, destination) in self.sb.delivery.workers:
            return
        ch = self.sb.pipeline.channels.get(channel)
        if ch is None or all(t.destination.name != destination for t in ch.targets):
            raise ApiError(404, f"no destination '{destination}' in channel '{channel}'")

    # reads ------------------------------------------------------------------------------
    @inlineCallbacks
    def status(self, request):
        depths = yield self._db(self.sb.delivery.queue.depths, time.time())
        listeners = []
        for item in self.sb.config.listeners:
            name = item.name
            svc = self.sb.listeners.get(name)
            entry = {"name": name, "kind": item.kind,
                     "running": bool(svc is not None and svc.running), "ack": item.ack}  # fmt: skip
            if item.kind == "mllp":
                entry["endpoint"] = item.mllp
                entry["tls"] = bool(item.tls)
                addr = getattr(svc, "address", None)
                entry["port"] = getattr(addr, "port", None)
            else:
                entry["directory"] = str(item.directory)
            listeners.append(entry)
        channels = [
            {"name": name, "destinations": [
                {"name": t.destination.name, "kind": t.destination.kind} for t in ch.targets]}
            for name, ch in sorted(self.sb.pipeline.channels.items())
        ]  # fmt: skip
        by_key = {(e["channel"], e["destination"]): e for e in depths}
        destinations = []
        keys = sorted(set(self.sb.delivery.workers) | set(by_key))
        for key in keys:
            worker = self.sb.delivery.workers.get(key)
            entry = {"channel": key[0], "destination": key[1],
                     "health": worker.health if worker else "not configured",
                     "paused": False, "oldest_age": 0.0}  # fmt: skip
            depth = by_key.get(key, {})
            entry.update({k: v for k, v in depth.items() if k not in ("channel", "destination")})
            entry["depth"] = {k: v for k, v in depth.items() if isinstance(v, int)
                              and not isinstance(v, bool)}  # fmt: skip
            destinations.append(entry)
        ok, _ = self.sb.health()
        return {"ok": ok, "listeners": listeners, "channels": channels,
                "destinations": destinations}  # fmt: skip

    @inlineCallbacks
    def queues(self, request):
        depths = yield self._db(self.sb.delivery.queue.depths, time.time())
        return {"queues": depths}

    @inlineCallbacks
    def queue_head(self, request, channel, destination):
        limit = _int(self._args(request).get("limit", "20"), "limit", 1, 1000)
        head = yield self._db(self.sb.delivery.queue.head, channel, destination, limit)
        if not head:
            self._known_queue(channel, destination)
        return {"channel": channel, "destination": destination, "head": head}

    @inlineCallbacks
    def messages(self, request):
        args = self._args(request)
        f = search.Search(
            control_id=args.get("control_id") or None,
            patient_id=args.get("patient_id") or None,
            message_type=args.get("type") or None,
            status=args.get("status") or None,
            listener=args.get("listener") or None,
            limit=_int(args.get("limit", "50"), "limit", 1, search.MAX_LIMIT),
        )
        if f.status and f.status not in STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(STATUSES)}")
        for key in ("since", "until"):
            if args.get(key):
                try:
                    setattr(f, key, search.parse_time(args[key]))
                except ValueError:
                    raise ApiError(400, f"{key} must be Unix seconds or ISO 8601") from None
        rows = yield self._db(search.search_messages, self.store, f)
        return {"messages": rows, "count": len(rows)}

    @inlineCallbacks
    def message(self, request, message_id):
        mid = _int(message_id, "message id")
        detail = yield self._db(search.message_detail, self.store, mid, self.sb.sealer)
        if detail is None:
            raise ApiError(404, f"no message {mid}")
        return detail

    @inlineCallbacks
    def audit(self, request):
        limit = _int(self._args(request).get("limit", "100"), "limit", 1, 1000)
        entries = yield self._db(audit.recent, self.store, limit)
        return {"entries": entries}

    # actions ----------------------------------------------------------------------------
    @inlineCallbacks
    def _set_paused(self, request, channel, destination, paused: bool):
        self._known_queue(channel, destination)
        out = yield self._act(actions.set_paused, request, channel, destination, paused)
        self.sb.delivery.wake([(channel, destination)])  # the worker looks at its state now
        return out

    def pause(self, request, channel, destination):
        return self._set_paused(request, channel, destination, True)

    def resume(self, request, channel, destination):
        return self._set_paused(request, channel, destination, False)

    @inlineCallbacks
    def skip(self, request, channel, destination):
        self._known_queue(channel, destination)
        skipped = yield self._act(actions.skip, request, channel, destination, time.time())
        if skipped is None:
            raise ApiError(404, actions.empty_queue(channel, destination))
        self.sb.delivery.wake([(channel, destination)])
        return {"channel": channel, "destination": destination, "skipped": skipped}

    @inlineCallbacks
    def replay(self, request):
        """Deliveries back in their queues: {"ids": [...]}, {"channel": c, "destination": d}
        (destination optional) or {"all": true}; "status" dead (default), held, skipped, any."""
        body = self._body(request)
        ids = body.get("ids")
        status = body.get("status", DEAD)
        if status not in REPLAY_STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(REPLAY_STATUSES)}")
        channel, destination = body.get("channel"), body.get("destination")
        if ids is not None and not (
            isinstance(ids, list)
            and 0 < len(ids) <= 10000
            and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        ):
            raise ApiError(400, "ids must be a non-empty list of delivery ids")
        everything = body.get("all") is True and channel is None
        if ids is None and not everything and not (isinstance(channel, str) and channel):
            raise ApiError(400, 'give "ids", a "channel" (and "destination") or "all": true')
        if channel is not None and not isinstance(channel, str):
            raise ApiError(400, "channel must be a string")
        if destination is not None and (not isinstance(destination, str) or not channel):
            raise ApiError(400, "destination must be a string, with a channel")
        count = yield self._act(actions.replay, request, now=time.time(), ids=ids,
                                channel=channel, destination=destination,
                                status=status)  # fmt: skip
        self.sb.delivery.wake_all()
        return {"replayed": count}

    @inlineCallbacks
    def replay_message(self, request, message_id):
        """A message that went nowhere (errored, rejected, unrouted, filtered) is taken in
        again on the current config; one that was routed has its dead, held and skipped
        deliveries put back in their queues; with ``body``, the edited body is taken in."""
        mid = _int(message_id, "message id")
        body = self._body(request)
        edited = body.get("body")
        if edited is not None and (not isinstance(edited, str) or not edited.startswith("MSH")):
            raise ApiError(400, 'body must be an HL7 v2 message starting with "MSH"')
        try:
            source = yield self._db(search.replay_source, self.store, mid,
                                    self.sb.sealer)  # fmt: skip
        except SealError as exc:
            raise ApiError(409, f"message {mid}: {exc}") from None
        if source is None:
            raise ApiError(404, f"no message {mid}")
        if edited is not None or source["status"] in REPROCESS_STATUSES:
            result = yield self._reprocess(request, mid, source, edited)
            return result
        out = yield self._act(actions.replay_deliveries_of, request, mid, time.time())
        if out is None:
            raise ApiError(404, f"no message {mid}")
        if out["replayed"]:
            self.sb.delivery.wake_all()
        return out

    @inlineCallbacks
    def _reprocess(self, request, mid: int, source: dict, edited: str | None):
        """Through the listener's intake (engine.intake.Intake.reprocess), linked to ``mid``."""
        listener = source["listener"]
        intake = self.sb.intakes.get(listener)
        if intake is None:
            raise ApiError(409, f"listener '{listener}' is not running: its messages cannot "
                           "be taken in again")  # fmt: skip
        charset = source["charset"] or "utf-8"
        if edited is None:
            payload, stands_in = source["raw"], None
            if not payload:
                raise ApiError(409, f"the body of message {mid} was not kept (storage mode "
                               "metadata_only): replay it with an edited body (switchboard "
                               f"replay {mid} --body-file FILE)")  # fmt: skip
        else:
            text = edited.replace("\r\n", "\r").replace("\n", "\r")
            try:
                payload = text.encode(charset)
            except (LookupError, UnicodeEncodeError):
                raise ApiError(400, f"the body does not fit the charset {charset}") from None
            stands_in = (source["dedup_key"], source["body_hash"])
        out = yield intake.reprocess(payload, mid, peer=f"replay:{mid}", stands_in=stands_in)
        if out is None:
            raise ApiError(503, "the store could not take the message in; try again")
        if edited is None:
            action = "replay"
            detail = {"reprocessed_as": out["id"], "status": out["status"],
                      "ack_code": out["ack_code"], "listener": listener}  # fmt: skip
        else:
            action = "replay-edited"
            detail = {"new_message": out["id"], "status": out["status"],
                      "ack_code": out["ack_code"], "listener": listener}  # fmt: skip
        yield self._audit(request, action, f"message {mid}", detail)
        ack = out["ack"].decode(charset, "replace") if out["ack"] else None
        return {"message_id": mid, "new_message_id": out["id"], "status": out["status"],
                "ack_code": out["ack_code"], "ack": ack}  # fmt: skip

    @inlineCallbacks
    def reload(self, request):
        ok, lines = yield self.sb.reload()
        yield self._audit(request, "reload", "config", {"ok": ok, "messages": lines[:20]})
        return (200 if ok else 409), {"ok": ok, "messages": lines}
