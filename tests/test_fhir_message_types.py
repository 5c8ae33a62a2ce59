"""Issue 12, new message types: VXU^V04 (Immunization), MDM^T02 (DocumentReference), SIU^S12
(Appointment), ADT^A40 (merge), ORM with RXO (MedicationRequest); and the refusal of the
types not mapped: a clear error, never a silent partial bundle."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.fhir.convert import UnsupportedMessage, convert, validate
from engine.fhir.options import ConvertOptions
from engine.hl7.message import Message

from .channel_harness import pipeline
from .conftest import samples_or_skip

REPO = Path(__file__).resolve().parents[1]
OWN = Path(__file__).resolve().parent / "fhir_samples"
OPTS = ConvertOptions()


def ig(kind: str) -> dict:
    path = samples_or_skip().parent / "fhir-ig" / f"IG-test_conversions-{kind}.hl7"
    data = convert(Message.from_bytes(path.read_bytes()), OPTS)
    validate(data)
    return data


def own(name: str) -> dict:
    data = convert(Message.from_bytes((OWN / name).read_bytes()), OPTS)
    validate(data)
    return data


def resources(data: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == rtype]


def by_url(data: dict, url: str) -> dict:
    return next(e["resource"] for e in data["entry"] if e["fullUrl"] == url)


def test_vxu_immunizations_with_their_observations():
    data = ig("VXU_V04")
    first, *others = resources(data, "Immunization")
    assert len(others) == 2  # three ORC/RXA groups
    assert first["vaccineCode"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/ndc",
        "code": "49281-0215-88",
        "display": "TENIVAC",
    }
    assert first["status"] == "completed"  # RXA-20 CP
    assert first["occurrenceDateTime"].startswith("2015-06-24T08:30")  # RXA-3
    assert first["doseQuantity"] == {
        "value": 0.5,
        "unit": "mL",
        "system": "http://unitsofmeasure.org",
        "code": "mL",
    }
    assert first["lotNumber"] == "315841" and first["expirationDate"] == "2015-12-16"
    assert by_url(data, first["manufacturer"]["reference"])["name"] == "Sanofi Pasteur"
    assert first["route"]["coding"][0]["code"] == "C28161"  # RXR-1
    assert first["site"]["coding"][0]["code"] == "RD"  # RXR-2
    functions = [p["function"]["coding"][0]["code"] for p in first["performer"]]
    assert functions == ["OP", "AP"]  # ORC-12, RXA-10
    assert [i["type"]["coding"][0]["code"] for i in first["identifier"][:2]] == ["PLAC", "FILL"]
    location = by_url(data, first["location"]["reference"])
    assert location["address"]["city"] == "Ann Arbor"  # RXA-28
    assert "doseQuantity" not in others[0]  # RXA-6 999: amount unknown
    observations = resources(data, "Observation")
    assert len(observations) == 4
    immunization_url = next(e["fullUrl"] for e in data["entry"] if e["resource"] is first)
    assert all(o["partOf"] == [{"reference": immunization_url}] for o in observations)
    keys = {json.dumps(e["request"]) for e in data["entry"]}
    assert len(keys) == len(data["entry"])  # the three RXA share ORC numbers: keyed apart


def test_mdm_document_reference():
    data = ig("MDM_T02")
    (document,) = resources(data, "DocumentReference")
    assert document["masterIdentifier"]["value"] == "3738931392"  # TXA-12
    assert document["status"] == "current"  # TXA-19 AV
    assert document["docStatus"] == "final"  # TXA-17 AU
    assert document["type"]["coding"][0]["code"] == "PN"
    assert document["description"] == "Discharge Summary"  # TXA-25
    assert len(document["author"]) == 1 and "authenticator" in document  # TXA-9, TXA-10
    kinds = [c["attachment"].get("contentType") for c in document["content"]]  # OBX-5 rows
    assert kinds == ["application/text", "text/hl7v2", "text/plain", "application/pdf"]
    text = base64.b64decode(document["content"][1]["attachment"]["data"]).decode()
    assert "Critical Values Entered On:" in text and "\n" in text  # FT, \.br\ -> new line
    (sr,) = resources(data, "ServiceRequest")
    sr_url = next(e["fullUrl"] for e in data["entry"] if e["resource"] is sr)
    assert document["context"]["related"] == [{"reference": sr_url}]
    assert resources(data, "Observation") == []  # the OBX are the document's content


def test_siu_appointment():
    data = ig("SIU_S12")
    (appointment,) = resources(data, "Appointment")
    assert appointment["status"] == "booked"  # SCH-25 Booked
    assert [i["value"] for i in appointment["identifier"]] == ["1209", "13030"]
    assert appointment["start"].startswith("2015-06-13T14:00")  # SCH-11 TQ.4
    assert appointment["minutesDuration"] == 15  # SCH-9/-10
    actors = [p.get("actor", {}).get("reference") for p in appointment["participant"]]
    (patient,) = [e["fullUrl"] for e in data["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert patient in actors
    with_actor = [p for p in appointment["participant"] if p.get("actor", {}).get("reference")]
    practitioner = next(
        p
        for p in with_actor
        if p.get("period")
        and by_url(data, p["actor"]["reference"])["resourceType"] == "Practitioner"
    )  # AIP
    assert practitioner["period"]["start"].startswith("2019-04-23T14:00")
    assert practitioner["period"]["end"].startswith("2019-04-23T14:15")  # + AIP-9 15 min
    location = next(
        p for p in with_actor if by_url(data, p["actor"]["reference"])["resourceType"] == "Location"
    )
    assert "Healthmatics Clinic" in location["actor"]["display"]  # AIL-3


def test_adt_a40_merge_links_the_two_records():
    data = own("adt_a40.hl7")
    survivor, merged = resources(data, "Patient")
    assert survivor["identifier"][0]["value"] == "555123"
    assert merged["identifier"][0] == {
        "value": "555999", "system": "urn:oid:2.16.840.1.113883.19.5", "use": "old",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "MR"}]}}  # fmt: skip
    urls = {e["resource"]["identifier"][0]["value"]: e["fullUrl"] for e in data["entry"]
            if e["resource"]["resourceType"] == "Patient"}  # fmt: skip
    assert survivor["link"] == [{"other": {"reference": urls["555999"]}, "type": "replaces"}]
    assert merged["link"] == [{"other": {"reference": urls["555123"]}, "type": "replaced-by"}]
    assert merged["active"] is False and merged["name"] == [{"family": "DOE", "given": ["JANIE"]}]


def test_orm_rxo_medication_requests():
    data = own("orm_o01_rxo.hl7")
    first, second = resources(data, "MedicationRequest")
    assert (first["status"], first["intent"]) == ("active", "original-order")
    assert second["status"] == "stopped"  # ORC-1 DC
    medication = by_url(data, first["medicationReference"]["reference"])
    assert medication["code"]["coding"][0]["code"] == "308182"
    assert medication["form"]["coding"][0]["code"] == "CAP"  # RXO-5
    assert medication["ingredient"][0]["strength"]["numerator"]["value"] == 250  # RXO-18/-19
    dose = first["dosageInstruction"][0]
    assert dose["doseAndRate"][0]["doseRange"] == {
        "low": {"value": 250, "unit": "milligram", "system": "http://unitsofmeasure.org",
                "code": "mg"},
        "high": {"value": 500, "unit": "milligram", "system": "http://unitsofmeasure.org",
                 "code": "mg"}}  # fmt: skip
    assert dose["route"]["coding"][0]["code"] == "PO"  # RXR-1
    assert first["dispenseRequest"]["quantity"]["value"] == 30  # RXO-11
    assert first["dispenseRequest"]["numberOfRepeatsAllowed"] == 2  # RXO-13
    assert first["substitution"]["allowedCodeableConcept"]["coding"][0]["code"] == "N"
    assert first["note"] == [{"text": "Take with food."}]
    assert second["medicationCodeableConcept"]["coding"][0]["code"] == "197361"
    assert resources(data, "ServiceRequest") == []  # a pharmacy order is a MedicationRequest


# refusal ----------------------------------------------------------------------------------------
UNMAPPED = ["DFT^P03", "RDE^O11", "MDM^T01", "ADT^A17", "BAR^P01", "ZZZ^Z01"]


def message(kind: str) -> Message:
    return Message(f"MSH|^~\\&|A|B|C|D|20240101||{kind}|1|P|2.5\rEVN||20240101\r"
                   "PID|1||555^^^GHH^MR||DOE^JOHN\rPV1|1|I\r")  # fmt: skip


@pytest.mark.parametrize("kind", UNMAPPED)
def test_unmapped_types_are_refused_with_a_clear_error(kind):
    with pytest.raises(UnsupportedMessage) as caught:
        convert(message(kind), OPTS)
    text = str(caught.value)
    assert text.startswith(f"no FHIR mapping for {kind}: the FHIR conversion maps ADT^")
    assert "VXU^V04" in text and "MDM^T02" in text


def test_convert_command_refuses_an_unmapped_type(tmp_path):
    path = tmp_path / "dft.hl7"
    path.write_bytes(message("DFT^P03").to_bytes())
    out = subprocess.run([sys.executable, "-m", "engine", "convert", str(path)],
                         capture_output=True, text=True, timeout=60, cwd=REPO)  # fmt: skip
    assert out.returncode == 1 and out.stdout == ""
    assert "no FHIR mapping for DFT^P03" in out.stderr and "Traceback" not in out.stderr


def test_fhir_destination_keeps_an_unmapped_message_as_errored(tmp_path):
    channel = "name: ch\ndestinations:\n  - {name: fhir, fhir: 'https://fhir.example.org/R4'}\n"
    p, _ = pipeline(tmp_path, channel)
    result = p.channels["ch"].run(message("RDE^O11"))
    assert (result.status, result.step_kind) == ("errored", "fhir render")
    assert result.reason.startswith("no FHIR mapping for RDE^O11") and result.outputs == []
    ok = p.channels["ch"].run(message("ADT^A01"))
    assert ok.status == "passed" and len(ok.outputs) == 1
