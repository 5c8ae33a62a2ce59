"""Vocabulary maps from the V2-to-FHIR guide (concept maps of HL7 tables), and coding-system
names to URIs. "[gap]" marks a code the guide leaves unmapped: ours is the checklist's
recommendation (shared/fhir-mapping.md)."""

from __future__ import annotations

from functools import lru_cache

from engine.fhir.bundle import slug

V2 = "http://terminology.hl7.org/CodeSystem/v2-"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
V3_MARITAL = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
V3_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_ROLE_CODE = "http://terminology.hl7.org/CodeSystem/v3-RoleCode"
UCUM = "http://unitsofmeasure.org"

# HL7 table 0396 names (and common variants) -> code system URIs.
SYSTEMS = {
    "LN": "http://loinc.org",
    "LOINC": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "SNOMED": "http://snomed.info/sct",
    "SNOMEDCT": "http://snomed.info/sct",
    "UCUM": UCUM,
    "I10": "http://hl7.org/fhir/sid/icd-10",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "ICD10CM": "http://hl7.org/fhir/sid/icd-10-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://hl7.org/fhir/sid/mvx",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "C4": "http://www.ama-assn.org/go/cpt",
    "ISO639": "urn:ietf:bcp:47",
    "CDCREC": "urn:oid:2.16.840.1.113883.6.238",
}


@lru_cache(maxsize=1024)
def system_uri(name: str, local_uri: str | None = None) -> str | None:
    """URI for a coding-system name: table 0396, HL7nnnn tables, URIs and OIDs as they are;
    an unknown (local) name gets ``local_uri/<name>`` [gap: the code is never dropped]."""
    if not name:
        return None
    up = name.upper()
    if up in SYSTEMS:
        return SYSTEMS[up]
    if up.startswith("HL7") and up[3:].isdigit() and len(up) >= 7:
        return V2 + up[3:]
    if "://" in name or name.startswith("urn:"):
        return name
    if all(p.isdigit() for p in name.split(".")) and name.count(".") >= 2:
        return f"urn:oid:{name}"
    if local_uri:
        return f"{local_uri.rstrip('/')}/{slug(name)}"  # no escapes: it may go into a search
    return None


# 0001 administrative sex -> AdministrativeGender
GENDER = {"F": "female", "M": "male", "O": "other", "A": "other", "N": "other", "U": "unknown"}

# 0004 patient class -> Encounter.class (v3 ActCode; other codes kept in v2-0004)
ENCOUNTER_CLASS = {
    "E": (V3_ACT_CODE, "EMER", "emergency"),
    "I": (V3_ACT_CODE, "IMP", "inpatient encounter"),
    "O": (V3_ACT_CODE, "AMB", "ambulatory"),
    "P": (V3_ACT_CODE, "PRENC", "pre-admission"),
}

# 0078 abnormal flags -> v3 ObservationInterpretation (the same codes)
INTERPRETATION = {c: c for c in (
    "L", "H", "LL", "HH", "<", ">", "N", "A", "AA", "U", "D", "B", "W", "S", "R", "I", "MS", "VS",
    "IND", "E", "EX", "HX", "LX", "NEG", "POS", "DET", "ND", "RR", "QCF", "TOX", "WR", "SYN-R",
    "SYN-S", "NR", "CAR", "IE", "HU", "LU",
)}  # fmt: skip

# 0085 observation result status -> Observation.status
OBSERVATION_STATUS = {
    "F": "final", "P": "preliminary", "C": "corrected", "A": "amended", "D": "entered-in-error",
    "W": "entered-in-error", "X": "cancelled",
    # [gap] the guide leaves these unmapped; status is 1..1
    "I": "registered", "O": "registered", "R": "preliminary", "S": "preliminary", "U": "final",
    "N": "unknown", "B": "unknown", "V": "unknown",
}  # fmt: skip

# 0123 result status -> DiagnosticReport.status
REPORT_STATUS = {
    "O": "registered", "I": "registered", "S": "registered", "P": "preliminary", "R": "partial",
    "C": "corrected", "F": "final", "X": "cancelled",
    # [gap]
    "A": "partial", "N": "unknown", "M": "partial", "Y": "unknown", "Z": "unknown",
}  # fmt: skip

# 0119 order control (ORC-1) -> ServiceRequest.status when ORC-5 is empty: the guide's
# OrderControlCode[ServiceRequest.status] map, row by row. CA (cancel *request*) and HD (hold
# *request*) are requests about an order that is still active: "active", not revoked/on-hold.
# Codes the map leaves empty (RE, SC, XO, SN, RP...) are not here: the caller falls back.
ORDER_CONTROL_STATUS = {
    "AF": "active", "CA": "active", "CR": "revoked", "DC": "revoked", "DF": "revoked",
    "DR": "revoked", "FU": "completed", "HD": "active", "HR": "on-hold", "NW": "active",
    "OC": "revoked", "OD": "revoked", "OH": "on-hold", "OK": "active", "PR": "active",
    "PY": "active", "RL": "active", "RO": "active", "RQ": "active",
}  # fmt: skip

