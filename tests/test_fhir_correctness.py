"""Issue 12, correctness points 1-8: conditional URLs a server decodes to the stored value,
every entry idempotent, corrections applied, identifiers scoped to the sender, ORC-1 status
per the guide, no free text asserted as a code, XTN per the guide, ED/RP attachments."""

from __future__ import annotations

import base64
from urllib.parse import parse_qsl

import pytest

from engine.fhir.convert import convert, validate
from engine.fhir.options import ConvertOptions
from engine.hl7.message import Message

from .fhir_server import FhirStore, token

OPTS = ConvertOptions()
V2 = "http://terminology.hl7.org/CodeSystem/v2-"


def bundle_of(*segments: str, opts: ConvertOptions = OPTS) -> dict:
    data = convert(Message.from_bytes(("\r".join(segments) + "\r").encode("latin-1")), opts)
    validate(data)
    return data


def of_type(data: dict, rtype: str) -> list[dict]:
    return [e for e in data["entry"] if e["resource"]["resourceType"] == rtype]


def search_of(request: dict) -> str:
    return request["url"].split("?", 1)[1] if request["method"] == "PUT" else request["ifNoneExist"]


def fhir_unescape(text: str) -> str:
    return text.replace("\\|", "|").replace("\\,", ",").replace("\\$", "$").replace("\\\\", "\\")


ADT = (
    "MSH|^~\\&|REG|NORTH CAMPUS|EHR|GHH|20240101120000||ADT^A01^ADT_A01|MSG 1+2|P|2.5.1",
    "EVN|A01|20240101120000",
    "PID|1||A\\T\\B+C 1,2^^^NIST MPI^MR~777||DOE^JOHN||19800101|M|||1 ELM ST^^CHICAGO^IL^60601"
    "||(217)555-1111^PRN^PH^^1^217^5551234",
    "NK1|1|DOE^JANE|SPO^Spouse^HL70063||(217)555-1111|||||||||||||||||||||||||||||",
    "PV1|1|I|4W^401^A||||1234^ATTEND^ALICE|||MED||||||||||||||||||||||||||||||||||20240101120000",
    "OBX|1|NM|8302-2^Body Height^LN||190|cm^centimeter^UCUM|||||F",
    "AL1|1|DA|7980^Penicillin G^RXNORM|SV|Hives",
    "DG1|1||I10^Essential hypertension^I10C",
    "PR1|1||0DT^Appendectomy^I10P||20240101100000",
    "IN1|1|GOLD^Gold plan||Acme Insurance|1 Payer Way^^Chicago^IL^60601",
)


# 1. conditional URLs decode to the stored value ---------------------------------------------
def test_conditional_urls_decode_to_the_resources_own_identifier():
    data = bundle_of(*ADT)
    checked = 0
    for entry in data["entry"]:
        params = parse_qsl(search_of(entry["request"]), strict_parsing=True)
        for name, value in params:
            if name != "identifier":
                continue
            system, code = token(value)
            own = [(i.get("system"), i["value"]) for i in entry["resource"]["identifier"]]
            assert (system, code) in own, (entry["request"], own)
            checked += 1
    assert checked == len(data["entry"]) - 1  # all but the Provenance (keyed on a tag)
    patient = of_type(data, "Patient")[0]
    ident = patient["resource"]["identifier"][0]
    # a namespace with a blank becomes a system with nothing to escape; the value is
    # percent-encoded once ("A&B+C 1,2" -> FHIR escape "\\," then %26 %2B %20)
    assert ident == {"value": "A&B+C 1,2", "system": "http://switchboard.local/fhir/id/NIST-MPI",
                     "type": {"coding": [{"system": V2 + "0203", "code": "MR"}]}}  # fmt: skip
    assert patient["request"]["url"] == (
        "Patient?identifier=http://switchboard.local/fhir/id/NIST-MPI|A%26B%2BC%201\\,2"
    )
    ((name, value),) = parse_qsl(patient["request"]["url"].split("?", 1)[1])
    assert fhir_unescape(value) == f"{ident['system']}|{ident['value']}"
    assert "%" not in data["entry"][0]["resource"]["identifier"][0]["system"]


# 2. every resource is idempotent on re-post ---------------------------------------------------
def test_every_entry_is_conditional_and_the_same_on_a_second_conversion():
    first, second = bundle_of(*ADT), bundle_of(*ADT)
    for entry in first["entry"]:
        request = entry["request"]
        assert ("?" in request["url"] and request["method"] == "PUT") or request.get(
            "ifNoneExist"), request  # fmt: skip
    assert [e["request"] for e in first["entry"]] == [e["request"] for e in second["entry"]]
    kinds = {e["resource"]["resourceType"] for e in first["entry"]}
    assert {"RelatedPerson", "Coverage", "AllergyIntolerance", "Organization", "Observation",
            "Condition", "Procedure", "Location", "Provenance"} <= kinds  # fmt: skip


