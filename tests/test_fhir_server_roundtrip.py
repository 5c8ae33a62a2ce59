"""Every supported sample, converted and delivered twice by the FHIR sender to a FHIR server
started by the test (tests/fhir_server.py: conditional create/update matched on the decoded
query, references resolved, all-or-nothing transactions): every transaction succeeds, the
second changes no count (every entry answers 200, none 201), and no
conditional search of any transaction matches more than one resource."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.endpoints import serverFromString
from twisted.web.server import Site

from engine.delivery.outcome import OK, Delivery
from engine.destinations.fhir.sender import FhirSender
from engine.fhir.convert import UnsupportedMessage, convert, validate
from engine.fhir.options import ALL_RESOURCES, ConvertOptions
from engine.hl7.batch import split_file
from engine.hl7.message import Message

from . import settings
from .conftest import samples_or_skip
from .fhir_server import FhirResource, FhirStore, TransactionError

OWN = Path(__file__).resolve().parent / "fhir_samples"
OPTS = ConvertOptions(resources=ALL_RESOURCES)  # MessageHeader too


def supported_samples() -> list[tuple[str, bytes]]:
    root = samples_or_skip().parent
    out = []
    for path in sorted(root.glob("*/*.hl7")) + sorted(OWN.glob("*.hl7")):
        raw = path.read_bytes()
        payloads = split_file(raw).messages if raw.startswith((b"BHS", b"FHS")) else [raw]
        for i, payload in enumerate(payloads):
            try:
                convert(Message.from_bytes(payload), OPTS)
            except UnsupportedMessage:
                continue  # ACKs
            out.append((f"{path.name}#{i + 1}", payload))
    return out


def duplicates(store: FhirStore) -> list[str]:
    """The conditional searches of every transaction received that now match more than one
    resource: one thing stored twice. (Distinct things may share an identifier that is not
    their key, e.g. three immunizations given under one order number.)"""
    found = []
    for bundle in store.transactions:
        for entry in bundle["entry"]:
            request, rtype = entry["request"], entry["resource"]["resourceType"]
            query = request["url"].split("?", 1)[1] if "?" in request["url"] else \
                request["ifNoneExist"]  # fmt: skip
            if len(store.search(rtype, query)) != 1:
                found.append(f"{rtype}?{query}")
    return sorted(set(found))


@pytest_twisted.ensureDeferred
async def test_each_sample_posted_twice_leaves_no_duplicates():
    samples = supported_samples()
    assert len(samples) >= 20
    store = FhirStore()
    port = await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(
        Site(FhirResource(store)))  # fmt: skip
    url = f"http://127.0.0.1:{port.getHost().port}/fhir/R4"
    sender = FhirSender(
        settings.destination("fhir", fhir=url, timeout=10.0), settings.context(reactor=reactor)
    )
    sender.start()
    try:
        for n, (name, payload) in enumerate(samples, 1):
            bundle = convert(Message.from_bytes(payload), OPTS)
            validate(bundle)
            body = json.dumps(bundle).encode()
            first = await sender.send(Delivery(n, n, "ch", "fhir", body, "application/fhir+json"))
            assert first.kind == OK, (name, first.error)
            counts = {t: store.count(t) for t in store.resources}
            answer_before = len(store.transactions)
            second = await sender.send(Delivery(n, n, "ch", "fhir", body,
                                                "application/fhir+json"))  # fmt: skip
            assert second.kind == OK, (name, second.error)
            assert len(store.transactions) == answer_before + 1
            assert {t: store.count(t) for t in store.resources} == counts, name
            again = store.transaction(bundle)  # the same once more, to read the statuses
            assert {e["response"]["status"] for e in again["entry"]} == {"200 OK"}, name
        assert duplicates(store) == []
        assert store.count("Patient") >= 10 and store.count("Immunization") == 3
        assert store.count("Appointment") == 1 and store.count("DocumentReference") == 1
        assert store.count("MedicationRequest") == 2
    finally:
        await sender.stop()
        await port.stopListening()


def test_the_server_decodes_the_query_and_refuses_an_unresolved_reference():
    store = FhirStore()
    patient = {"resourceType": "Patient", "identifier": [{"system": "http://x/id/A B",
                                                          "value": "1"}]}  # fmt: skip
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:1",
                "resource": patient,
                "request": {"method": "PUT", "url": "Patient?identifier=http://x/id/A%20B|1"},
            }
        ],
    }
    store.transaction(bundle)
    store.transaction(bundle)
    assert store.count("Patient") == 1  # "A%20B" decodes to the stored "A B"
    bundle["entry"][0]["request"]["url"] = "Patient?identifier=http://x/id/A%2520B|1"
    with pytest.raises(TransactionError, match="would match 0"):
        store.transaction(bundle)  # encoded twice: the search can never find the resource
    assert store.count("Patient") == 1
    bad = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Observation",
                                               "subject": {"reference": "urn:uuid:9"}},
         "request": {"method": "POST", "url": "Observation"}}]}  # fmt: skip
    with pytest.raises(TransactionError, match="resolves to no entry"):
        store.transaction(bad)
    assert store.count("Observation") == 0
