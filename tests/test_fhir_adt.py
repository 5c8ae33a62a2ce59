"""ADT -> FHIR R4 transaction Bundle: PID -> Patient, PV1/PV2 -> Encounter (+ Practitioner),
NK1 -> RelatedPerson, AL1 -> AllergyIntolerance, DG1 -> Condition, IN1 -> Coverage.

Checklist: shared/fhir-mapping.md. Every bundle is validated against R4 (fhir.resources
6.4) and every reference must resolve to an entry of the bundle.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.bundle import Bundle

from engine.fhir import vocab
from engine.fhir.convert import convert as to_fhir
from engine.fhir.options import ConvertOptions
from engine.hl7.message import Message

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
OPTS = ConvertOptions(timezone=ZoneInfo("America/New_York"))
V2_0203 = vocab.V2 + "0203"
HOSP_OID = "2.16.840.1.113883.3.1"
NPI_OID = "2.16.840.1.113883.4.6"
BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
NAIVE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")


# building messages and bundles ---------------------------------------------------------------
def seg(name: str, values: dict[int, str]) -> str:
    """A segment from {field number: raw value}: no counting of pipes in the tests."""
    top = max(values) if values else 0
    return "|".join([name, *(values.get(i, "") for i in range(1, top + 1))])


def msh(event: str = "A01", control: str = "MSG0001") -> str:
    return f"MSH|^~\\&|SND|FAC|RCV|RFAC|20240101120000||ADT^{event}^ADT_A01|{control}|P|2.5.1"


PID = {
    1: "1",
    2: "ALT-7^^^HOSP^PI",
    3: f"777~12345^^^HOSP&{HOSP_OID}&ISO^MR~999^^^OTHER^PI",
    5: "Doe^John^Quincy^Jr^Dr^^L~^Johnny^^^^^N",
    6: "Maiden",
    7: "19800215083000",
    8: "M",
    9: "Smith^Jack",
    11: "123 Main St^Apt 4^Springfield^IL^62704^USA^H~PO Box 1^^Springfield^IL^62705^USA^M",
    12: "SANGAMON",
    13: "^PRN^PH^^1^217^5551234~^NET^Internet^john@example.com~(217)555-9999",
    14: "(217)555-0000",
    15: "en^English^HL70296",
    16: "M^Married^HL70002",
    19: "123-45-6789",
    30: "N",
}
ATTENDING = f"1234^Attend^Alice^B^^Dr^MD^^NPIAUTH&{NPI_OID}&ISO^L^^^NPI"
PV1 = {
    1: "1",
    2: "I",
    3: "4W^401^A^GENHOSP",
    6: "3E^301^B^GENHOSP",
    7: ATTENDING,
    8: "5678^Refer^Rob",
    9: '""',
    10: "MED",
    17: ATTENDING,
    19: f"V100^^^HOSP&{HOSP_OID}&ISO^VN",
    36: "01^Discharged home^HL70112",
    44: "20240101120000",
}
PV2 = {3: "CP^Chest pain^L"}
NK1 = {
    1: "1",
    2: "Doe^Jane",
    3: "SPO^Spouse^HL70063",
    4: "123 Main St^^Springfield^IL^62704^USA^H",
    5: "(217)555-1111",
    6: "(217)555-2222",
    7: "EMC^Emergency Contact^HL70131",
}
AL1 = {
    1: "1",
    2: "DA^Drug allergy^HL70127",
    3: "7980^Penicillin G^RXNORM",
    4: "SV^Severe^HL70128",
    5: "Hives~Wheezing",
    6: "20200101",
}
DG1 = {
    1: "1",
    3: "I10^Essential hypertension^I10C",
    4: "Hypertension",
    5: "20231201",
    6: "A",
    15: "1",
    16: f"1234^Attend^Alice^B^^Dr^MD^^NPIAUTH&{NPI_OID}&ISO",
    19: "20240101120000+0100",
}
IN1 = {
    1: "1",
    2: "GOLD^Gold plan",
    3: "PAY1^^^PAYERS&2.16.840.1.113883.3.9&ISO",
    4: "Acme Insurance",
    5: "1 Payer Way^^Chicago^IL^60601",
    12: "20240101",
    13: "20241231",
    15: "HMO^Health Maintenance Organization^HL70086",
    16: "Doe^John",
    17: "SEL^Self^HL70063",
    49: "SUB-42",
}


def adt(event: str = "A01", **overrides: dict | None) -> str:
    """A full ADT message; ``pid={...}`` etc. update fields, ``nk1=None`` drops a segment."""
    parts = [msh(event), seg("EVN", {1: event, 2: "20240101120000"})]
    for name, base in (("PID", PID), ("NK1", NK1), ("PV1", PV1), ("PV2", PV2),
                       ("AL1", AL1), ("DG1", DG1), ("IN1", IN1)):  # fmt: skip
        change = overrides.get(name.lower(), {})
        if change is None:
            continue
        parts.append(seg(name, {**base, **change}))
    return "\r".join(parts) + "\r"


def references(node) -> list[str]:
    """Every value of a "reference" key anywhere in the JSON."""
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(references(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(references(item))
    return found


def dangling(bundle: dict) -> list[str]:
    urls = {e["fullUrl"] for e in bundle.get("entry", [])}
    return [r for r in references(bundle) if r not in urls]


def naive_times(node) -> list[str]:
    """dateTime strings with a time but no offset: FHIR forbids them, and fhir.resources 6.4
    does not reject them, so the tests look for them."""
    if isinstance(node, dict):
        return [t for v in node.values() for t in naive_times(v)]
    if isinstance(node, list):
        return [t for v in node for t in naive_times(v)]
    return [node] if isinstance(node, str) and NAIVE_TIME.match(node) else []


# R4 required bindings of the codes this mapping sets (fhir.resources 6.4 does not check them)
REQUIRED = {
    "Patient.gender": {"male", "female", "other", "unknown"},
    "name.use": {"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"},
    "address.use": {"home", "work", "temp", "old", "billing"},
    "address.type": {"postal", "physical", "both"},
    "telecom.system": {"phone", "fax", "email", "pager", "url", "sms", "other"},
    "telecom.use": {"home", "work", "temp", "old", "mobile"},
    "Encounter.status": {"planned", "arrived", "triaged", "in-progress", "onleave", "finished",
                         "cancelled", "entered-in-error", "unknown"},
    "location.status": {"planned", "active", "reserved", "completed"},
    "AllergyIntolerance.type": {"allergy", "intolerance"},
    "AllergyIntolerance.category": {"food", "medication", "environment", "biologic"},
    "AllergyIntolerance.criticality": {"low", "high", "unable-to-assess"},
    "Coverage.status": {"active", "cancelled", "draft", "entered-in-error"},
}  # fmt: skip


def bad_codes(bundle: dict) -> list[str]:
    out = []

    def check(key: str, value) -> None:
        for v in value if isinstance(value, list) else [value]:
            if v is not None and v not in REQUIRED[key]:
                out.append(f"{key}={v}")

    for entry in bundle.get("entry", []):
        res = entry["resource"]
        rtype = res["resourceType"]
        for element in ("gender", "status", "type", "category", "criticality"):
            if f"{rtype}.{element}" in REQUIRED and element in res:
                check(f"{rtype}.{element}", res[element])
        for name in res.get("name", []) if isinstance(res.get("name"), list) else []:
            check("name.use", name.get("use"))
        for address in res.get("address", []):
            check("address.use", address.get("use"))
            check("address.type", address.get("type"))
        for telecom in res.get("telecom", []):
            check("telecom.system", telecom.get("system"))
            check("telecom.use", telecom.get("use"))
        for location in res.get("location", []) if rtype == "Encounter" else []:
            check("location.status", location.get("status"))
    return out


def convert(text: str, opts: ConvertOptions = OPTS) -> dict:
    msg = Message.from_bytes(text.encode("latin-1"))
    data = to_fhir(msg, opts)
    Bundle.parse_obj(data)  # FHIR R4 validation
    assert dangling(data) == []
    assert naive_times(data) == []
    assert bad_codes(data) == []
    return data


def entries(bundle: dict, rtype: str) -> list[dict]:
    return [e for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def one(bundle: dict, rtype: str) -> dict:
    found = entries(bundle, rtype)
    assert len(found) == 1, f"{len(found)} {rtype} entries"
    return found[0]


def by_url(bundle: dict, url: str) -> dict:
    return next(e["resource"] for e in bundle["entry"] if e["fullUrl"] == url)


def codes(concept: dict) -> list[tuple[str | None, str]]:
    return [(c.get("system"), c["code"]) for c in concept.get("coding", [])]


# the test helpers can fail -------------------------------------------------------------------
def test_reference_walker_finds_dangling_references():
    bundle = {
        "entry": [{"fullUrl": "urn:uuid:a", "resource": {"subject": {"reference": "urn:uuid:b"}}}],
        "x": [{"reference": "urn:uuid:a"}],
    }
    assert references(bundle) == ["urn:uuid:b", "urn:uuid:a"]
    assert dangling(bundle) == ["urn:uuid:b"]


def test_naive_time_finder_and_r4_validation_can_fail():
    bundle = {"a": {"start": "2024-01-01T12:00:00"}, "b": ["2024-01-01T12:00:00-05:00"],
              "c": "2024-01-01", "d": "2024-01-01T12:00:00.5"}  # fmt: skip
    assert naive_times(bundle) == ["2024-01-01T12:00:00", "2024-01-01T12:00:00.5"]
    bad = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{
            "fullUrl": "urn:uuid:1",
            "resource": {"resourceType": "Encounter", "class": {"code": "IMP"}},
            "request": {"method": "POST", "url": "Encounter"},
        }],
    }  # fmt: skip
    with pytest.raises(ValueError):  # status is 1..1
        Bundle.parse_obj(bad)
    bad["entry"][0]["resource"]["status"] = "admitted"
    Bundle.parse_obj(bad)  # fhir.resources 6.4 does not check codes ...
    assert bad_codes(bad) == ["Encounter.status=admitted"]  # ... so the tests do


# Patient ----------------------------------------------------------------------------------
def test_patient_conditional_update_on_first_pid3_identifier_with_a_system():
    entry = one(convert(adt()), "Patient")
    assert entry["request"] == {
        "method": "PUT",
        "url": f"Patient?identifier=urn:oid:{HOSP_OID}|12345",
    }


def test_patient_identifiers():
    ids = one(convert(adt()), "Patient")["resource"]["identifier"]
    # no assigning authority: the sending facility's own number, scoped to it
    assert ids[0] == {"value": "777", "system": "http://switchboard.local/fhir/id/sender/FAC"}
    assert ids[1] == {
        "value": "12345",
        "system": f"urn:oid:{HOSP_OID}",
        "type": {"coding": [{"system": V2_0203, "code": "MR"}]},
    }
    assert ids[2]["value"] == "999"
    assert ids[2]["system"] == "http://switchboard.local/fhir/id/OTHER"
    assert ids[3]["value"] == "ALT-7"  # PID-2
    assert ids[3]["type"]["coding"][0]["code"] == "PI"
    assert ids[4] == {
        "type": {"coding": [{"system": V2_0203, "code": "SS"}]},
        "system": "http://hl7.org/fhir/sid/us-ssn",
        "value": "123-45-6789",
    }
    assert len(ids) == 5


def test_patient_names_gender_birth():
    patient = one(convert(adt()), "Patient")["resource"]
    assert patient["name"] == [
        {"use": "official", "family": "Doe", "given": ["John", "Quincy"], "prefix": ["Dr"],
         "suffix": ["Jr"]},
        {"use": "nickname", "given": ["Johnny"]},
        {"family": "Smith", "given": ["Jack"]},  # PID-9 alias
    ]  # fmt: skip
    assert patient["gender"] == "male"
    assert patient["birthDate"] == "1980-02-15"
    assert patient["_birthDate"] == {
        "extension": [{"url": BIRTH_TIME, "valueDateTime": "1980-02-15T08:30:00-05:00"}]
    }
    assert patient["deceasedBoolean"] is False
    assert "deceasedDateTime" not in patient
    assert patient["extension"] == [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
        "valueString": "Maiden",
    }]  # fmt: skip


def test_patient_date_only_birth_has_no_birth_time():
    patient = one(convert(adt(pid={7: "19800215", 8: "F"})), "Patient")["resource"]
    assert patient["birthDate"] == "1980-02-15"
    assert "_birthDate" not in patient
    assert patient["gender"] == "female"


@pytest.mark.parametrize("code, gender", [("O", "other"), ("A", "other"), ("U", "unknown"),
                                          ("N", "other"), ("X", None)])  # fmt: skip
def test_patient_gender_table_0001(code, gender):
    patient = one(convert(adt(pid={8: code})), "Patient")["resource"]
    assert patient.get("gender") == gender


def test_patient_address_and_county():
    patient = one(convert(adt()), "Patient")["resource"]
    # two PID-11: PID-12 is an address of its own (PID[Patient] PID-12 rows)
    assert patient["address"] == [
        {"use": "home", "line": ["123 Main St", "Apt 4"], "city": "Springfield",
         "state": "IL", "postalCode": "62704", "country": "USA"},
        {"type": "postal", "line": ["PO Box 1"], "city": "Springfield", "state": "IL",
         "postalCode": "62705", "country": "USA"},
        {"district": "SANGAMON"},
    ]  # fmt: skip
    one_address = one(convert(adt(pid={11: "1 Elm St^^Chicago^IL^60601^USA^H"})), "Patient")
    assert one_address["resource"]["address"][0]["district"] == "SANGAMON"


def test_patient_county_does_not_override_xad_district():
    text = adt(pid={11: "1 Elm St^^Chicago^IL^60601^USA^H^^COOK", 12: "SANGAMON"})
    patient = one(convert(text), "Patient")["resource"]
    assert patient["address"][0]["district"] == "COOK"


def test_patient_telecom_language_marital():
    patient = one(convert(adt()), "Patient")["resource"]
    cp = "http://hl7.org/fhir/StructureDefinition/contactpoint-"
    assert patient["telecom"] == [
        {
            "extension": [
                {"url": cp + "country", "valueString": "1"},
                {"url": cp + "area", "valueString": "217"},
                {"url": cp + "local", "valueString": "5551234"},
            ],
            "system": "phone",
            "value": "+1 217 5551234",
            "use": "home",
        },
        {"system": "email", "value": "john@example.com", "use": "home"},
        {"system": "phone", "value": "(217)555-9999", "use": "home"},  # PID-13: home
        {"system": "phone", "value": "(217)555-0000", "use": "work"},  # PID-14: work
    ]
    assert patient["communication"] == [{"language": {"coding": [
        {"system": vocab.V2 + "0296", "code": "en", "display": "English"}]}}]  # fmt: skip
    assert codes(patient["maritalStatus"]) == [(vocab.V3_MARITAL, "M")]


def test_patient_bare_language_word_is_text_and_unknown_marital_is_null_flavor():
    patient = one(convert(adt(pid={15: "ENGLISH", 16: "U"})), "Patient")["resource"]
    assert patient["communication"] == [{"language": {"text": "ENGLISH"}}]
    assert codes(patient["maritalStatus"]) == [
        ("http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNK")
    ]


def test_patient_deceased_date_time_wins_over_indicator():
    patient = one(convert(adt(pid={29: "20240105101500", 30: "Y"})), "Patient")["resource"]
    assert patient["deceasedDateTime"] == "2024-01-05T10:15:00-05:00"
    assert "deceasedBoolean" not in patient
    patient = one(convert(adt(pid={30: "Y"})), "Patient")["resource"]
    assert patient["deceasedBoolean"] is True


def test_patient_without_identifier_system_is_keyed_within_its_sender():
    entry = one(convert(adt(pid={2: "", 3: "777", 19: ""})), "Patient")
    assert entry["request"] == {
        "method": "PUT",
        "url": "Patient?identifier=http://switchboard.local/fhir/id/sender/FAC|777",
    }
    entry = one(convert(adt(pid={2: "", 3: "", 19: ""})), "Patient")
    # no identifier at all: one derived from the message (re-posting it updates)
    assert entry["request"] == {
        "method": "PUT",
        "url": "Patient?identifier="
        "http://switchboard.local/fhir/id/sender/FAC/patient|MSG0001/PID-2",
    }
    assert entry["resource"]["identifier"] == [
        {"system": "http://switchboard.local/fhir/id/sender/FAC/patient", "value": "MSG0001/PID-2"}
    ]


def test_no_pid_or_not_emitted_gives_no_patient():
    data = convert(msh() + "\rEVN|A01|20240101120000\rPV1|1|I\r")
    assert entries(data, "Patient") == []
    opts = dataclasses.replace(OPTS, resources=OPTS.resources - {"Patient"})
    data = convert(adt(), opts)  # the rest still converts; nothing needs a patient
    assert entries(data, "Patient") == [] and entries(data, "AllergyIntolerance") == []
    assert one(data, "Encounter")["resource"].get("subject") is None


def test_same_message_gives_same_full_urls():
    assert convert(adt()) == convert(adt())


# Encounter ---------------------------------------------------------------------------------
def test_encounter_fields():
    data = convert(adt())
    entry = one(data, "Encounter")
    encounter = entry["resource"]
    assert entry["request"] == {
        "method": "PUT",
        "url": f"Encounter?identifier=urn:oid:{HOSP_OID}|V100",
    }
    assert encounter["identifier"] == [{
        "value": "V100",
        "system": f"urn:oid:{HOSP_OID}",
        "type": {"coding": [{"system": V2_0203, "code": "VN"}], "text": "visit number"},
    }]  # fmt: skip
    assert encounter["status"] == "in-progress"
    assert encounter["class"] == {
        "system": vocab.V3_ACT_CODE,
        "code": "IMP",
        "display": "inpatient encounter",
    }
    assert encounter["subject"] == {"reference": one(data, "Patient")["fullUrl"]}
    assert encounter["period"] == {"start": "2024-01-01T12:00:00-05:00"}
    assert codes(encounter["serviceType"]) == [(vocab.V2 + "0069", "MED")]
    assert codes(encounter["reasonCode"][0]) == [("http://switchboard.local/fhir/L", "CP")]
    assert codes(encounter["hospitalization"]["dischargeDisposition"]) == [
        (vocab.V2 + "0112", "01")
    ]
    assert [(loc["location"]["display"], loc["status"]) for loc in encounter["location"]] == [
        ("4W, 401, A, GENHOSP", "active"),
        ("3E, 301, B, GENHOSP", "completed"),
    ]
    bed = by_url(data, encounter["location"][0]["location"]["reference"])
    assert bed["name"] == "A" and bed["physicalType"]["coding"][0]["code"] == "bd"
    room = by_url(data, bed["partOf"]["reference"])
    assert room["name"] == "401" and room["physicalType"]["coding"][0]["code"] == "ro"


def test_encounter_participants_and_practitioners():
    data = convert(adt())
    participants = one(data, "Encounter")["resource"]["participant"]
    roles = [p["type"][0]["coding"][0] for p in participants]
    assert [(r["system"], r["code"]) for r in roles] == [
        (vocab.V3_PARTICIPATION, "ATND"),
        (vocab.V3_PARTICIPATION, "REF"),
        (vocab.V3_PARTICIPATION, "ADM"),
    ]  # PV1-9 is "" (null): no consultant
    practitioners = entries(data, "Practitioner")
    assert len(practitioners) == 2  # PV1-7 and PV1-17 (and DG1-16) are one person
    attending = practitioners[0]
    assert participants[0]["individual"]["reference"] == attending["fullUrl"]
    assert participants[2]["individual"]["reference"] == attending["fullUrl"]
    assert participants[0]["individual"]["display"] == "Dr Alice B Attend"
    assert attending["request"] == {
        "method": "POST",
        "url": "Practitioner",
        "ifNoneExist": f"identifier=urn:oid:{NPI_OID}|1234",
    }
    assert attending["resource"]["identifier"] == [{
        "system": f"urn:oid:{NPI_OID}",
        "value": "1234",
        "type": {"coding": [{"system": V2_0203, "code": "NPI"}]},
    }]  # fmt: skip
    assert attending["resource"]["name"] == [{
        "use": "official", "family": "Attend", "given": ["Alice", "B"], "prefix": ["Dr"],
    }]  # fmt: skip
    # XCN.7 degree is a qualification (XCN[Practitioner] row 7)
    assert attending["resource"]["qualification"] == [
        {"code": {"coding": [{"system": vocab.V2 + "0360", "code": "MD"}]}}
    ]
    referrer = practitioners[1]["resource"]
    # no assigning authority: the sender's own staff number, not a global system
    assert referrer["identifier"] == [
        {"system": "http://switchboard.local/fhir/id/sender/FAC", "value": "5678"}
    ]


def test_practitioner_not_emitted_gives_display_only():
    opts = dataclasses.replace(OPTS, resources=OPTS.resources - {"Practitioner"})
    data = convert(adt(), opts)
    assert entries(data, "Practitioner") == []
    participant = one(data, "Encounter")["resource"]["participant"][0]
    assert participant["individual"] == {"display": "Dr Alice B Attend"}


def test_times_get_the_channel_zone_and_keep_a_source_offset():
    data = convert(adt(pv1={44: "20240701120000", 45: "20240702130000+0100"}))
    encounter = one(data, "Encounter")["resource"]
    assert encounter["period"] == {
        "start": "2024-07-01T12:00:00-04:00",  # summer time in New York
        "end": "2024-07-02T13:00:00+01:00",
    }
    assert encounter["status"] == "finished"  # PV1-45 valued
    assert encounter["location"][0]["status"] == "completed"


@pytest.mark.parametrize("pv1_2, cls, status, location_status", [
    ("E", (vocab.V3_ACT_CODE, "EMER"), "in-progress", "active"),
    ("O", (vocab.V3_ACT_CODE, "AMB"), "in-progress", "active"),
    ("P", (vocab.V3_ACT_CODE, "PRENC"), "planned", "planned"),
    ("U", (vocab.V2 + "0004", "U"), "unknown", "active"),
    ("R", (vocab.V2 + "0004", "R"), "in-progress", "active"),
    ("", ("http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "UNK"), "in-progress",
     "active"),
])  # fmt: skip
def test_encounter_class_and_status_from_pv1_2(pv1_2, cls, status, location_status):
    encounter = one(convert(adt(pv1={2: pv1_2})), "Encounter")["resource"]
    assert (encounter["class"]["system"], encounter["class"]["code"]) == cls
    assert encounter["status"] == status
    assert encounter["location"][0]["status"] == location_status


def test_a03_discharge_is_finished():
    encounter = one(convert(adt("A03", pv1={45: "20240103090000"})), "Encounter")["resource"]
    assert encounter["status"] == "finished"
    assert encounter["period"]["end"] == "2024-01-03T09:00:00-05:00"
    encounter = one(convert(adt("A03")), "Encounter")["resource"]  # even without PV1-45
    assert encounter["status"] == "finished"


def test_a11_cancel_admit_is_cancelled():
    data = convert(adt("A11", nk1=None, al1=None, in1=None))
    encounter = one(data, "Encounter")["resource"]
    assert encounter["status"] == "cancelled"
    assert "status" not in encounter["location"][0]  # no "active" place for a cancelled visit
    assert one(data, "Encounter")["request"]["method"] == "PUT"  # the same visit number


def test_a13_cancel_discharge_is_in_progress_without_end():
    encounter = one(convert(adt("A13", pv1={45: "20240103090000"})), "Encounter")["resource"]
    assert encounter["status"] == "in-progress"
    assert encounter["period"] == {"start": "2024-01-01T12:00:00-05:00"}
    assert "hospitalization" not in encounter
    assert encounter["location"][0]["status"] == "active"


def test_a02_transfer_new_location_active_prior_completed():
    encounter = one(convert(adt("A02", nk1=None, al1=None, dg1=None, in1=None)),
                    "Encounter")["resource"]  # fmt: skip
    assert encounter["status"] == "in-progress"
    assert [(loc["location"]["display"], loc["status"]) for loc in encounter["location"]] == [
        ("4W, 401, A, GENHOSP", "active"),
        ("3E, 301, B, GENHOSP", "completed"),
    ]


@pytest.mark.parametrize("event", ["A04", "A08"])
def test_a04_a08_status_follows_pv1(event):
    encounter = one(convert(adt(event)), "Encounter")["resource"]
    assert encounter["status"] == "in-progress"


def test_encounter_without_visit_number_system_is_keyed_within_its_sender():
    entry = one(convert(adt(pv1={19: "V100"})), "Encounter")
    assert entry["request"] == {
        "method": "PUT",
        "url": "Encounter?identifier=http://switchboard.local/fhir/id/sender/FAC|V100",
    }
    assert entry["resource"]["identifier"][0]["value"] == "V100"
    entry = one(convert(adt(pv1={19: ""})), "Encounter")
    # no visit number: keyed on the patient and the admit time (PV1-44)
    assert entry["request"] == {"method": "PUT", "url": "Encounter?identifier=http://switchboa"
                                "rd.local/fhir/id/sender/FAC/encounter|12345@urn:oid:"
                                f"{HOSP_OID}/20240101120000"}  # fmt: skip


def test_no_pv1_gives_no_encounter_and_no_diagnosis():
    data = convert(adt(pv1=None, pv2=None))
    assert entries(data, "Encounter") == []
    condition = one(data, "Condition")["resource"]
    assert "encounter" not in condition


# NK1, AL1, DG1, IN1 ------------------------------------------------------------------------
def test_nk1_related_person():
    data = convert(adt())
    person = one(data, "RelatedPerson")["resource"]
    assert person["patient"] == {"reference": one(data, "Patient")["fullUrl"]}
    assert person["name"] == [{"family": "Doe", "given": ["Jane"]}]
    assert codes(person["relationship"][0]) == [
        (vocab.V3_ROLE_CODE, "SPS"),
        (vocab.V2 + "0063", "SPO"),
    ]
    # EMC is no code of table 0131 (C is): the sender's text, no made-up v2-0131 coding
    assert person["relationship"][1] == {"text": "Emergency Contact"}
    assert person["address"] == [{
        "use": "home", "line": ["123 Main St"], "city": "Springfield", "state": "IL",
        "postalCode": "62704", "country": "USA",
    }]  # fmt: skip
    assert person["telecom"] == [
        {"system": "phone", "value": "(217)555-1111"},  # NK1-5: the use is XTN.2's
        {"system": "phone", "value": "(217)555-2222", "use": "work"},
    ]


def test_nk1_relationship_without_role_code_keeps_v2_code():
    person = one(convert(adt(nk1={3: "OTH^Other^HL70063", 7: ""})), "RelatedPerson")["resource"]
    # the guide's Relationship map: OTH -> v2-0131 O; the v2-0063 code is kept
    assert person["relationship"] == [{"coding": [
        {"system": vocab.V2 + "0131", "code": "O", "display": "Other"},
        {"system": vocab.V2 + "0063", "code": "OTH", "display": "Other"}]}]  # fmt: skip


def test_al1_allergy_intolerance():
    data = convert(adt())
    allergy = one(data, "AllergyIntolerance")["resource"]
    assert allergy["patient"] == {"reference": one(data, "Patient")["fullUrl"]}
    assert allergy["clinicalStatus"] == {"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
        "code": "active", "display": "Active"}]}  # fmt: skip
    assert codes(allergy["verificationStatus"]) == [
        ("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "unconfirmed")
    ]
    assert allergy["category"] == ["medication"]
    assert allergy["type"] == "allergy"
    assert allergy["criticality"] == "high"
    assert allergy["code"] == {"coding": [{
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7980",
        "display": "Penicillin G"}]}  # fmt: skip
    assert allergy["reaction"] == [{"manifestation": [{"text": "Hives"}, {"text": "Wheezing"}]}]
    assert allergy["onsetDateTime"] == "2020-01-01"


def test_al1_coded_reaction():
    data = convert(adt(al1={5: "39579001^Anaphylaxis^SCT"}))
    reaction = one(data, "AllergyIntolerance")["resource"]["reaction"]
    anaphylaxis = {"system": "http://snomed.info/sct", "code": "39579001", "display": "Anaphylaxis"}
    assert reaction == [{"manifestation": [{"coding": [anaphylaxis]}]}]


@pytest.mark.parametrize("kind, category", [("FA", "food"), ("EA", "environment"),
                                            ("LA", "environment"), ("AA", "biologic")])  # fmt: skip
def test_al1_category(kind, category):
    allergy = one(convert(adt(al1={2: kind, 4: "MI"})), "AllergyIntolerance")["resource"]
    assert allergy["category"] == [category]
    assert allergy["criticality"] == "low"


def test_dg1_condition_and_encounter_diagnosis():
    data = convert(adt())
    entry = one(data, "Condition")
    condition = entry["resource"]
    assert condition["code"] == {
        "coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10",
                    "display": "Essential hypertension"}],
        "text": "Hypertension",
    }  # fmt: skip
    assert codes(condition["category"][0]) == [
        ("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis")
    ]
    assert codes(condition["clinicalStatus"]) == [
        ("http://terminology.hl7.org/CodeSystem/condition-clinical", "active")
    ]
    assert condition["onsetDateTime"] == "2023-12-01"
    assert condition["recordedDate"] == "2024-01-01T12:00:00+01:00"
    assert condition["subject"] == {"reference": one(data, "Patient")["fullUrl"]}
    encounter = one(data, "Encounter")
    assert condition["encounter"] == {"reference": encounter["fullUrl"]}
    assert condition["asserter"]["reference"] == entries(data, "Practitioner")[0]["fullUrl"]
    diagnosis = encounter["resource"]["diagnosis"]
    assert len(diagnosis) == 1
    assert diagnosis[0]["condition"] == {"reference": entry["fullUrl"]}
    assert diagnosis[0]["rank"] == 1
    assert codes(diagnosis[0]["use"]) == [
        ("http://terminology.hl7.org/CodeSystem/diagnosis-role", "AD")
    ]


def test_two_dg1_give_two_diagnoses():
    text = adt() + seg("DG1", {1: "2", 3: "E11.9^Type 2 diabetes^I10C", 6: "F"}) + "\r"
    data = convert(text)
    conditions = entries(data, "Condition")
    assert len(conditions) == 2
    diagnosis = one(data, "Encounter")["resource"]["diagnosis"]
    assert [d["condition"]["reference"] for d in diagnosis] == [c["fullUrl"] for c in conditions]
    assert codes(conditions[1]["resource"]["verificationStatus"]) == [
        ("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed")
    ]


def test_in1_coverage_and_payor():
    data = convert(adt())
    coverage = one(data, "Coverage")["resource"]
    patient_url = one(data, "Patient")["fullUrl"]
    assert coverage["status"] == "active"
    # keyed on the patient and the plan (a plan id alone is shared by many patients)
    assert coverage["identifier"] == [
        {"system": "http://switchboard.local/fhir/id/sender/FAC/coverage",
         "value": f"12345@urn:oid:{HOSP_OID}/GOLD"},
        {"value": "GOLD"}]  # fmt: skip
    assert coverage["beneficiary"] == {"reference": patient_url}
    assert coverage["subscriber"] == {"reference": patient_url}  # IN1-17 SEL
    assert coverage["subscriberId"] == "SUB-42"
    assert coverage["period"] == {"start": "2024-01-01", "end": "2024-12-31"}
    assert codes(coverage["type"]) == [(vocab.V2 + "0086", "HMO")]
    assert codes(coverage["relationship"])[0] == (
        "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
        "self",
    )
    payor = next(e for e in entries(data, "Organization")
                 if e["fullUrl"] == coverage["payor"][0]["reference"])  # fmt: skip
    assert coverage["payor"] == [{"reference": payor["fullUrl"], "display": "Acme Insurance"}]
    assert payor["resource"]["name"] == "Acme Insurance"
    assert payor["resource"]["identifier"] == [
        {"value": "PAY1", "system": "urn:oid:2.16.840.1.113883.3.9"}
    ]
    assert payor["request"] == {
        "method": "POST",
        "url": "Organization",
        "ifNoneExist": "identifier=urn:oid:2.16.840.1.113883.3.9|PAY1",
    }


def test_in1_other_subscriber_is_a_related_person():
    data = convert(adt(nk1=None, in1={16: "Doe^Mary", 17: "SPO^Spouse^HL70063"}))
    person = one(data, "RelatedPerson")
    coverage = one(data, "Coverage")["resource"]
    assert coverage["subscriber"] == {"reference": person["fullUrl"]}
    assert person["resource"]["name"] == [{"family": "Doe", "given": ["Mary"]}]
    assert codes(coverage["relationship"])[0][1] == "spouse"


def test_resources_only_when_emitted():
    opts = dataclasses.replace(
        OPTS, resources=OPTS.resources - {"AllergyIntolerance", "Coverage", "Organization"}
    )
    data = convert(adt(), opts)
    assert entries(data, "AllergyIntolerance") == []
    assert entries(data, "Coverage") == [] and entries(data, "Organization") == []
    assert len(entries(data, "Condition")) == 1
    assert len(entries(data, "RelatedPerson")) == 1


def test_explicit_nulls_are_empty():
    data = convert(adt(pv1={45: '""', 36: '""'}, in1={5: '""^""^NEW YORK'}))
    encounter = one(data, "Encounter")["resource"]
    assert encounter["status"] == "in-progress"
    assert "end" not in encounter["period"] and "hospitalization" not in encounter
    payor = by_url(data, one(data, "Coverage")["resource"]["payor"][0]["reference"])
    assert payor["address"] == [{"city": "NEW YORK"}]


def test_adt_obx_is_an_observation_keyed_on_the_message():
    text = adt() + "OBX|1|NM|8302-2^Body Height^LN||190|cm^centimeter^UCUM|||||F\r"
    (obs,) = entries(convert(text), "Observation")
    assert obs["resource"]["valueQuantity"]["value"] == 190
    assert obs["request"] == {
        "method": "PUT",
        "url": "Observation?identifier=http://switchboa"
        "rd.local/fhir/id/sender/FAC/observation|MSG0001/OBX-1",
    }


# sample messages ---------------------------------------------------------------------------
def _samples() -> list[Path]:
    files = sorted((SAMPLES / "hl7").glob("adt_*.hl7"))
    ig = SAMPLES / "fhir-ig" / "IG-test_conversions-ADT_A01.hl7"
    return files + ([ig] if ig.exists() else [])


needs_samples = pytest.mark.skipif(
    not (SAMPLES / "hl7").is_dir(), reason=f"shared samples not found at {SAMPLES}"
)


@needs_samples
@pytest.mark.parametrize("path", _samples(), ids=lambda p: p.name)
def test_sample_converts(path):
    data = convert(path.read_bytes().decode("latin-1"))
    patient = entries(data, "Patient")
    assert len(patient) == (2 if "a24" in path.name else 1)  # A24 links two patients
    assert patient[0]["resource"].get("name") or patient[0]["resource"].get("identifier")


def test_samples_are_there_when_the_folder_is():
    if not (SAMPLES / "hl7").is_dir():
        pytest.skip(f"shared samples not found at {SAMPLES}")
    assert len(_samples()) >= 7


@needs_samples
def test_sample_a01_v23_with_insurance_and_nulls():
    data = convert((SAMPLES / "hl7" / "adt_a01_v23_python-hl7.hl7").read_text("latin-1"))
    assert one(data, "Patient")["request"]["url"] == (
        "Patient?identifier=http://switchboard.local/fhir/id/MSH_MRN|2148790"
    )
    encounter = one(data, "Encounter")["resource"]
    assert encounter["status"] == "in-progress"  # PV1-45 is "" (null), not a discharge
    assert encounter["period"] == {"start": "2014-02-10T22:53:00-05:00"}
    assert len(entries(data, "Coverage")) == 3
    condition = one(data, "Condition")["resource"]
    assert codes(condition["code"]) == [("http://hl7.org/fhir/sid/icd-9-cm", "440.21")]


@needs_samples
def test_sample_a03_discharge():
    data = convert((SAMPLES / "hl7" / "adt_a03_v25_lf_source_hapi.hl7").read_text("latin-1"))
    encounter = one(data, "Encounter")["resource"]
    assert encounter["status"] == "finished"
    assert encounter["period"] == {"end": "2008-03-03T15:08:00-05:00"}


@needs_samples
def test_sample_a24_custom_separators():
    path = SAMPLES / "hl7" / "adt_a24_v24_custom_separators_hapi.hl7"
    first, second = entries(convert(path.read_text("latin-1")), "Patient")
    assert (
        first["request"]["url"] == "Patient?identifier=http://switchboard.local/fhir/id/FOO|11111"
    )
    assert first["resource"]["name"] == [{"family": "SMITH", "given": ["JOHN", "TEST"]}]
    # A24 (link patient information): each refers to the other
    assert first["resource"]["link"] == [{"other": {"reference": second["fullUrl"]},
                                          "type": "seealso"}]  # fmt: skip
    assert second["resource"]["link"][0]["other"] == {"reference": first["fullUrl"]}


def test_ig_adt_a01():
    path = SAMPLES / "fhir-ig" / "IG-test_conversions-ADT_A01.hl7"
    if not path.exists():
        pytest.skip(f"V2-to-FHIR guide test message not found at {path}")
    data = convert(path.read_text("latin-1"))
    patient = one(data, "Patient")
    assert patient["request"]["url"] == "Patient?identifier=urn:oid:1.2.3.4.5|1032702"
    resource = patient["resource"]
    assert resource["birthDate"] == "1970-06-01"
    assert resource["_birthDate"]["extension"][0]["valueDateTime"] == "1970-06-01T09:12:00-04:00"
    assert resource["name"][0]["family"] == "Everywoman"
    assert resource["name"][1]["use"] == "maiden"
    assert resource["identifier"][1]["type"]["coding"][0]["code"] == "DL"
    work = resource["telecom"][2]
    assert (work["system"], work["value"], work["use"]) == ("phone", "+1 555 555-1126 X12", "work")
    encounter = one(data, "Encounter")
    assert encounter["request"]["url"] == "Encounter?identifier=urn:oid:1.2.3.4.5.6|81456267"
    assert encounter["resource"]["class"]["code"] == "EMER"
    assert encounter["resource"]["period"] == {"start": "2015-06-01T13:58:00-04:00"}
    allergy = one(data, "AllergyIntolerance")["resource"]
    assert allergy["category"] == ["environment"]
    assert allergy["code"] == {"text": "Timothy Grass"}
    coverage = one(data, "Coverage")["resource"]
    assert coverage["period"] == {"start": "2015-01-01", "end": "2015-12-31"}
    assert coverage["subscriber"] == {"reference": patient["fullUrl"]}