def test_posting_twice_to_a_server_creates_nothing_new():
    store = FhirStore()
    store.transaction(bundle_of(*ADT))
    counts = {t: store.count(t) for t in store.resources}
    again = store.transaction(bundle_of(*ADT))
    assert {t: store.count(t) for t in store.resources} == counts
    assert {e["response"]["status"] for e in again["entry"]} == {"200 OK"}


# 3. corrections are applied -------------------------------------------------------------------
ORU = (
    "MSH|^~\\&|LAB|GHH LAB|EHR|GHH|{ts}||ORU^R01^ORU_R01|{id}|P|2.5.1",
    "PID|1||555^^^GHH&2.16.840.1.113883.19.5&ISO^MR||DOE^JANE||19700101|F",
    "ORC|RE|P1^EHR^1.2.3^ISO|F1^LAB^2.3.4^ISO",
    "OBR|1|P1^EHR^1.2.3^ISO|F1^LAB^2.3.4^ISO|2345-7^Glucose^LN|||20240105083000||||||||||||||"
    "|20240105093000-0500|||{obr25}",
    "OBX|1|NM|2345-7^Glucose^LN||{value}|mg/dL^mg/dL^UCUM|70-99|H|||{obx11}",
)


def oru(value: str, status: str, msg_id: str) -> dict:
    fields = {"ts": "20240105093000", "id": msg_id, "obr25": status, "value": value,
              "obx11": status}  # fmt: skip
    return bundle_of(*(s.format(**fields) for s in ORU))


def test_a_corrected_result_updates_the_stored_observation_and_report():
    store = FhirStore()
    store.transaction(oru("182", "F", "M1"))
    store.transaction(oru("190", "C", "M2"))  # OBX-11 C, OBR-25 C
    (obs,) = store.all("Observation")
    assert (obs["status"], obs["valueQuantity"]["value"]) == ("corrected", 190)
    (report,) = store.all("DiagnosticReport")
    assert report["status"] == "corrected"
    entry = of_type(oru("190", "C", "M2"), "Observation")[0]
    assert entry["request"]["method"] == "PUT"  # a conditional update, not ifNoneExist


def test_a_final_result_replaces_the_preliminary_one():
    store = FhirStore()
    store.transaction(oru("180", "P", "M1"))
    store.transaction(oru("182", "F", "M2"))
    (obs,) = store.all("Observation")
    assert (obs["status"], obs["valueQuantity"]["value"]) == ("final", 182)


# 4. identifiers are scoped to the sender -------------------------------------------------------
def orm(sender: str) -> dict:
    return bundle_of(
        f"MSH|^~\\&|EHR|{sender}|LAB|GHH|20240105093000||ORM^O01|M1|P|2.3",
        "PID|1||555^^^GHH&2.16.840.1.113883.19.5&ISO^MR||DOE^JANE",
        "ORC|NW|213|F9", "OBR|1|213|F9|GLU^Glucose^L",
        "OBX|1|NM|GLU^Glucose^L||5|mmol/L|||||F",
    )  # fmt: skip


def test_numbers_without_an_authority_are_scoped_to_the_sender():
    north, south = orm("NORTH"), orm("SOUTH")
    for data in (north, south):
        for entry in data["entry"]:
            query = search_of(entry["request"])
            assert "of-type" not in query
            for _name, value in parse_qsl(query):
                assert token(value)[0], f"a search without a system: {query}"
    sr_north = of_type(north, "ServiceRequest")[0]["resource"]["identifier"][0]
    assert sr_north["system"] == "http://switchboard.local/fhir/id/sender/NORTH"
    obs_north = of_type(north, "Observation")[0]["resource"]["identifier"][0]
    obs_south = of_type(south, "Observation")[0]["resource"]["identifier"][0]
    assert obs_north["system"] != obs_south["system"]
    assert "/id/observation" not in obs_north["system"]  # no global system
    store = FhirStore()
    store.transaction(north)
    store.transaction(south)
    assert store.count("ServiceRequest") == 2 and store.count("Observation") == 2


# 5. ORC-1 status per the guide -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("orc1", "orc5", "obr25", "status"),
    [
        ("NW", "", "", "active"),
        ("CA", "", "", "active"),  # a cancel *request*: the order is still active
        ("HD", "", "", "active"),  # a hold *request*
        ("CR", "", "", "revoked"),  # canceled as requested
        ("OH", "", "", "on-hold"),
        ("NW", "CA", "", "revoked"),  # ORC-5 wins over ORC-1
        ("CA", "IP", "", "active"),
        ("RE", "", "F", "completed"),  # ORC-1 RE has no status: final results [ours]
        ("RE", "", "", "unknown"),
        ("SC", "", "", "unknown"),  # the guide leaves SC unmapped
        ("XO", "", "", "unknown"),
    ],
)
def test_service_request_status_follows_the_guides_maps(orc1, orc5, obr25, status):
    data = bundle_of(
        "MSH|^~\\&|EHR|GHH|LAB|GHH|20240105093000||ORU^R01|M1|P|2.5",
        "PID|1||555^^^GHH&2.16.840.1.113883.19.5&ISO^MR||DOE^JANE",
        f"ORC|{orc1}|P1^EHR|||{orc5}",
        f"OBR|1|P1^EHR||GLU^Glucose^L|||||||||||||||||||||{obr25}",
    )  # fmt: skip
    assert of_type(data, "ServiceRequest")[0]["resource"]["status"] == status


