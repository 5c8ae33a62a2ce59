"""The operations dashboard: one static page (HTML, JS, CSS; no build step, no CDN).

Mounted at /dashboard/ on the admin listener. The page itself carries no data and needs
no token: it calls the JSON API under /api/ (with the bearer token the operator types in,
kept in sessionStorage) and /metrics. A strict Content-Security-Policy keeps it to
same-origin scripts, styles and requests.
"""

from __future__ import annotations

from pathlib import Path

from twisted.web.resource import Resource

STATIC = Path(__file__).parent / "static"
FILES = {
    "": ("dashboard.html", b"text/html; charset=utf-8"),
    "dashboard.js": ("dashboard.js", b"text/javascript; charset=utf-8"),
    "dashboard.css": ("dashboard.css", b"text/css; charset=utf-8"),
}
CSP = (
    b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    b"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class Dashboard(Resource):
    isLeaf = True

    def __init__(self, directory: Path = STATIC):
        super().__init__()
        self.directory = directory

    def render_GET(self, request):
        parts = [p.decode("utf-8", "replace") for p in request.postpath]
        if not parts:  # /dashboard -> /dashboard/ so the relative links resolve
            request.setResponseCode(301)
            request.setHeader(b"location", b"/dashboard/")
            return b""
        entry = FILES.get("/".join(parts))
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"no-store")
        if entry is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        name, ctype = entry
        request.setHeader(b"content-type", ctype)
        request.setHeader(b"content-security-policy", CSP)
        request.setHeader(b"referrer-policy", b"no-referrer")
        request.setHeader(b"x-frame-options", b"DENY")
        return (self.directory / name).read_bytes()

    def render_HEAD(self, request):
        return self.render_GET(request)
