"""FHIR delivery against a server started by the test that behaves like a FHIR server:
transaction responses checked entry by entry, OperationOutcome on 400, 503 with Retry-After."""

from __future__ import annotations

import json
from collections import deque

import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.web.resource import Resource
from twisted.web.server import Site

from engine.delivery.outcome import DEAD, OK, RETRY, Delivery
from engine.destinations.fhir.sender import FhirSender, outcome_text

from . import settings

BUNDLE = json.dumps({"resourceType": "Bundle", "type": "transaction", "entry": []}).encode()


def outcome(diag: str, where: str = "Patient.birthDate") -> dict:
    issue = {"severity": "error", "code": "invalid", "diagnostics": diag, "expression": [where]}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def response(*statuses: str) -> dict:
    return {"resourceType": "Bundle", "type": "transaction-response", "entry": [
        {"response": {"status": s, "location": f"Patient/{i}/_history/1"}}
        for i, s in enumerate(statuses, 1)]}  # fmt: skip


class FhirServer(Resource):
    isLeaf = True

    def __init__(self):
        super().__init__()
        self.script: deque = deque()
        self.seen: list[dict] = []

    def render_POST(self, request):
        body = request.content.read()
        self.seen.append({"path": request.path, "body": json.loads(body),
                          "type": request.getHeader(b"content-type"),
                          "accept": request.getHeader(b"accept")})  # fmt: skip
        status, payload, headers = self.script.popleft() if self.script else (
            200, response("201 Created"), {})  # fmt: skip
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/fhir+json")
        for k, v in headers.items():
            request.setHeader(k.encode(), v.encode())
        return json.dumps(payload).encode()


async def serve(resource):
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(Site(resource))
    return port, f"http://127.0.0.1:{port.getHost().port}/fhir/R4"


def delivery() -> Delivery:
    return Delivery(1, 10, "adt", "fhir", BUNDLE, "application/fhir+json")


@pytest_twisted.ensureDeferred
async def test_transaction_outcomes():
    server = FhirServer()
    port, url = await serve(server)
    sender = FhirSender(
        settings.destination("fhir", fhir=url, timeout=5.0), settings.context(reactor=reactor)
    )
    sender.start()
    try:
        server.script.extend([
            (200, response("201 Created", "200 OK"), {}),
            (400, outcome("birthDate: not a date"), {}),
            (503, outcome("maintenance", ""), {"Retry-After": "120"}),
            (200, {"resourceType": "Bundle", "type": "transaction-response", "entry": [
                {"response": {"status": "201 Created"}},
                {"response": {"status": "422 Unprocessable Entity",
                              "outcome": outcome("code required", "Observation.code")}}]}, {}),
        ])  # fmt: skip
        ok = await sender.send(delivery())
        assert (ok.kind, ok.code) == (OK, "200")
        assert server.seen[0]["path"] == b"/fhir/R4"  # the base URL: a transaction
        assert server.seen[0]["type"] == b"application/fhir+json"
        assert server.seen[0]["accept"] == b"application/fhir+json"
        bad = await sender.send(delivery())
        assert bad.kind == DEAD and bad.code == "400"
        assert bad.error == ("HTTP 400 Bad Request: error/invalid: birthDate: not a date at "
                             "Patient.birthDate")  # fmt: skip
        busy = await sender.send(delivery())
        assert (busy.kind, busy.retry_after) == (RETRY, 120)
        partial = await sender.send(delivery())
        assert partial.kind == DEAD
        assert partial.error == ("transaction entry 2 failed: error/invalid: code required at "
                                 "Observation.code")  # fmt: skip
    finally:
        await sender.stop()
        await port.stopListening()


def test_outcome_text():
    assert outcome_text({"resourceType": "Patient"}) is None
    assert outcome_text(outcome("x", "Patient.name")) == "error/invalid: x at Patient.name"