# 6. no free text asserted as a code ------------------------------------------------------------
def nk1_relationships(nk1_3: str, nk1_7: str) -> list[dict]:
    data = bundle_of(
        "MSH|^~\\&|REG|GHH|EHR|GHH|20240101120000||ADT^A08|M1|P|2.3",
        "EVN|A08|20240101120000",
        "PID|1||555^^^GHH&2.16.840.1.113883.19.5&ISO^MR||DOE^JOHN",
        f"NK1|1|DOE^JANE|{nk1_3}||||{nk1_7}",
    )  # fmt: skip
    return of_type(data, "RelatedPerson")[0]["resource"]["relationship"]


@pytest.mark.parametrize(
    ("nk1_3", "nk1_7", "expected"),
    [
        ("OTH", "Emergency Contact 1", [
            {"coding": [{"system": V2 + "0131", "code": "O", "display": "Other"},
                        {"system": V2 + "0063", "code": "OTH"}]},
            {"text": "Emergency Contact 1"}]),
        ("COUSIN", "EMC^Emergency Contact", [{"text": "COUSIN"}, {"text": "Emergency Contact"}]),
        ("BRO^Brother^HL70063", "C", [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
                         "code": "BRO", "display": "brother"},
                        {"system": V2 + "0063", "code": "BRO", "display": "Brother"}]},
            {"coding": [{"system": V2 + "0131", "code": "C", "display": "Emergency Contact"}]}]),
        ("NEPH^Nephew^L", "", [{"coding": [
            {"system": "http://switchboard.local/fhir/L", "code": "NEPH", "display": "Nephew"}]}]),
    ],
)  # fmt: skip
def test_relationship_and_contact_role_codes_only_from_their_tables(nk1_3, nk1_7, expected):
    assert nk1_relationships(nk1_3, nk1_7) == expected


# 7. phone numbers per the guide's XTN map ------------------------------------------------------
@pytest.mark.parametrize(
    ("xtn", "value"),
    [
        ("(555)555-1234^PRN^PH^^^^^^^^^5555551234", "5555551234"),  # XTN.12 first
        ("(555)555-1234^PRN^PH^^1^555^5551234^99", "+1 555 5551234 X99"),  # .5-.8 composed
        ("(555)555-1234^PRN^PH", "(555)555-1234"),  # XTN.1 only when .7 and .12 are empty
        ("^NET^Internet^jane@example.org", "jane@example.org"),
    ],
)
def test_telecom_value_per_the_xtn_map(xtn, value):
    data = bundle_of(
        "MSH|^~\\&|REG|GHH|EHR|GHH|20240101120000||ADT^A04|M1|P|2.5",
        "EVN|A04|20240101120000",
        f"PID|1||555^^^GHH&2.16.840.1.113883.19.5&ISO^MR||DOE^JOHN||||||||{xtn}",
    )  # fmt: skip
    assert of_type(data, "Patient")[0]["resource"]["telecom"][0]["value"] == value


# 8. ED/RP values as attachments ------------------------------------------------------------------
def test_ed_and_rp_values_are_attachments():
    pdf = base64.b64encode(b"%PDF-1.4 ...").decode()
    data = bundle_of(
        "MSH|^~\\&|LAB|GHH|EHR|GHH|20240105093000||ORU^R01|M1|P|2.5.1",
        "PID|1||555^^^GHH&2.16.840.1.113883.19.5&ISO^MR||DOE^JANE",
        "OBR|1||F1^LAB^2.3.4^ISO|11502-2^Laboratory report^LN",
        f"OBX|1|ED|11502-2^Laboratory report^LN||LAB^AP^PDF^Base64^{pdf}||||||F",
        "OBX|2|RP|18748-4^Imaging^LN||https://pacs.example.org/s/1^PACS^IM^JPEG||||||F",
    )  # fmt: skip
    ed, rp = (e["resource"] for e in of_type(data, "Observation"))
    url = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment"
    assert ed["extension"] == [{"url": url, "valueAttachment": {
        "data": pdf, "contentType": "application/pdf"}}]  # fmt: skip
    assert rp["extension"] == [{"url": url, "valueAttachment": {
        "url": "https://pacs.example.org/s/1", "contentType": "image/jpeg"}}]  # fmt: skip
    assert "dataAbsentReason" not in ed and "dataAbsentReason" not in rp
