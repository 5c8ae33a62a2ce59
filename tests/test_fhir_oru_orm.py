"""ORU/ORM/OML -> FHIR R4: Observation, DiagnosticReport, ServiceRequest, Specimen
(engine/fhir/observation.py, orders.py, oru.py, orm.py; checklist shared/fhir-mapping.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.bundle import Bundle

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle
from engine.fhir.observation import add_observation, number, time_of_day
from engine.fhir.options import ALL_RESOURCES, ConvertOptions
from engine.fhir.orders import add_service_request
from engine.fhir.orm import convert_orm
from engine.fhir.oru import convert_oru
from engine.hl7.message import Message

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "samples"
NY = ZoneInfo("America/New_York")
OPTS = ConvertOptions(timezone=NY)
LOINC = "http://loinc.org"
V2_0203 = vocab.V2 + "0203"

MSH = "MSH|^~\\&|LAB|FAC|EHR|FAC|20240105093000||ORU^R01|MSG1|P|2.5.1"
PID = "PID|1||12345^^^FAC^MR||DOE^JANE||19800101|F"
PLACER1, FILLER1 = "PL100^EHR^1.2.3^ISO", "FL200^LAB^2.3.4^ISO"
PLACER2, FILLER2 = "PL101^EHR^1.2.3^ISO", "FL201^LAB^2.3.4^ISO"


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment from {field number: value} (no counting of bars by hand)."""
    values = [""] * max(fields)
    for n, v in fields.items():
        values[n - 1] = v
    return "|".join([name, *values])


def obx(vtype: str, code: str, value: str, unit: str = "", status: str = "F", **more) -> str:
    """An OBX; ``more`` as f<n>="..." (f4 sub-ID, f7 range, f8 flag, f14 time, f21 id)."""
    fields = {1: "1", 2: vtype, 3: code, 5: value, 6: unit, 11: status}
    fields.update({int(k[1:]): v for k, v in more.items()})
    return seg("OBX", fields)


ORU = "\r".join([
    MSH,
    PID,
    seg("ORC", {1: "RE", 2: PLACER1, 3: FILLER1, 5: "CM"}),
    seg("OBR", {1: "1", 2: PLACER1, 3: FILLER1, 4: "24323-8^Comprehensive metabolic panel^LN",
                7: "20240105083000", 8: "20240105090000", 22: "20240105093000-0500",
                24: "CH", 25: "F"}),
    obx("NM", "2345-7^Glucose^LN^GLU^Glucose^L", "182", "mg/dL", f7="70-99", f8="H",
        f14="20240105083000-0500"),
    "NTE|1||Fasting sample.",
    "NTE|2||Repeat advised.",
    obx("NM", "2951-2^Sodium^LN", "140", "mmol/L^millimole per liter^UCUM", f7="136-145",
        f8="N"),
    obx("ST", "8251-1^Comment^LN", "hemolyzed", status="P"),
    seg("ORC", {1: "RE", 2: PLACER2, 3: FILLER2}),
    seg("OBR", {1: "2", 2: PLACER2, 3: FILLER2, 4: "58410-2^CBC^LN", 7: "20240705083000",
                25: "P", 29: "PL100&EHR&1.2.3&ISO^FL200&LAB&2.3.4&ISO"}),
    obx("NM", "718-7^Hemoglobin^LN", "13.5", "g/dL"),
]) + "\r"  # fmt: skip


# helpers --------------------------------------------------------------------------------------
def message(text: str) -> Message:
    return Message.from_bytes(text.encode("latin-1"))


def new_bundle(msh10: str = "MSG1") -> tuple[TransactionBundle, str, str]:
    bundle = TransactionBundle(message_key="k", msh10=msh10)
    patient = bundle.add({"resourceType": "Patient", "active": True}, key="patient",
                         search="identifier=urn:oid:1.2|12345")  # fmt: skip
    bundle.subject_key = "12345@urn:oid:1.2"
    encounter = bundle.add(
        {
            "resourceType": "Encounter",
            "status": "unknown",
            "class": {"system": vocab.V3_ACT_CODE, "code": "AMB"},
            "subject": {"reference": patient},
        },
        key="encounter",
        search="identifier=urn:oid:1.2|V1",
    )
    return bundle, patient, encounter


