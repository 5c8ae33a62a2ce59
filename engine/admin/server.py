"""Admin HTTP resources on twisted.web."""

from __future__ import annotations

import hmac
import json

from prometheus_client.twisted import MetricsResource
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from engine.admin.dashboard import Dashboard


class Health(Resource):
    isLeaf = True

    def __init__(self, check):
        super().__init__()
        self.check = check  # () -> (ok: bool, details: dict)

    def render_GET(self, request):
        ok, details = self.check()
        request.setResponseCode(200 if ok else 503)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"status": "ok" if ok else "failing", **details}).encode()


class Reload(Resource):
    """POST /reload: re-read the config; 200 with {"ok": true} or 409 with the errors."""

    isLeaf = True

    def __init__(self, reload, token: str | None):
        super().__init__()
        self.reload = reload
        self.token = token

    def render_POST(self, request):
        request.setHeader(b"content-type", b"application/json")
        if not authorized(request, self.token):
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b"Bearer")
            return b'{"ok": false, "errors": ["missing or wrong bearer token"]}'

        def done(result):
            ok, lines = result
            request.setResponseCode(200 if ok else 409)
            request.write(json.dumps({"ok": ok, "messages": lines}).encode())
            request.finish()

        def failed(f):
            request.setResponseCode(500)
            request.write(json.dumps({"ok": False, "messages": [f.getErrorMessage()]}).encode())
            request.finish()

        self.reload().addCallbacks(done, failed)
        return NOT_DONE_YET


def authorized(request, token: str | None) -> bool:
    if not token:
        return True
    given = request.getHeader(b"authorization") or b""  # bytes for a bytes header name
    if isinstance(given, str):
        given = given.encode("latin-1", "replace")
    return hmac.compare_digest(given, f"Bearer {token}".encode())


def admin_site(registry, health_check, reload=None, token: str | None = None,
               readiness=None, engine=None) -> Site:  # fmt: skip
    root = Resource()
    if engine is not None:  # the JSON API under /api/ (engine.admin.api)
        from engine.admin.api import ApiResource

        root.putChild(b"api", ApiResource(engine, token))
    root.putChild(b"dashboard", Dashboard())
    root.putChild(b"metrics", MetricsResource(registry=registry))
    root.putChild(b"healthz", Health(health_check))
    root.putChild(b"readyz", Health(readiness or health_check))
    if reload is not None:
        root.putChild(b"reload", Reload(reload, token))
    site = Site(root)
    site.noisy = False
    return site
