"""HL7 data types to FHIR: times and offsets, names, telecoms, codes, identifiers."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from engine.fhir.convert import validate
from engine.fhir.datatypes import V2, cwe, cx, dtm, xpn, xtn
from engine.fhir.options import ConvertOptions
from engine.fhir.people import xcn_identifier

NY = ZoneInfo("America/New_York")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", "2024"),
        ("202403", "2024-03"),
        ("20240315", "2024-03-15"),
        ("202403151230", "2024-03-15T12:30:00-04:00"),  # daylight saving time in New York
        ("20240115123045", "2024-01-15T12:30:45-05:00"),
        ("20240115123045.123", "2024-01-15T12:30:45.123-05:00"),
        ("20240115123045+0100", "2024-01-15T12:30:45+01:00"),  # the source offset is kept
        ("2024011512", "2024-01-15T12:00:00-05:00"),
        ("20240230", None),  # not a calendar date
        ("notadate", None),
        ("", None),
    ],
)
def test_dtm_never_a_time_without_offset(value, expected):
    assert dtm(value, NY) == expected


def test_dtm_date_only():
    assert dtm("20240115123045", NY, date_only=True) == "2024-01-15"


def test_xpn_and_xtn():
    assert xpn(V2("DOE^JANE^Q^JR^DR^^L")) == {
        "use": "official", "family": "DOE", "given": ["JANE", "Q"], "prefix": ["DR"],
        "suffix": ["JR"]}  # fmt: skip
    cp = "http://hl7.org/fhir/StructureDefinition/contactpoint-"
    assert xtn(V2("^PRN^PH^^1^217^5550100")) == {
        "extension": [{"url": cp + "country", "valueString": "1"},
                      {"url": cp + "area", "valueString": "217"},
                      {"url": cp + "local", "valueString": "5550100"}],
        "system": "phone", "value": "+1 217 5550100", "use": "home"}  # fmt: skip
    assert xtn(V2("^NET^Internet^jane@example.org")) == {
        "system": "email", "value": "jane@example.org", "use": "home"}  # fmt: skip
    assert xtn(V2("(555)555-0100"), default_use="work") == {
        "system": "phone", "value": "(555)555-0100", "use": "work"}  # fmt: skip


def test_cwe_systems_known_hl7_and_local():
    opts = ConvertOptions(local_system="http://hosp.example.org/fhir")
    concept = cwe(V2("2345-7^Glucose^LN^GLU^Glucose local^GHH LAB"), opts)
    assert concept["coding"] == [
        {"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"},
        {"system": "http://hosp.example.org/fhir/GHH-LAB", "code": "GLU",
         "display": "Glucose local"},
    ]  # fmt: skip
    assert cwe(V2("F^Female^HL70001"))["coding"][0]["system"] == (
        "http://terminology.hl7.org/CodeSystem/v2-0001")  # fmt: skip


def test_cx_systems():
    opts = ConvertOptions(identifier_systems={"MRN": "http://hosp.example.org/mrn"})
    assert cx(V2("123^^^GHH&2.16.840.1.113883.19.5&ISO^MR"), opts) == {
        "value": "123", "system": "urn:oid:2.16.840.1.113883.19.5",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                             "code": "MR"}]}}  # fmt: skip
    assert cx(V2("123^^^MRN"), opts)["system"] == "http://hosp.example.org/mrn"
    assert cx(V2("^^^MRN"), opts) is None


def test_npi_without_authority_uses_the_canonical_system():
    f = V2("1234567893^WELBY^MARCUS^^^^^^^^^^NPI")
    assert xcn_identifier(f, ConvertOptions())["system"] == "http://hl7.org/fhir/sid/us-npi"


def test_validate_rejects_a_time_without_offset():
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b5e8a0e-8e1a-4a53-9d3e-1d9b8a7c6b5a",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "effectiveDateTime": "2024-01-01T10:00:00"},
         "request": {"method": "POST", "url": "Observation"}}]}  # fmt: skip
    with pytest.raises(ValueError, match="a time without a UTC offset"):
        validate(bundle)


def test_full_urls_are_name_based_uuids():
    import uuid

    from engine.fhir.bundle import NAMESPACE, TransactionBundle

    bundle = TransactionBundle("SND|FAC|MSG1")
    for rtype, key in (("Patient", "patient|urn:oid:1.2|5"), ("Observation", "oru-obx-1")):
        expected = uuid.uuid5(NAMESPACE, f"SND|FAC|MSG1|{rtype}|{key}")
        assert bundle.full_url(rtype, key) == f"urn:uuid:{expected}"
