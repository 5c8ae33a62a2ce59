"""Issue 12, coverage list: practitioners from every field the guide maps to one, the
Patient details (PID-20, PID-40, XAD/XPN components, PID-21, NK1-30), Procedure, the
ADT segments in ORM/OML, the OBR specimen, PV1-50 and OBR-53."""

from __future__ import annotations

from engine.fhir.convert import convert, validate
from engine.fhir.options import ALL_RESOURCES, ConvertOptions
from engine.hl7.message import Message

OPTS = ConvertOptions(resources=ALL_RESOURCES)
GHH = "GHH&2.16.840.1.113883.19.5&ISO"


def doc(name: str, number: str) -> str:
    return f"{number}^{name}^ANN^^^DR^^^{GHH}"


def bundle_of(*segments: str) -> dict:
    data = convert(Message.from_bytes(("\r".join(segments) + "\r").encode("latin-1")), OPTS)
    validate(data)
    return data


def resources(data: dict, rtype: str) -> list[dict]:
    return [e["resource"] for e in data["entry"] if e["resource"]["resourceType"] == rtype]


def practitioner_numbers(data: dict, reference: dict) -> str:
    found = next(e["resource"] for e in data["entry"] if e["fullUrl"] == reference["reference"])
    if found["resourceType"] == "PractitionerRole":
        return practitioner_numbers(data, found["practitioner"])
    return found["identifier"][0]["value"]


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment from {field number: value} (no counting of bars by hand)."""
    return "|".join([name, *(fields.get(i, "") for i in range(1, max(fields) + 1))])


ADT = (
    "MSH|^~\\&|REG|GHH|EHR|GHH|20240101120000||ADT^A01^ADT_A01|A1|P|2.5.1",
    seg("EVN", {1: "A01", 2: "20240101120000", 5: doc("CLERK", "E5")}),
    seg("PID", {1: "1", 3: f"555^^^{GHH}^MR", 5: "DOE^JOHN^Q^III^^^L^^^^^^^PhD^Jack",
                7: "19800101", 8: "M", 11: "1 ELM ST^^CHICAGO^IL^60601^USA^H^^^^^^20200101^"
                "20231231^^^^^c/o Mary Doe", 20: "D1234567^IL^20300101",
                21: f"M777^^^{GHH}^MR", 40: "^PRN^CP^^1^312^5550199"}),
    seg("PD1", {4: doc("PRIMARY", "P4")}),
    seg("NK1", {1: "1", 2: "DOE^JANE", 3: "SPO^Spouse^HL70063", 30: "DOE^JANIE^^^^^N"}),
    seg("PV1", {1: "1", 2: "I", 3: "4W^401^A", 7: doc("ATTEND", "A7"), 10: "MED",
                19: f"V100^^^{GHH}^VN", 44: "20240101120000", 50: f"ALT9^^^{GHH}^VN",
                52: doc("OTHER", "O52")}),
    seg("PV2", {3: "CP^Chest pain^L", 13: doc("REFERRER", "R13")}),
    seg("ROL", {1: "1", 2: "AD", 3: "CP^Consulting provider^HL70443", 4: doc("ROLE", "R4")}),
    seg("PR1", {1: "1", 3: "0DTJ0ZZ^Appendectomy^I10P", 5: "202401011000",
                8: doc("ANESTH", "PR8"), 11: doc("SURGEON", "PR11"), 12: doc("ASSIST", "PR12")}),
)  # fmt: skip


def test_practitioners_from_every_mapped_field():
    data = bundle_of(*ADT)
    numbers = {p["identifier"][0]["value"] for p in resources(data, "Practitioner")}
    assert {"E5", "P4", "A7", "O52", "R13", "R4", "PR8", "PR11", "PR12"} <= numbers
    (provenance,) = resources(data, "Provenance")
    assert practitioner_numbers(data, provenance["agent"][0]["who"]) == "E5"  # EVN-5
    (patient,) = resources(data, "Patient")
    assert practitioner_numbers(data, patient["generalPractitioner"][0]) == "P4"  # PD1-4
    (encounter,) = resources(data, "Encounter")
    by_type = {p["type"][0].get("coding", [{}])[0].get("code"): practitioner_numbers(
        data, p["individual"]) for p in encounter["participant"]}  # fmt: skip
    assert by_type["PART"] == "O52" and by_type["ATND"] == "A7"  # PV1-52, PV1-7
    assert by_type["REF"] == "R13" and by_type["CP"] == "R4"  # PV2-13, ROL-4
    (procedure,) = resources(data, "Procedure")
    assert [practitioner_numbers(data, p["actor"]) for p in procedure["performer"]] == [
        "PR8", "PR11", "PR12"]  # fmt: skip
    assert procedure["performer"][0]["function"]["coding"][0]["code"] == "88189002"


def test_patient_details():
    data = bundle_of(*ADT)
    (patient,) = resources(data, "Patient")
    dl = next(i for i in patient["identifier"] if i["value"] == "D1234567")  # PID-20
    assert dl["type"]["coding"][0]["code"] == "DL"
    assert dl["system"] == "http://switchboard.local/fhir/id/drivers-license/IL"
    assert dl["period"] == {"end": "2030-01-01"}
    assert patient["telecom"][-1]["value"] == "+1 312 5550199"  # PID-40
    assert patient["telecom"][-1]["use"] == "mobile"
    address = patient["address"][0]
    assert address["period"] == {"start": "2020-01-01", "end": "2023-12-31"}  # XAD.13/.14
    assert address["line"][-1] == "c/o Mary Doe"  # XAD.19 addressee
    assert patient["name"][0]["suffix"] == ["III", "PhD"]  # XPN.4, XPN.14
    assert patient["name"][1] == {"use": "nickname", "given": ["Jack"]}  # XPN.15
    people = resources(data, "RelatedPerson")
    mother = next(p for p in people if p["relationship"][0]["coding"][0]["code"] == "MTH")
    assert mother["identifier"][0]["value"] == "M777"  # PID-21
    spouse = next(p for p in people if p is not mother)
    assert spouse["name"][1] == {"use": "nickname", "family": "DOE", "given": ["JANIE"]}  # NK1-30


def test_pr1_procedure_and_pv1_50_identifier():
    data = bundle_of(*ADT)
    (procedure,) = resources(data, "Procedure")
    assert procedure["code"]["coding"][0]["code"] == "0DTJ0ZZ"
    assert procedure["performedDateTime"].startswith("2024-01-01T10:00")
    (encounter,) = resources(data, "Encounter")
    assert [i["value"] for i in encounter["identifier"]] == ["V100", "ALT9"]


ORM = (
    "MSH|^~\\&|EHR|GHH|LAB|GHH|20240105093000||ORM^O01^ORM_O01|O1|P|2.5.1",
    seg("PID", {1: "1", 3: f"555^^^{GHH}^MR", 5: "DOE^JANE", 7: "19700101", 8: "F"}),
    "PV1|1|O",
    "IN1|1|GOLD^Gold plan|PAY1^^^PAYERS&2.16.840.1.113883.3.9&ISO|Acme Insurance",
    "AL1|1|DA|7980^Penicillin G^RXNORM|SV",
    "ORC|NW|PL1^EHR^2.16.840.1.113883.19.5^ISO",
    seg("OBR", {1: "1", 2: "PL1^EHR^2.16.840.1.113883.19.5^ISO", 4: "GLU^Glucose^L",
                53: f"ALT77^^^{GHH}"}),
    "NTE|1||Fasting|||20240105090000",
    "DG1|1||R73.9^Hyperglycemia^I10",
)  # fmt: skip


def test_orm_carries_al1_dg1_in1_and_obr_53():
    data = bundle_of(*ORM)
    assert len(resources(data, "Coverage")) == 1
    assert len(resources(data, "AllergyIntolerance")) == 1
    (condition,) = resources(data, "Condition")
    (sr,) = resources(data, "ServiceRequest")
    condition_url = next(e["fullUrl"] for e in data["entry"] if e["resource"] is condition)
    assert sr["reasonReference"] == [{"reference": condition_url}]  # DG1 -> reasonReference
    alternate = next(i for i in sr["identifier"] if i["value"] == "ALT77")  # OBR-53
    assert alternate["type"]["coding"][0]["code"] == "PLAC"


def test_oru_obr_without_spm_gives_a_specimen_and_obx_23_25_a_performer():
    data = bundle_of(
        "MSH|^~\\&|LAB|GHH|EHR|GHH|20240105093000||ORU^R01^ORU_R01|R1|P|2.5.1",
        seg("PID", {1: "1", 3: f"555^^^{GHH}^MR", 5: "DOE^JANE", 7: "19700101", 8: "F"}),
        seg("OBR", {1: "1", 3: "F1^LAB^2.3.4^ISO", 4: "GLU^Glucose^L", 7: "20240105083000",
                    9: "2^mL&milliliter&UCUM", 10: doc("COLLECTOR", "C10"),
                    14: "20240105084500", 15: "BLD&Whole blood&HL70070"}),
        seg("NTE", {1: "1", 3: "Hemolysed", 5: doc("NOTER", "N5"), 6: "20240105090000"}),
        seg("OBX", {1: "1", 2: "NM", 3: "GLU^Glucose^L", 5: "5", 6: "mmol/L", 11: "F",
                    14: "20240105083000", 23: "GHH Central Lab",
                    24: "1 Lab Way^^Chicago^IL^60601", 25: doc("DIRECTOR", "D25")}),
    )  # fmt: skip
    (specimen,) = resources(data, "Specimen")
    assert specimen["collection"]["collectedDateTime"].startswith("2024-01-05T08:30")
    assert specimen["collection"]["quantity"]["value"] == 2
    assert practitioner_numbers(data, specimen["collection"]["collector"]) == "C10"  # OBR-10
    assert specimen["receivedTime"].startswith("2024-01-05T08:45")
    assert specimen["type"]["coding"][0]["code"] == "BLD"
    (obs,) = resources(data, "Observation")
    assert obs["specimen"]["reference"].startswith("urn:uuid:")
    role = next(e["resource"] for e in data["entry"]
                if e["fullUrl"] == obs["performer"][0]["reference"])  # fmt: skip
    assert role["code"][0]["coding"][0]["code"] == "MDIR"  # OBX-25 medical director
    assert practitioner_numbers(data, role["practitioner"]) == "D25"
    org = next(e["resource"] for e in data["entry"] if e["fullUrl"] ==
               role["organization"]["reference"])  # fmt: skip
    assert org["name"] == "GHH Central Lab" and org["address"][0]["city"] == "Chicago"
    (report,) = resources(data, "DiagnosticReport")
    (sr,) = resources(data, "ServiceRequest")
    note = sr["note"][0]
    assert practitioner_numbers(data, note["authorReference"]) == "N5"  # NTE-5
    assert report["specimen"] == [{"reference": obs["specimen"]["reference"]}]
