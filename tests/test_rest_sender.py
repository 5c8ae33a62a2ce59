"""REST sender against a scripted HTTP(S) server on 127.0.0.1: outcomes, auth, HMAC, mTLS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections import deque
from email.utils import formatdate
from urllib.parse import parse_qs

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import DNSLookupError
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from engine.certs import init_certs
from engine.config import ConfigError
from engine.delivery.outcome import DEAD, OK, RETRY, Delivery
from engine.destinations.http_auth import AuthConfigError, build_auth
from engine.destinations.rest.sender import (
    RestSender,
    TokenBucket,
    failure_reason,
    parse_retry_after,
)
from engine.tls import peer_certificate_info, wrap_server_factory

from . import settings

PAYLOAD = b"MSH|^~\\&|SND|SF|RCV|RF|2024||ADT^A01|T1|P|2.5\rPID|1||123^^^H||Doe^J\xc3\xa9\r"
OPERATION_OUTCOME = json.dumps(
    {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}
).encode()
SECRET = "s3cret"


def delivery(n: int = 1) -> Delivery:
    return Delivery(n, 100 + n, "adt-in", "ehr", PAYLOAD, "x-application/hl7-v2+er7")


class Receiver(Resource):
    """/hl7 answers per ``script`` (200 when empty); /token issues OAuth2 tokens."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.script: deque = deque()
        self.seen: list[dict] = []  # one per /hl7 request
        self.token_forms: list[dict] = []
        self.valid: set[str] = set()
        self.require_token = False
        self.honour_new_tokens = True
        self.expires_in = 3600
        self.arrivals: list[Deferred] = []  # fired at the next /hl7 request

    def next_request(self) -> Deferred:
        self.arrivals.append(Deferred())
        return self.arrivals[-1]

    def render(self, request):
        body = request.content.read()
        raw = list(request.requestHeaders.getAllRawHeaders())
        headers = {k.decode().lower(): v[0].decode() for k, v in raw}
        if request.path == b"/token":
            return self.token(request, headers, body)
        peer = peer_certificate_info(request.channel.transport)
        self.seen.append({"headers": headers, "body": body, "method": request.method,
                          "repeated": [k.decode().lower() for k, v in raw if len(v) > 1],
                          "port": request.getClientAddress().port, "peer": peer})  # fmt: skip
        while self.arrivals:
            self.arrivals.pop().callback(None)
        if self.require_token and headers.get("authorization", "")[7:] not in self.valid:
            request.setResponseCode(401)
            return b'{"error": "invalid_token"}'
        status, extra, answer = self.script.popleft() if self.script else (200, {}, b"accepted")
        if status == "hang":
            return NOT_DONE_YET
        request.setResponseCode(status)
        for name, value in extra.items():
            request.setHeader(name, value)
        return answer

    def token(self, request, headers, body):
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        self.token_forms.append(form)
        request.setHeader("content-type", "application/json")
        client = "Basic " + base64.b64encode(f"client:{SECRET}".encode()).decode()
        if headers.get("authorization") != client or form["grant_type"] != "client_credentials":
            request.setResponseCode(401)
            return b'{"error": "invalid_client"}'
        token = f"tok-{len(self.token_forms)}"
        if self.honour_new_tokens:
            self.valid.add(token)
        answer = {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}
        return json.dumps(answer).encode()


@pytest.fixture
def server():
    receiver = Receiver()
    port = reactor.listenTCP(0, Site(receiver), interface="127.0.0.1")
    receiver.url = f"http://127.0.0.1:{port.getHost().port}"
    yield receiver
    pytest_twisted.blockon(port.stopListening())


@pytest.fixture
def make(server):
    made = []

    def make(path="/hl7", clock=None, url=None, **config):
        config = {"name": "ehr", "rest": url or server.url + path, "timeout": 5.0, **config}
        ctx = settings.context(reactor=reactor, clock=clock)
        sender = RestSender(settings.destination("rest", **config), ctx)
        sender.start()
        made.append(sender)
        return sender

    yield make
    for sender in made:
        pytest_twisted.blockon(sender.stop())


