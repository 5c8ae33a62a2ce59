"""The fhir destination's per-channel options: time zone, identifier systems per facility,
which resources to emit, a python hook, validation; and its config errors."""

from __future__ import annotations

import json

import pytest

from engine.config import ConfigError
from engine.hl7.message import Message

from .channel_harness import pipeline

ADT = (
    "MSH|^~\\&|REG|NORTH|EHR|GHH|20261121093000||ADT^A01|A1|P|2.5\r"
    "PID|1||555^^^MRN^MR||DOE^JANE||19700101|F\r"
    "PV1|1|I|4E^412^B||||||||||||||||V9^^^VISITS^VN|||||||||||||||||||||||||20261121080000\r"
    "OBX|1|NM|8302-2^Height^LN||170|cm^cm^UCUM|||||F\r"
)


def bundle_for(tmp_path, options: str, text: str = ADT, **files) -> dict:
    channel = ("name: ch\ndestinations:\n  - name: fhir\n    fhir: https://fhir.example.org/R4\n"
               + "".join(f"    {line}\n" for line in options.strip().splitlines()))  # fmt: skip
    p, _ = pipeline(tmp_path, channel, **files)
    result = p.channels["ch"].run(Message(text))
    assert result.status == "passed", result.reason
    (out,) = result.outputs
    assert out.content_type == "application/fhir+json"
    return json.loads(out.payload)


def resources(bundle, kind):
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == kind]


def test_timezone_identifier_systems_per_facility_and_resources(tmp_path):
    b = bundle_for(tmp_path, """
timezone: Europe/Amsterdam
identifier_systems: {MRN: "http://example.org/mrn", NORTH/MRN: "http://north.example.org/mrn"}
resources: [Patient, Encounter]
""")  # fmt: skip
    (patient,) = resources(b, "Patient")
    assert patient["identifier"][0]["system"] == "http://north.example.org/mrn"  # facility wins
    (encounter,) = resources(b, "Encounter")
    assert encounter["period"]["start"] == "2026-11-21T08:00:00+01:00"
    assert resources(b, "Observation") == []  # not in resources
    put = next(e["request"] for e in b["entry"] if e["resource"]["resourceType"] == "Patient")
    assert put == {"method": "PUT",
                   "url": "Patient?identifier=http://north.example.org/mrn|555"}  # fmt: skip
    other = bundle_for(tmp_path, 'identifier_systems: {MRN: "http://example.org/mrn"}',
                       text=ADT.replace("|NORTH|", "|SOUTH|"))  # fmt: skip
    assert resources(other, "Patient")[0]["identifier"][0]["system"] == "http://example.org/mrn"
    assert len(resources(other, "Observation")) == 1  # the default emits observations


def test_hook_amends_the_bundle(tmp_path):
    hook = """
def tag(bundle, message, options):
    for entry in bundle["entry"]:
        entry["resource"].setdefault("meta", {})["tag"] = [{"code": message.get("MSH-4")}]
"""
    b = bundle_for(tmp_path, "hook: fhirhooks:tag\nvalidate: true",
                   **{"fhirhooks/__init__.py": hook})  # fmt: skip
    assert {e["resource"]["meta"]["tag"][0]["code"] for e in b["entry"]} == {"NORTH"}


def test_render_failure_errors_the_message_not_intake(tmp_path):
    p, _ = pipeline(tmp_path, "name: ch\ndestinations:\n  - {name: fhir, fhir: 'https://x.org'}\n")
    result = p.channels["ch"].run(Message(ADT.replace("ADT^A01", "ZZZ^Z01")))
    assert (result.status, result.step_kind) == ("errored", "fhir render")
    assert "no FHIR mapping for ZZZ^Z01" in result.reason and result.outputs == []


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ("timezone: Mars/Olympus", "destination 'fhir': unknown time zone 'Mars/Olympus'"),
        ("hook: nowhere.mod:fn", "destination 'fhir': cannot import nowhere.mod"),
        ("resources: [Patient, Bogus]", "invalid value 'Bogus'"),
    ],
)
def test_bad_options(tmp_path, options, error):
    with pytest.raises(ConfigError) as caught:
        bundle_for(tmp_path, options)
    assert error in caught.value.format()
