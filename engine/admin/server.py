"""Admin HTTP resources on twisted.web."""

from __future__ import annotations

import json

from prometheus_client.twisted import MetricsResource
from twisted.web.resource import Resource
from twisted.web.server import Site


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


def admin_site(registry, health_check) -> Site:
    root = Resource()
    root.putChild(b"metrics", MetricsResource(registry=registry))
    root.putChild(b"healthz", Health(health_check))
    site = Site(root)
    site.noisy = False
    return site
