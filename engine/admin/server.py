"""The admin listener's site on twisted.web.

/api/ is the JSON API (engine.admin.api: status, queues, messages, the audited operator
actions including POST /api/reload; bearer token when ``admin.token`` is set). /dashboard/
is the static page that calls it. /metrics (Prometheus), /healthz (alive) and /readyz (ready,
with each destination's state) carry no message data and need no token.
"""

from __future__ import annotations

import json

from prometheus_client.twisted import MetricsResource
from twisted.web.pages import notFound
from twisted.web.resource import Resource
from twisted.web.server import Site

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


class _Root(Resource):
    def getChild(self, path, request):  # anything else: a plain 404
        return notFound()


def admin_site(registry, health_check, token: str | None = None, readiness=None,
               engine=None) -> Site:  # fmt: skip
    root = _Root()
    if engine is not None:  # the JSON API under /api/ (engine.admin.api)
        from engine.admin.api import ApiResource

        root.putChild(b"api", ApiResource(engine, token))
    root.putChild(b"dashboard", Dashboard())
    root.putChild(b"metrics", MetricsResource(registry=registry))
    root.putChild(b"healthz", Health(health_check))
    root.putChild(b"readyz", Health(readiness or health_check))
    site = Site(root)
    site.noisy = False
    return site