def references(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                found.append(v)
            else:
                found.extend(references(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(references(v))
    return found


def check(bundle: TransactionBundle) -> dict:
    """Valid R4 and every reference resolves to a fullUrl of the bundle."""
    data = bundle.to_json()
    Bundle.parse_obj(data)
    urls = {e["fullUrl"] for e in data["entry"]}
    assert len(urls) == len(data["entry"])
    for ref in references(data):
        assert ref in urls, f"unresolved reference {ref}"
    return data


def of_type(data: dict, rtype: str) -> list[dict]:
    return [e for e in data["entry"] if e["resource"]["resourceType"] == rtype]


def convert(text: str, opts: ConvertOptions = OPTS) -> dict:
    msg = message(text)
    opts = dataclasses.replace(opts, sender=msg.get("MSH-4") or "")
    bundle, patient, encounter = new_bundle()
    if (msg.get("MSH-9.1") or "") == "ORU":
        convert_oru(bundle, msg, opts, patient, encounter)
    else:
        convert_orm(bundle, msg, opts, patient, encounter)
    return check(bundle)


def one_obx(segment: str, *after: str, tz=NY) -> dict:
    """The Observation entry for a single OBX (after MSH/PID/OBR)."""
    text = "\r".join([MSH, PID, "OBR|1||FL9^LAB|1^Panel^L", segment, *after]) + "\r"
    msg = message(text)
    bundle, patient, encounter = new_bundle()
    ref = add_observation(bundle, msg, 1, ConvertOptions(timezone=tz), patient, encounter, "obx1")
    data = check(bundle)
    entry = next(e for e in data["entry"] if e["fullUrl"] == ref)
    return entry


def samples(folder: str, pattern: str) -> list[Path]:
    return sorted((SAMPLES / folder).glob(pattern)) if (SAMPLES / folder).is_dir() else []


# Observation ---------------------------------------------------------------------------------
def test_oru_observation_code_value_interpretation_status_and_time():
    data = convert(ORU)
    obs = of_type(data, "Observation")
    assert len(obs) == 4
    glucose = obs[0]["resource"]
    assert glucose["code"]["coding"] == [
        {"system": LOINC, "code": "2345-7", "display": "Glucose"},
        {"system": "http://switchboard.local/fhir/L", "code": "GLU", "display": "Glucose"},
    ]
    assert glucose["valueQuantity"] == {"value": 182, "unit": "mg/dL"}
    assert isinstance(glucose["valueQuantity"]["value"], int)
    assert glucose["interpretation"] == [
        {"coding": [{"system": vocab.V3_INTERPRETATION, "code": "H"}]}
    ]
    assert glucose["status"] == "final"
    assert glucose["effectiveDateTime"] == "2024-01-05T08:30:00-05:00"
    assert glucose["referenceRange"] == [{"text": "70-99"}]
    assert glucose["note"] == [{"text": "Fasting sample."}, {"text": "Repeat advised."}]
    assert glucose["subject"]["reference"] == data["entry"][0]["fullUrl"]
    assert glucose["encounter"]["reference"] == data["entry"][1]["fullUrl"]
    # conditional update on filler number + code (a final replaces a preliminary)
    assert glucose["identifier"] == [{"system": "urn:oid:2.3.4", "value": "FL200-2345-7"}]
    assert obs[0]["request"] == {
        "method": "PUT",
        "url": "Observation?identifier=urn:oid:2.3.4|FL200-2345-7",
    }

    sodium = obs[1]["resource"]
    assert sodium["valueQuantity"] == {
        "value": 140,
        "unit": "millimole per liter",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    assert sodium["interpretation"][0]["coding"][0]["code"] == "N"
    # no OBX-14: OBR-7 without an offset, in the channel zone (January: EST)
    assert sodium["effectiveDateTime"] == "2024-01-05T08:30:00-05:00"
    assert obs[2]["resource"]["valueString"] == "hemolyzed"
    assert obs[2]["resource"]["status"] == "preliminary"
    # second group: OBR-7 in July -> EDT
    assert obs[3]["resource"]["effectiveDateTime"] == "2024-07-05T08:30:00-04:00"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("F", "final"), ("P", "preliminary"), ("C", "corrected"), ("A", "amended"),
        ("D", "entered-in-error"), ("W", "entered-in-error"),
        # [gap] statuses: the checklist's recommendation
        ("I", "registered"), ("O", "registered"), ("R", "preliminary"), ("S", "preliminary"),
        ("U", "final"), ("N", "unknown"), ("", "unknown"), ("Q", "unknown"),
    ],
)  # fmt: skip
def test_observation_status(code, status):
    obs = one_obx(obx("NM", "1-8^X^LN", "5", "mg", code))["resource"]
    assert obs["status"] == status
    assert obs["valueQuantity"]["value"] == 5
    assert "dataAbsentReason" not in obs


def test_cancelled_observation_has_data_absent_reason_and_no_value():
    obs = one_obx(obx("NM", "1-8^X^LN", "5", "mg", "X"))["resource"]
    assert obs["status"] == "cancelled"
    assert obs["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    assert "valueQuantity" not in obs


@pytest.mark.parametrize(
    ("value", "key", "expected"),
    [
        (">^200", "valueQuantity", {"value": 200, "comparator": ">", "unit": "mg/dL"}),
        ("<=^0.5", "valueQuantity", {"value": 0.5, "comparator": "<=", "unit": "mg/dL"}),
        ("=^7", "valueQuantity", {"value": 7, "unit": "mg/dL"}),
        ("^182", "valueQuantity", {"value": 182, "unit": "mg/dL"}),
        ("<0.10", "valueQuantity", {"value": 0.1, "comparator": "<", "unit": "mg/dL"}),
        ("^10^-^20", "valueRange",
         {"low": {"value": 10, "unit": "mg/dL"}, "high": {"value": 20, "unit": "mg/dL"}}),
        ("^1^:^128", "valueRatio", {"numerator": {"value": 1}, "denominator": {"value": 128}}),
        ("^1^/^2", "valueRatio", {"numerator": {"value": 1}, "denominator": {"value": 2}}),
        ("^2^+", "valueString", "2+"),
        ("<>^5", "valueString", "<>5"),
    ],
)  # fmt: skip
def test_sn_values(value, key, expected):
    obs = one_obx(obx("SN", "1-8^X^LN", value, "mg/dL"))["resource"]
    assert obs[key] == expected


def test_value_types():
    cwe = one_obx(obx("CWE", "1-8^X^LN", "260373001^Detected^SCT"))["resource"]
    assert cwe["valueCodeableConcept"] == {
        "coding": [{"system": "http://snomed.info/sct", "code": "260373001", "display": "Detected"}]
    }
    ce = one_obx(obx("CE", "1-8^X^LN", "POS^Positive^L"))["resource"]
    assert ce["valueCodeableConcept"]["coding"][0]["code"] == "POS"
    dt = one_obx(obx("DT", "1-8^X^LN", "20240301"))["resource"]
    assert dt["valueDateTime"] == "2024-03-01"
    dtm = one_obx(obx("DTM", "1-8^X^LN", "202403011015+0100"))["resource"]
    assert dtm["valueDateTime"] == "2024-03-01T10:15:00+01:00"
    ts = one_obx(obx("TS", "1-8^X^LN", "202407011015"))["resource"]
    assert ts["valueDateTime"] == "2024-07-01T10:15:00-04:00"
    tm = one_obx(obx("TM", "1-8^X^LN", "1015"))["resource"]
    assert tm["valueTime"] == "10:15:00"
    nr = one_obx(obx("NR", "1-8^X^LN", "3.5^5", "g/dL"))["resource"]
    assert nr["valueRange"] == {"low": {"value": 3.5, "unit": "g/dL"},
                                "high": {"value": 5, "unit": "g/dL"}}  # fmt: skip
    tx = one_obx(obx("TX", "1-8^X^LN", "line one~line two"))["resource"]
    assert tx["valueString"] == "line one\nline two"
    ft = one_obx(obx("FT", "1-8^X^LN", "pH \\H\\7.28\\N\\\\.br\\done \\T\\ ok"))["resource"]
    assert ft["valueString"] == "pH 7.28\ndone & ok"
    ed = one_obx(obx("ED", "1-8^X^LN", "^AP^PDF^Base64^JVBERi0="))["resource"]
    assert "dataAbsentReason" not in ed and not [k for k in ed if k.startswith("value")]
    text_nm = one_obx(obx("NM", "1-8^X^LN", "POSITIVE"))["resource"]
    assert text_nm["valueString"] == "POSITIVE"
    nm_cmp = one_obx(obx("NM", "1-8^X^LN", ">1000", "IU/L"))["resource"]
    assert nm_cmp["valueQuantity"] == {"value": 1000, "comparator": ">", "unit": "IU/L"}


def test_repeating_nm_gives_components():
    obs = one_obx(obx("NM", "8480-6^BP^LN", "120~80", "mm[Hg]^^UCUM"))["resource"]
    code = {"coding": [{"system": LOINC, "code": "8480-6", "display": "BP"}]}
    assert "valueQuantity" not in obs
    assert obs["component"] == [
        {"code": code, "valueQuantity": {"value": 120, "unit": "mm[Hg]",
                                         "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
        {"code": code, "valueQuantity": {"value": 80, "unit": "mm[Hg]",
                                         "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
    ]  # fmt: skip


def test_obx21_identifier_sub_id_and_a_derived_key_without_identifier():
    entry = one_obx(obx("NM", "1-8^X^LN", "5", "mg", f4="2a", f21="OBS77^LAB^9.9^ISO"))
    obs = entry["resource"]
    assert obs["identifier"] == [
        {
            "value": "OBS77",
            "system": "urn:oid:9.9",
            "type": {"coding": [{"system": V2_0203, "code": "FILL"}]},
        }
    ]
    assert entry["request"] == {"method": "PUT", "url": "Observation?identifier=urn:oid:9.9|OBS77"}
    assert obs["extension"][0]["extension"][0] == {
        "url": "original-sub-identifier", "valueString": "2a"}  # fmt: skip
    plain = one_obx(obx("NM", "1-8^X^LN", "5", "mg"))  # keyed on the message and the OBX
    assert plain["request"] == {
        "method": "PUT",
        "url": "Observation?identifier=http://switchb"
        "oard.local/fhir/id/sender/unknown/observation|MSG1/OBX-1",
    }


def test_effective_without_offset_uses_the_zone():
    obs = one_obx(obx("NM", "1-8^X^LN", "5", "mg", f14="20240105083000"))["resource"]
    assert obs["effectiveDateTime"] == "2024-01-05T08:30:00-05:00"
    utc = one_obx(obx("NM", "1-8^X^LN", "5", "mg", f14="20240105083000"), tz=ZoneInfo("UTC"))
    assert utc["resource"]["effectiveDateTime"] == "2024-01-05T08:30:00+00:00"


def test_number_and_time_helpers():
    assert number("182") == 182 and number("-0.5") == -0.5 and number("+3") == 3
    assert number("1e5") is None and number("nan") is None and number("") is None
    assert number("12.") == 12.0 and number(".5") == 0.5 and number(".") is None
    assert time_of_day("101530.25+0100") == "10:15:30.25"
    assert time_of_day("2575") is None


# DiagnosticReport ----------------------------------------------------------------------------
def test_diagnostic_report_per_obr_group():
    data = convert(ORU)
    reports = of_type(data, "DiagnosticReport")
    assert len(reports) == 2
    obs_urls = [e["fullUrl"] for e in of_type(data, "Observation")]
    srs = of_type(data, "ServiceRequest")
    first, second = reports[0]["resource"], reports[1]["resource"]
    assert first["status"] == "final"
    assert first["code"]["coding"][0] == {
        "system": LOINC, "code": "24323-8", "display": "Comprehensive metabolic panel"}  # fmt: skip
    assert first["category"] == [{"coding": [{"system": vocab.V2 + "0074", "code": "CH"}]}]
    assert first["effectivePeriod"] == {
        "start": "2024-01-05T08:30:00-05:00", "end": "2024-01-05T09:00:00-05:00"}  # fmt: skip
    assert first["issued"] == "2024-01-05T09:30:00-05:00"
    assert [r["reference"] for r in first["result"]] == obs_urls[:3]
    assert [r["reference"] for r in second["result"]] == obs_urls[3:]
    assert first["basedOn"] == [{"reference": srs[0]["fullUrl"]}]
    assert first["identifier"][0]["value"] == "FL200"
    assert first["identifier"][0]["type"]["coding"][0]["code"] == "FILL"
    assert reports[0]["request"] == {
        "method": "PUT", "url": "DiagnosticReport?identifier=urn:oid:2.3.4|FL200"}  # fmt: skip
    assert second["status"] == "preliminary"
    assert second["effectiveDateTime"] == "2024-07-05T08:30:00-04:00"
    assert first["subject"]["reference"] == data["entry"][0]["fullUrl"]


@pytest.mark.parametrize(("code", "status"), [("", "unknown"), ("X", "cancelled"),
                                              ("I", "registered"), ("C", "corrected")])  # fmt: skip
def test_report_status(code, status):
    text = "\r".join([MSH, PID, seg("OBR", {1: "1", 3: "F1^LAB", 4: "1-8^X^LN", 25: code})]) + "\r"
    report = of_type(convert(text), "DiagnosticReport")[0]["resource"]
    assert report["status"] == status


def test_specimen_from_spm():
    text = "\r".join([
        MSH, PID,
        seg("OBR", {1: "1", 3: "F1^LAB", 4: "1-8^X^LN", 7: "20240105083000"}),
        obx("NM", "1-8^X^LN", "5", "mg"),
        seg("SPM", {1: "1", 2: "SP1&LAB&1.2.9&ISO", 4: "BLD^Whole blood^HL70487",
                    17: "20240105081500", 18: "20240105090000"}),
        obx("NM", "1-9^Volume^LN", "3", "mL"),
    ]) + "\r"  # fmt: skip
    data = convert(text)
    specimen = of_type(data, "Specimen")[0]
    s = specimen["resource"]
    assert s["identifier"][0]["value"] == "SP1" and s["identifier"][0]["system"] == "urn:oid:1.2.9"
    assert s["type"]["coding"][0] == {"system": vocab.V2 + "0487", "code": "BLD",
                                      "display": "Whole blood"}  # fmt: skip
    assert s["collection"]["collectedDateTime"] == "2024-01-05T08:15:00-05:00"
    assert s["receivedTime"] == "2024-01-05T09:00:00-05:00"
    assert specimen["request"]["url"] == "Specimen?identifier=urn:oid:1.2.9|SP1"
    report = of_type(data, "DiagnosticReport")[0]["resource"]
    assert report["specimen"] == [{"reference": specimen["fullUrl"]}]
    obs = of_type(data, "Observation")
    assert all(o["resource"]["specimen"] == {"reference": specimen["fullUrl"]} for o in obs)
    # [ours] the SPM group's OBX describes the specimen: not a report result
    assert report["result"] == [{"reference": obs[0]["fullUrl"]}]


def test_emits_respected():
    opts = ConvertOptions(timezone=NY, resources=ALL_RESOURCES - {"Observation", "ServiceRequest"})
    data = convert(ORU, opts)
    assert not of_type(data, "Observation") and not of_type(data, "ServiceRequest")
    report = of_type(data, "DiagnosticReport")[0]["resource"]
    assert "result" not in report and "basedOn" not in report


# ServiceRequest ------------------------------------------------------------------------------
def test_service_request_identifiers_and_parent():
    data = convert(ORU)
    srs = of_type(data, "ServiceRequest")
    assert len(srs) == 2
    first = srs[0]["resource"]
    assert first["identifier"] == [
        {"value": "PL100", "system": "urn:oid:1.2.3",
         "type": {"coding": [{"system": V2_0203, "code": "PLAC"}]}},
        {"value": "FL200", "system": "urn:oid:2.3.4",
         "type": {"coding": [{"system": V2_0203, "code": "FILL"}]}},
    ]  # fmt: skip
    assert first["status"] == "completed"  # ORC-5 CM
    assert first["intent"] == "order"
    assert srs[0]["request"] == {
        "method": "PUT", "url": "ServiceRequest?identifier=urn:oid:1.2.3|PL100"}  # fmt: skip
    # OBR-29 points at the first order, which is in this bundle
    assert srs[1]["resource"]["basedOn"] == [{"reference": srs[0]["fullUrl"]}]
    assert srs[1]["resource"]["status"] == "unknown"  # ORC-1 RE, no ORC-5


ORM = "\r".join([
    "MSH|^~\\&|EHR|FAC|LAB|FAC|20240105093000||ORM^O01|MSG2|P|2.3",
    PID,
    seg("ORC", {1: "{orc1}", 2: "PL300^EHR", 4: "GRP1^EHR", 5: "{orc5}", 7: "^^^^^S",
                9: "20240105091500", 12: "1234^SMITH^JOHN^^^DR^^^NPI"}),
    seg("OBR", {1: "1", 2: "PL300^EHR", 3: "FL300^LAB", 4: "80048^BMP^C4", 6: "20240105090000",
                31: "R73.9^Hyperglycemia^I10"}),
    "NTE|1||Patient fasting",
    "DG1|1||R73.9^Hyperglycemia^I10",
    obx("NM", "39156-5^BMI^LN", "31.2", "kg/m2^^UCUM"),
]) + "\r"  # fmt: skip


@pytest.mark.parametrize(
    ("orc1", "orc5", "status"),
    [("NW", "", "active"), ("CA", "", "active"), ("HD", "", "active"), ("NW", "CM", "completed"),
     ("NW", "ER", "entered-in-error"), ("XX", "", "unknown"), ("SC", "IP", "active")],
)  # fmt: skip
def test_orm_service_request_status(orc1, orc5, status):
    data = convert(ORM.format(orc1=orc1, orc5=orc5))
    assert of_type(data, "ServiceRequest")[0]["resource"]["status"] == status


def test_orm_service_request_fields():
    data = convert(ORM.format(orc1="NW", orc5=""))
    entry = of_type(data, "ServiceRequest")[0]
    sr = entry["resource"]
    assert [(i["value"], i["type"]["coding"][0]["code"]) for i in sr["identifier"]] == [
        ("PL300", "PLAC"), ("FL300", "FILL")]  # fmt: skip
    assert sr["identifier"][0]["system"] == "http://switchboard.local/fhir/id/EHR"
    assert sr["requisition"]["value"] == "GRP1"
    assert sr["priority"] == "stat"
    assert sr["authoredOn"] == "2024-01-05T09:15:00-05:00"
    assert sr["occurrenceDateTime"] == "2024-01-05T09:00:00-05:00"
    assert sr["code"]["coding"][0] == {"system": "http://www.ama-assn.org/go/cpt",
                                       "code": "80048", "display": "BMP"}  # fmt: skip
    assert sr["reasonCode"][0]["coding"][0]["code"] == "R73.9"
    assert sr["note"] == [{"text": "Patient fasting"}]
    practitioner = of_type(data, "Practitioner")[0]
    assert sr["requester"]["reference"] == practitioner["fullUrl"]
    assert practitioner["request"]["method"] == "POST"
    assert practitioner["resource"]["identifier"][0]["value"] == "1234"
    obs = of_type(data, "Observation")
    assert sr["supportingInfo"] == [{"reference": obs[0]["fullUrl"]}]
    assert obs[0]["request"] == {  # keyed on the order's placer number + OBX-3
        "method": "PUT", "url": "Observation?identifier=http://switchboard.local/fhir/id/EHR|"
        "PL300-39156-5"}  # fmt: skip
    assert obs[0]["resource"]["valueQuantity"]["value"] == 31.2


def test_shared_placer_number_is_told_apart_by_code():
    text = "\r".join([
        "MSH|^~\\&|EHR|FAC|LAB|FAC|20240105093000||ORM^O01|MSG3|P|2.3", PID,
        "ORC|NW|213",
        "OBR|1|213||CCOR^Cortisol^L",
        "OBR|2|213||GCU^Copper^L",
    ]) + "\r"  # fmt: skip
    srs = of_type(convert(text), "ServiceRequest")
    assert [e["request"]["url"] for e in srs] == [
        # no authority: the sender's system (never a search without one)
        "ServiceRequest?identifier=http://switchboard.local/fhir/id/sender/FAC|213"
        "&code=http://switchboard.local/fhir/L|CCOR",
        "ServiceRequest?identifier=http://switchboard.local/fhir/id/sender/FAC|213"
        "&code=http://switchboard.local/fhir/L|GCU",
    ]
    assert all(e["resource"]["status"] == "active" for e in srs)  # the ORC is shared


def test_parent_not_in_message_gets_a_conditional_stub():
    text = "\r".join([
        "MSH|^~\\&|EHR|FAC|LAB|FAC|20240105093000||ORM^O01|MSG4|P|2.5", PID,
        "ORC|NW|C1^EHR^1.2.3^ISO",
        seg("OBR", {1: "1", 2: "C1^EHR^1.2.3^ISO", 4: "1-8^X^LN", 29: "P9&EHR&1.2.3&ISO"}),
    ]) + "\r"  # fmt: skip
    data = convert(text)
    srs = of_type(data, "ServiceRequest")
    stub, child = srs[0], srs[1]
    assert stub["request"] == {"method": "POST", "url": "ServiceRequest",
                               "ifNoneExist": "identifier=urn:oid:1.2.3|P9"}  # fmt: skip
    assert child["resource"]["basedOn"] == [{"reference": stub["fullUrl"]}]


def test_parent_later_in_message_replaces_its_stub():
    text = "\r".join([
        "MSH|^~\\&|EHR|FAC|LAB|FAC|20240105093000||ORM^O01|MSG5|P|2.5", PID,
        "ORC|NW|C1^EHR^1.2.3^ISO",
        seg("OBR", {1: "1", 2: "C1^EHR^1.2.3^ISO", 4: "1-8^X^LN", 29: "P9&EHR&1.2.3&ISO"}),
        "ORC|NW|P9^EHR^1.2.3^ISO",
        "OBR|2|P9^EHR^1.2.3^ISO||2-9^Parent^LN",
    ]) + "\r"  # fmt: skip
    srs = of_type(convert(text), "ServiceRequest")
    assert len(srs) == 2
    parent = srs[0]
    assert parent["request"] == {"method": "PUT",
                                 "url": "ServiceRequest?identifier=urn:oid:1.2.3|P9"}  # fmt: skip
    assert parent["resource"]["code"]["coding"][0]["code"] == "2-9"
    assert srs[1]["resource"]["basedOn"] == [{"reference": parent["fullUrl"]}]


def test_no_subject_no_service_request():
    msg = message(ORM.format(orc1="NW", orc5=""))
    bundle = TransactionBundle(message_key="k", msh10="MSG2")
    assert add_service_request(bundle, msg, 1, 1, OPTS, None, None) is None


def test_same_message_same_bundle():
    assert convert(ORU) == convert(ORU)


# samples ---------------------------------------------------------------------------------------
SAMPLE_FILES = samples("hl7", "oru_*.hl7") + samples("hl7", "orm_*.hl7") + [
    p for p in samples("fhir-ig", "IG-test_conversions-*.hl7")
    if p.stem.rsplit("-", 1)[-1] in ("ORU_R01", "ORM_O01", "OML_O21")
]  # fmt: skip


@pytest.mark.skipif(not SAMPLE_FILES, reason=f"no ORU/ORM samples under {SAMPLES}")
@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_samples_convert_and_validate(path):
    data = convert(path.read_bytes().decode("latin-1"))
    kinds = {e["resource"]["resourceType"] for e in data["entry"]}
    assert "ServiceRequest" in kinds
    if "ORU" in path.name or path.name.startswith("oru"):
        assert "DiagnosticReport" in kinds and "Observation" in kinds


def test_ig_oru_sample_details():
    path = SAMPLES / "fhir-ig" / "IG-test_conversions-ORU_R01.hl7"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    data = convert(path.read_bytes().decode("latin-1"))
    obs = [e["resource"] for e in of_type(data, "Observation")]
    assert [o["code"]["coding"][0]["code"] for o in obs] == ["6153-1", "6041-8", "6265-3"]
    assert obs[0]["valueQuantity"] == {"value": 3.9, "unit": "kU/L"}
    assert obs[2]["valueQuantity"] == {"value": 0.1, "comparator": "<", "unit": "kU/L"}
    assert obs[0]["interpretation"][0]["coding"][0]["code"] == "A"
    report = of_type(data, "DiagnosticReport")[0]["resource"]
    assert report["status"] == "final"
    assert report["issued"] == "2015-06-01T18:11:00-04:00"
    assert len(report["result"]) == 3
    sr = of_type(data, "ServiceRequest")[0]["resource"]
    assert sr["status"] == "completed" and sr["priority"] == "routine"
    assert sr["note"][0]["text"] == "Allergy test interpretations are subjective."
