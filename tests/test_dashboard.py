"""The dashboard page in real headless Chromium, against a real engine on 127.0.0.1.

Speaks the W3C WebDriver protocol to chromedriver over HTTP with urllib (no selenium).
Skipped when the Debian packages chromium and chromium-driver are not installed.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import pytest_twisted
import treq

from .engine_harness import in_thread, start_engine
from .peers import wait_for
from .test_admin_api import AUTH, TOKEN, adt, closed_port, send_all, statuses

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason="needs headless Chromium: apt-get install chromium chromium-driver",
)
CONFIG = """
listeners:
  - {name: in, mllp: "tcp:0:interface=127.0.0.1", ack: after_routing}
routes:
  - {match: {type: ADT}, to: [adt]}
store_options: {poll_interval: 50ms}
admin: {listen: "tcp:0:interface=127.0.0.1", token: secret}
"""
WAIT = 10.0
CSS = "css selector"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class WebDriver:
    """A minimal W3C WebDriver client for chromedriver."""

    def __init__(self, profile: str):
        self.port = free_port()
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.proc = subprocess.Popen([CHROMEDRIVER, f"--port={self.port}"], **quiet)
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = None
        deadline = time.monotonic() + WAIT
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.quit()
                raise RuntimeError("chromedriver did not start")
            time.sleep(0.05)
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}",
                "--window-size=1400,1100"]  # fmt: skip
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
                }
            }
        }
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"content-type": "application/json"})  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())["value"]
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"webdriver {method} {path}: {e.read()[:500]!r}") from None

    def cmd(self, method: str, path: str, body=None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def get(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def js(self, script: str, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        found = self.cmd("POST", "/element", {"using": CSS, "value": css})
        return next(iter(found.values()))

    def click(self, css: str) -> None:
        self.cmd("POST", f"/element/{self.find(css)}/click", {})

    def type(self, css: str, text: str) -> None:
        el = self.find(css)
        self.cmd("POST", f"/element/{el}/clear", {})
        self.cmd("POST", f"/element/{el}/value", {"text": text})

    def text(self, css: str) -> str:
        return self.js("const e = document.querySelector(arguments[0]);"
                       "return e ? e.textContent : null;", css)  # fmt: skip

    def wait(self, predicate, what: str):
        """Poll (bounded) until predicate() is truthy; returns its value."""
        deadline = time.monotonic() + WAIT
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))

    def quit(self) -> None:
        try:
            if self.session:
                self._call("DELETE", f"/session/{self.session}")
        except (OSError, RuntimeError):
            pass
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def sb(tmp_path):
    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "adt.yaml").write_text(
        "name: adt\ndestinations:\n"
        f"  - name: ehr\n    mllp: 'tcp:127.0.0.1:{closed_port()}'\n    ack_timeout: 1s\n"
        "    retry: {max_attempts: 1}\n"
    )
    engine = start_engine(tmp_path, CONFIG, channels=())
    yield engine
    pytest_twisted.blockon(engine.stopService())


@pytest.fixture
def browser():
    profile = tempfile.mkdtemp(prefix="sb-chromium-")
    try:
        driver = WebDriver(profile)
    except Exception:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def dead_count(b: WebDriver) -> str | None:
    return b.text('#destinations tr[data-channel="adt"][data-destination="ehr"] td.dead')


@pytest_twisted.ensureDeferred
async def test_dashboard_in_headless_chromium(sb, browser, tmp_path):
    acks = await in_thread(send_all, sb.port_of("in"), [adt(1, "P100")])
    assert b"MSA|AA|" in acks[0]
    assert await wait_for(lambda: statuses(sb) == ["dead"])
    url = f"http://127.0.0.1:{sb.port_of('admin')}/dashboard/"
    shot = Path(os.environ.get("DASHBOARD_SCREENSHOT", tmp_path / "dashboard.png"))

    def without_token(b: WebDriver):
        b.get(url)
        assert b.js("return document.title") == "Switchboard dashboard"
        b.wait(lambda: "Authorization error" in (b.text("#auth-error") or "")
               and b.js("return !document.querySelector('#auth-error').hidden"),
               "the authorization error")  # fmt: skip
        assert dead_count(b) is None  # no data without the token
        b.type("#token", "wrong")
        b.click("#token-save")
        b.wait(lambda: "refused" in (b.text("#auth-error") or ""), "the refused token")

    def with_token(b: WebDriver):
        b.type("#token", TOKEN)
        b.click("#token-save")
        assert b.wait(lambda: dead_count(b), "the destinations table") == "1"
        assert b.js("return document.querySelector('#auth-error').hidden")
        assert "ok" in b.text("#engine-state")
        row = '#destinations tr[data-destination="ehr"]'
        assert "down" in b.text(row + " .health") or "degraded" in b.text(row + " .health")
        assert b.js("return sessionStorage.getItem('switchboard.admin.token')") == TOKEN
        # the channels table: the message went through channel adt, whose delivery died
        channel_row = b.wait(lambda: b.js(
            "const r = document.querySelector('#channels tbody tr');"
            "return r && r.textContent.includes('adt') ? "
            "[...r.cells].map((c) => c.textContent) : null"), "the channels table")  # fmt: skip
        assert channel_row[0] == "adt" and channel_row[6] == "1"  # one dead letter
        # search by control id, open the message
        b.type("#q-control", "CTL1")
        b.click("#search-go")
        b.wait(lambda: b.text("#results tbody .control-id") == "CTL1", "the search result")
        assert b.text("#results-count") == "1 message"
        b.click("#results tbody button")
        raw = b.wait(lambda: b.text("#raw"), "the raw message")
        assert raw.splitlines()[0].startswith("MSH|^~\\&|REG|") and raw.splitlines()[1].startswith(
            "PID|1||P100"
        )
        assert "MSA|AA|CTL1" in b.text("#ack")
        assert b.text("#deliveries tbody td.status") == "dead"
        assert "adt" in b.text("#runs tbody")
        # pause the destination so the replayed delivery stays pending, then replay
        b.click(row + ' button[aria-label="Pause adt/ehr"]')
        b.wait(lambda: b.text(row + " td.paused") == "paused", "the paused destination")
        b.click("#replay")
        b.wait(lambda: "Replayed message" in (b.text("#notice") or ""), "the replay notice")
        b.wait(lambda: b.text("#deliveries tbody td.status") == "pending", "the pending delivery")
        b.screenshot(shot)
        assert b.js("return location.pathname + location.search + location.hash") == "/dashboard/"

    await in_thread(without_token, browser)
    assert statuses(sb) == ["dead"]
    await in_thread(with_token, browser)

    resp = await treq.get(f"http://127.0.0.1:{sb.port_of('admin')}/api/queues", headers=AUTH)
    (queue,) = (await resp.json())["queues"]
    assert queue["pending"] == 1 and "dead" not in queue and queue["paused"] is True
    assert statuses(sb) == ["pending"]
    assert shot.stat().st_size > 10_000


@pytest_twisted.ensureDeferred
async def test_static_files_and_headers(sb):
    base = f"http://127.0.0.1:{sb.port_of('admin')}/dashboard"
    resp = await treq.get(base, allow_redirects=False)
    assert resp.code == 301 and resp.headers.getRawHeaders("location") == ["/dashboard/"]
    for path, ctype in (("/", "text/html"), ("/dashboard.js", "text/javascript"),
                        ("/dashboard.css", "text/css")):  # fmt: skip
        resp = await treq.get(base + path)
        body = await resp.content()
        assert resp.code == 200 and body
        assert resp.headers.getRawHeaders("content-type")[0].startswith(ctype)
        assert "default-src 'none'" in resp.headers.getRawHeaders("content-security-policy")[0]
    resp = await treq.get(base + "/../api/status")
    assert resp.code in (401, 404)
    resp = await treq.get(base + "/nope.js")
    assert resp.code == 404
    await resp.content()


@pytest_twisted.ensureDeferred
async def test_dashboard_takes_an_errored_message_in_again(tmp_path, browser):
    from .test_reprocess import BROKEN, CONFIG, FIXED, oru

    (tmp_path / "channels").mkdir()
    (tmp_path / "channels" / "lab.yaml").write_text(BROKEN)
    sb = start_engine(tmp_path, CONFIG, channels=())
    try:
        (ack,) = await in_thread(send_all, sb.port_of("in"), [oru("R5")])
        assert b"MSA|AE|R5" in ack
        (tmp_path / "channels" / "lab.yaml").write_text(FIXED)
        ok, _ = await sb.reload()
        assert ok
        url = f"http://127.0.0.1:{sb.port_of('admin')}/dashboard/"

        def take_in_again(b: WebDriver):
            b.get(url)
            b.type("#token", TOKEN)
            b.click("#token-save")
            b.type("#q-control", "R5")
            b.click("#search-go")
            b.wait(lambda: b.text("#results tbody .control-id") == "R5", "the search result")
            b.click("#results tbody button")
            b.wait(lambda: "status errored" in (b.text("#detail-meta") or ""), "the detail")
            first = int(b.text("#detail-id"))
            assert b.text("#replay") == "Take in again on the current configuration"
            assert b.js("return document.querySelector('#detail-links').hidden")
            b.click("#replay")
            note = b.wait(lambda: "taken in again" in (b.text("#notice") or "")
                          and b.text("#notice"), "the notice")  # fmt: skip
            new = int(note.split("as message ")[1].split(":")[0])
            assert note == f"Message {first} taken in again as message {new}: routed (AA)"
            b.wait(lambda: b.text("#detail-id") == str(new), "the new message")
            b.wait(lambda: "status routed" in (b.text("#detail-meta") or ""), "its status")
            assert b.text("#detail-links") == f"Reprocess of message {first}"
            assert b.text("#replay") == "Replay dead, held and skipped deliveries"
            b.click(f'#detail-links button[aria-label="Open message {first}"]')
            b.wait(lambda: b.text("#detail-id") == str(first), "the first message again")
            b.wait(lambda: b.text("#detail-links") == f"Reprocessed as message {new}",
                   "the link to the new message")  # fmt: skip
            return first, new

        first, new = await in_thread(take_in_again, browser)
        resp = await treq.get(f"http://127.0.0.1:{sb.port_of('admin')}/api/audit",
                              headers=AUTH)  # fmt: skip
        (entry,) = (await resp.json())["entries"]
        assert (entry["action"], entry["target"]) == ("replay", f"message {first}")
        assert entry["detail"]["reprocessed_as"] == new
    finally:
        await sb.stopService()