# 0038 order status (ORC-5) -> ServiceRequest.status: the guide's OrderStatus map
ORDER_STATUS = {
    "CA": "revoked", "CM": "completed", "DC": "revoked", "ER": "entered-in-error",
    "HD": "on-hold", "IP": "active", "RP": "revoked", "SC": "active",
}  # fmt: skip

# 0063 relationship -> the guide's Relationship map (v3-RoleCode, or v2-0063 / v2-0131)
_RC, _63, _131 = V3_ROLE_CODE, V2 + "0063", V2 + "0131"
RELATIONSHIP = {
    "SEL": (_RC, "ONESELF", "self"), "SPO": (_RC, "SPS", "spouse"),
    "DOM": (_RC, "SIGOTHR", "significant other"), "CHD": (_RC, "CHILD", "child"),
    "GCH": (_RC, "GRNDCHILD", "grandchild"), "NCH": (_RC, "NCHILD", "natural child"),
    "SCH": (_RC, "STPCHLD", "step child"), "FCH": (_RC, "CHLDFOST", "foster child"),
    "DEP": (_63, "DEP", "Handicapped dependent"), "WRD": (_63, "WRD", "Ward of court"),
    "PAR": (_RC, "PRN", "parent"), "MTH": (_RC, "MTH", "mother"), "FTH": (_RC, "FTH", "father"),
    "CGV": (_63, "CGV", "Care giver"), "GRD": (_63, "GRD", "Guardian"),
    "GRP": (_RC, "GRPRN", "grandparent"), "EXF": (_RC, "EXT", "extended family member"),
    "SIB": (_RC, "SIB", "sibling"), "BRO": (_RC, "BRO", "brother"), "SIS": (_RC, "SIS", "sister"),
    "FND": (_RC, "FRND", "unrelated friend"), "OAD": (_63, "OAD", "Other adult"),
    "EME": (_63, "EME", "Employee"), "EMR": (_131, "E", "Employer"),
    "ASC": (_63, "ASC", "Associate"), "EMC": (_131, "C", "Emergency Contact"),
    "OWN": (_63, "OWN", "Owner"), "TRA": (_63, "TRA", "Trainer"), "MGR": (_63, "MGR", "Manager"),
    "NON": (_63, "NON", "None"), "UNK": (_131, "U", "Unknown"), "OTH": (_131, "O", "Other"),
}  # fmt: skip

# 0131 contact role (NK1-7): the guide's ContactRole map (the table's own codes)
CONTACT_ROLE = {"E": "Employer", "C": "Emergency Contact", "F": "Federal Agency",
                "I": "Insurance Company", "N": "Next-of-Kin", "S": "State Agency",
                "O": "Other", "U": "Unknown"}  # fmt: skip

# 0278 filler status (SCH-25, AIx-12) -> Appointment.status: FillerStatusCodes[Appointment]
APPOINTMENT_STATUS = {
    "PENDING": "pending", "WAITLIST": "waitlist", "BOOKED": "booked", "STARTED": "checked-in",
    "COMPLETE": "fulfilled", "CANCELLED": "cancelled", "DELETED": "entered-in-error",
    "NOSHOW": "noshow",
}  # fmt: skip

# 0322 completion status (RXA-20) -> Immunization.status: the guide's CompletionStatus map
COMPLETION_STATUS = {"CP": "completed", "RE": "not-done", "NA": "not-done", "PA": "completed"}

# 0200 name type -> HumanName.use
NAME_USE = {"L": "official", "D": "usual", "M": "maiden", "N": "nickname", "R": "official",
            "BAD": "old", "TEMP": "temp", "NAV": "temp", "A": "anonymous",
            "S": "anonymous"}  # fmt: skip

# 0190 address type -> Address.use / type
ADDRESS_USE = {"H": "home", "B": "work", "O": "work", "C": "temp", "BA": "old", "BI": "billing"}
ADDRESS_TYPE = {"M": "postal", "SH": "postal"}

# 0201 telecom use / 0202 equipment type
TELECOM_USE = {"PRN": "home", "WPN": "work", "PRS": "mobile", "VHN": "home", "ASN": "home",
               "EMR": "home", "ORN": "home", "NET": "home", "BPN": "work"}  # fmt: skip
TELECOM_SYSTEM = {"PH": "phone", "FX": "fax", "BP": "pager", "CP": "phone", "Internet": "email",
                  "X.400": "email", "MD": "other", "TDD": "other", "TTY": "other"}  # fmt: skip

# 0002 marital status -> v3 MaritalStatus
MARITAL = {"A": "A", "D": "D", "M": "M", "S": "S", "W": "W", "C": "C", "P": "T", "E": "L",
           "I": "I", "N": "A", "G": "T", "O": "UNK", "R": "T", "B": "U", "T": "T",
           "U": "UNK"}  # fmt: skip

# AL1-2 allergen type -> AllergyIntolerance.category; AL1-4 severity -> criticality
ALLERGY_CATEGORY = {"DA": "medication", "MA": "medication", "FA": "food", "EA": "environment",
                    "LA": "environment", "PA": "environment", "AA": "biologic",
                    "MC": "medication"}  # fmt: skip
ALLERGY_CRITICALITY = {"SV": "high", "MO": "low", "MI": "low", "U": "unable-to-assess"}