@pytest_twisted.ensureDeferred
async def test_2xx_is_ok_with_body_headers_and_a_persistent_connection(server, make):
    server.script.extend([(200, {}, b"accepted"), (201, {}, b"\xffcreated")])
    sender = make(headers={"X-Tenant": "north"}, method="PUT")
    first = await sender.send(delivery(1))
    second = await sender.send(delivery(2))
    assert (first.kind, first.code, first.response) == (OK, "200", "accepted")
    assert (second.kind, second.code, second.response) == (OK, "201", "\ufffdcreated")
    a, b = server.seen
    assert a["body"] == PAYLOAD and a["method"] == b"PUT"
    assert a["headers"]["content-type"] == "x-application/hl7-v2+er7"
    assert a["headers"]["x-tenant"] == "north"
    assert a["headers"]["x-switchboard-delivery"] == "1"
    assert a["headers"]["idempotency-key"] == "101-adt-in-ehr"
    assert b["headers"]["idempotency-key"] == "102-adt-in-ehr"
    assert "authorization" not in a["headers"]
    assert a["port"] == b["port"]  # the pooled connection was reused
    assert sender.state == "up"


@pytest_twisted.ensureDeferred
async def test_configured_content_type_wins_and_auth_beats_a_configured_authorization(server, make):
    headers = {"content-type": "application/hl7-v2", "authorization": "Bearer config"}
    await make(headers=headers, auth={"bearer": "abc"}).send(delivery())
    seen = server.seen[0]
    assert seen["headers"]["content-type"] == "application/hl7-v2"
    assert seen["headers"]["authorization"] == "Bearer abc" and seen["repeated"] == []


@pytest_twisted.ensureDeferred
async def test_4xx_is_dead_with_the_operation_outcome(server, make):
    server.script.append((400, {"Content-Type": "application/fhir+json"}, OPERATION_OUTCOME))
    outcome = await make().send(delivery())
    assert (outcome.kind, outcome.code, outcome.error) == (DEAD, "400", "HTTP 400 Bad Request")
    assert json.loads(outcome.response)["resourceType"] == "OperationOutcome"


@pytest_twisted.ensureDeferred
async def test_408_429_5xx_are_retried_with_retry_after(server, make):
    later = formatdate(time.time() + 120, usegmt=True)
    server.script.extend([(429, {"Retry-After": "7"}, b"slow down"),
                          (503, {"Retry-After": later}, b"maintenance"),
                          (500, {}, b"boom"), (408, {}, b"")])  # fmt: skip
    sender = make()
    got = [await sender.send(delivery(n)) for n in range(4)]
    assert [(o.kind, o.code) for o in got] == [(RETRY, "429"), (RETRY, "503"), (RETRY, "500"),
                                               (RETRY, "408")]  # fmt: skip
    assert got[0].retry_after == 7.0 and got[0].error == "HTTP 429 Too Many Requests"
    assert 110 < got[1].retry_after <= 121 and got[1].response == "maintenance"
    assert got[2].retry_after is None and got[3].response is None


@pytest_twisted.ensureDeferred
async def test_no_answer_times_out_then_the_next_send_works(server, make):
    server.script.append(("hang", None, None))
    sender = make(timeout=0.3)
    started = time.monotonic()
    outcome = await sender.send(delivery())
    assert (outcome.kind, outcome.error) == (RETRY, "timeout after 0.3 s")
    assert time.monotonic() - started < 2
    assert (await sender.send(delivery(2))).kind == OK


@pytest_twisted.ensureDeferred
async def test_connection_refused_is_retried_and_the_state_goes_down(make):
    port = reactor.listenTCP(0, Site(Resource()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.getHost().port}/hl7"
    await port.stopListening()
    sender = make(url=url)
    for n in range(3):
        assert sender.state == ("up" if n == 0 else "degraded")
        outcome = await sender.send(delivery(n))
        assert (outcome.kind, outcome.error) == (RETRY, "connection refused")
    assert sender.state == "down"


@pytest_twisted.ensureDeferred
async def test_state_up_degraded_down(server, make):
    server.script.extend([(200, {}, b""), (400, {}, b""), (500, {}, b""), (502, {}, b""),
                          (504, {}, b""), (200, {}, b"")])  # fmt: skip
    sender = make()
    states = []
    for n in range(6):
        await sender.send(delivery(n))
        states.append(sender.state)
    assert states == ["up", "degraded", "degraded", "degraded", "down", "degraded"]
    await sender.stop()
    assert sender.state == "down"
    assert (await sender.send(delivery())).error == "REST sender is not running"


@pytest_twisted.ensureDeferred
async def test_stop_ends_a_request_in_flight_with_retry(server, make):
    server.script.append(("hang", None, None))
    sender = make()
    arrived = server.next_request()
    pending = sender.send(delivery())
    await arrived
    await sender.stop()
    outcome = await pending
    assert outcome.kind == RETRY and "stopped" in outcome.error


@pytest.mark.parametrize(
    ("auth", "expected"),
    [({"bearer": "abc"}, "Bearer abc"), ({"bearer_env": "SB_REST_TOKEN"}, "Bearer from-env"),
     ({"basic": {"username": "u", "password": "p:w"}}, "Basic dTpwOnc=")],
)  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_static_credentials(server, make, monkeypatch, auth, expected):
    monkeypatch.setenv("SB_REST_TOKEN", "from-env")
    assert (await make(auth=auth).send(delivery())).kind == OK
    assert server.seen[0]["headers"]["authorization"] == expected


def test_bad_auth_config_is_refused(monkeypatch):
    monkeypatch.delenv("SB_REST_MISSING", raising=False)
    url = "http://127.0.0.1:1/hl7"
    missing = settings.destination("rest", rest=url, auth={"bearer_env": "SB_REST_MISSING"})
    with pytest.raises(AuthConfigError, match="SB_REST_MISSING"):  # unset when it starts
        build_auth(missing.auth, clock=task.Clock(), fetch=None)
    for bad in ({"bearer": "a", "basic": {}}, {"basic": {}},
                {"oauth2": {"client_id": "c", "client_secret": "s"}}, {"token": "x"}):  # fmt: skip
        with pytest.raises(ConfigError):  # the config check refuses these before any start
            settings.destination("rest", rest=url, auth=bad)
    with pytest.raises(ConfigError, match="algorithm"):
        settings.destination("rest", rest=url, hmac={"secret": "x", "algorithm": "md5"})


@pytest_twisted.ensureDeferred
async def test_static_bearer_rejected_is_dead_without_a_second_try(server, make):
    server.require_token = True
    outcome = await make(auth={"bearer": "stale"}).send(delivery())
    assert (outcome.kind, outcome.code) == (DEAD, "401") and len(server.seen) == 1


def oauth2(**extra):
    return {"oauth2": {"token_url": "TOKEN", "client_id": "client", "client_secret": SECRET,
                       "scope": "system/*.write", "audience": "ehr", **extra}}  # fmt: skip


def oauth_sender(server, make, clock=None, **extra):
    auth = oauth2(**extra)
    auth["oauth2"]["token_url"] = server.url + "/token"
    return make(auth=auth, clock=clock)


@pytest_twisted.ensureDeferred
async def test_oauth2_token_cached_shared_and_refreshed_on_expiry(server, make):
    server.require_token, server.expires_in = True, 100
    clock = task.Clock()
    clock.advance(1000)
    sender = oauth_sender(server, make, clock)
    both = await gatherResults([sender.send(delivery(1)), sender.send(delivery(2))])
    assert [o.kind for o in both] == [OK, OK] and len(server.token_forms) == 1
    assert server.token_forms[0] == {"grant_type": "client_credentials",
                                     "scope": "system/*.write", "audience": "ehr"}  # fmt: skip
    clock.advance(89)  # valid until expires_in minus a 10% margin
    assert (await sender.send(delivery(3))).kind == OK and len(server.token_forms) == 1
    clock.advance(2)
    assert (await sender.send(delivery(4))).kind == OK and len(server.token_forms) == 2
    assert [s["headers"]["authorization"] for s in server.seen] == ["Bearer tok-1"] * 3 + [
        "Bearer tok-2"
    ]


@pytest_twisted.ensureDeferred
async def test_oauth2_401_fetches_a_new_token_once(server, make):
    server.require_token = True
    sender = oauth_sender(server, make)
    assert (await sender.send(delivery(1))).kind == OK
    server.valid.clear()  # the receiver revoked tok-1
    outcome = await sender.send(delivery(2))
    assert (outcome.kind, outcome.code) == (OK, "200") and len(server.token_forms) == 2
    assert [s["headers"]["authorization"] for s in server.seen] == [
        "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]  # fmt: skip
    server.valid.clear()
    server.honour_new_tokens = False  # the new token is refused as well: one refresh, then dead
    outcome = await sender.send(delivery(3))
    assert (outcome.kind, outcome.code) == (DEAD, "401") and len(server.token_forms) == 3


@pytest_twisted.ensureDeferred
async def test_oauth2_token_endpoint_refusal_is_retried(server, make):
    sender = oauth_sender(server, make, client_secret="wrong")
    outcome = await sender.send(delivery())
    assert outcome.kind == RETRY and not server.seen
    assert outcome.error == "oauth2: token endpoint answered HTTP 401 (invalid_client)"


@pytest.mark.parametrize(
    ("config", "header", "algorithm"),
    [({"secret": SECRET}, "x-signature-256", "sha256"),
     ({"secret_env": "SB_HMAC", "header": "X-Sig", "algorithm": "sha512"}, "x-sig", "sha512")],
)  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_hmac_signature_verifies(server, make, monkeypatch, config, header, algorithm):
    monkeypatch.setenv("SB_HMAC", SECRET)
    await make(hmac=config).send(delivery())
    seen = server.seen[0]
    stamp = seen["headers"]["x-signature-timestamp"]
    assert abs(int(stamp) - time.time()) < 60
    signed = stamp.encode() + b"." + seen["body"]
    expected = hmac.new(SECRET.encode(), signed, getattr(hashlib, algorithm)).hexdigest()
    assert seen["headers"][header] == f"{algorithm}={expected}"


def test_token_bucket_spaces_requests_on_the_clock():
    clock = task.Clock()
    bucket = TokenBucket(2, clock)
    a, b, c = bucket.acquire(), bucket.acquire(), bucket.acquire()
    assert a.called and not b.called
    clock.advance(0.49)
    assert not b.called
    clock.advance(0.01)
    assert b.called and not c.called
    clock.advance(0.5)
    assert c.called
    d, e = bucket.acquire(), bucket.acquire()
    e.addErrback(lambda f: None)
    e.cancel()
    clock.advance(0.5)
    assert d.called and not clock.getDelayedCalls()
    clock.advance(10)  # idle: at most one token saved up (no burst after a pause)
    assert bucket.acquire().called and not bucket.acquire().called


@pytest_twisted.ensureDeferred
async def test_rate_limit_holds_the_second_send_until_the_clock_moves(server, make):
    clock = task.Clock()
    sender = make(rate_limit=1, clock=clock)
    first, second = sender.send(delivery(1)), sender.send(delivery(2))
    assert (await first).kind == OK
    assert not second.called and len(server.seen) == 1
    clock.advance(1)
    assert (await second).kind == OK and len(server.seen) == 2


def test_retry_after_values_and_failure_reasons():
    now = 1_700_000_000.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(formatdate(now + 30, usegmt=True), now) == 30.0
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 -0000", 784111777.0) == 0.0
    for bad in ("soon", "\u00b2", "", None):
        assert parse_retry_after(bad, now) is None
    reason = failure_reason(Failure(DNSLookupError("no.such.host")), 30)
    assert reason.startswith("DNS lookup failed") and "no.such.host" in reason


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    directory = tmp_path_factory.mktemp("certs")
    init_certs(directory)
    return directory


@pytest.fixture
def tls_server(certs):
    receiver = Receiver()
    tls = settings.tls(
        cert=str(certs / "server.pem"),
        key=str(certs / "server.key"),
        client_ca=str(certs / "ca.pem"),
        require_client_cert="require",
    )
    endpoint = serverFromString(reactor, "tcp:0:interface=127.0.0.1")
    port = pytest_twisted.blockon(endpoint.listen(wrap_server_factory(Site(receiver), tls)))
    receiver.url = f"https://127.0.0.1:{port.getHost().port}/hl7"
    yield receiver
    pytest_twisted.blockon(port.stopListening())


@pytest_twisted.ensureDeferred
async def test_mutual_tls(tls_server, make, certs):
    tls = {"ca": str(certs / "ca.pem"), "cert": str(certs / "client.pem"),
           "key": str(certs / "client.key")}  # fmt: skip
    outcome = await make(url=tls_server.url, tls=tls).send(delivery())
    assert outcome.kind == OK
    assert "CN=switchboard-dev-client" in tls_server.seen[0]["peer"]["subject"]


@pytest_twisted.ensureDeferred
async def test_tls_without_client_certificate_is_retried(tls_server, make, certs):
    outcome = await make(url=tls_server.url, tls={"ca": str(certs / "ca.pem")}).send(delivery())
    assert outcome.kind == RETRY and outcome.error.startswith("TLS error"), outcome.error
    assert not tls_server.seen
