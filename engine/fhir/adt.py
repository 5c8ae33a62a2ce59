"""ADT segments beyond PID/PV1: NK1 -> RelatedPerson, AL1 -> AllergyIntolerance,
DG1 -> Condition (+ Encounter.diagnosis), IN1 -> Coverage (+ payor Organization).

The Patient and Encounter come from engine.fhir.patient (the Encounter status of A03, A11
and A13 is set there). OBX segments are mapped elsewhere. Choices where the guide is silent
are marked "[ours]".
"""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, search_for
from engine.fhir.datatypes import V2, coded, compact, cwe, cx, dtm, period, xad, xpn, xtn
from engine.fhir.options import ConvertOptions
from engine.fhir.patient import add_practitioner, adt_event, concept, field, fields, ref
from engine.hl7.message import Message

# Events with the ADT_A01 segment structure (NK1/AL1/DG1/IN1 mean the same in each).
EVENTS = frozenset({"A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A13",
                    "A28", "A31"})  # fmt: skip

ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"

# 0063 relationship -> v3 RoleCode, only where the meaning is the same
ROLE_CODE = {
    "BRO": ("BRO", "brother"), "SIS": ("SIS", "sister"), "SIB": ("SIB", "sibling"),
    "MTH": ("MTH", "mother"), "FTH": ("FTH", "father"), "PAR": ("PRN", "parent"),
    "CHD": ("CHILD", "child"), "NCH": ("NCHILD", "natural child"),
    "SCH": ("STPCHLD", "step child"), "FCH": ("CHLDFOST", "foster child"),
    "GCH": ("GRNDCHILD", "grandchild"), "GRP": ("GRPRN", "grandparent"),
    "SPO": ("SPS", "spouse"), "DOM": ("DOMPART", "domestic partner"), "FND": ("FRND", "friend"),
    "GRD": ("GUARD", "guardian"), "EXF": ("EXT", "extended family member"),
    "SEL": ("ONESELF", "self"),
}  # fmt: skip
# 0063 -> Coverage.relationship (subscriber-relationship)
SUBSCRIBER = {
    "SEL": "self", "SPO": "spouse", "DOM": "common", "CHD": "child", "NCH": "child",
    "SCH": "child", "FCH": "child", "PAR": "parent", "MTH": "parent", "FTH": "parent",
}  # fmt: skip
# DG1-6 diagnosis type -> Condition.verificationStatus / Encounter.diagnosis.use [ours]
DIAGNOSIS_VERIFICATION = {"A": "provisional", "W": "provisional", "F": "confirmed"}
DIAGNOSIS_USE = {"A": ("AD", "Admission diagnosis")}


def convert_adt(
    bundle: TransactionBundle,
    msg: Message,
    opts: ConvertOptions,
    patient_ref: str | None,
    encounter_ref: str | None,
) -> None:
    """Add the NK1, AL1, DG1 and IN1 resources of an ADT message (events in EVENTS; others
    are left alone). Resources that need the patient (all of these) are skipped without one."""
    if adt_event(msg) not in EVENTS or not patient_ref:
        return
    if opts.emits("RelatedPerson"):
        for n in range(1, len(msg.segment_indexes("NK1")) + 1):
            _related_person(bundle, msg, opts, n, patient_ref)
    if opts.emits("AllergyIntolerance"):
        for n in range(1, len(msg.segment_indexes("AL1")) + 1):
            _allergy(bundle, msg, opts, n, patient_ref, encounter_ref)
    if opts.emits("Condition"):
        for n in range(1, len(msg.segment_indexes("DG1")) + 1):
            _condition(bundle, msg, opts, n, patient_ref, encounter_ref)
    if opts.emits("Coverage"):
        for n in range(1, len(msg.segment_indexes("IN1")) + 1):
            _coverage(bundle, msg, opts, n, patient_ref)


def _relationship(f: V2, opts: ConvertOptions) -> dict | None:
    """0063 -> v3-RoleCode where the meaning is the same, keeping the v2 code."""
    cc = concept(f, opts, vocab.V2 + "0063")
    if not cc:
        return None
    code, table = f.c(1).upper(), f.c(3).upper()
    if code in ROLE_CODE and table in ("", "HL70063"):
        role, display = ROLE_CODE[code]
        role_coding = {"system": vocab.V3_ROLE_CODE, "code": role, "display": display}
        cc.setdefault("coding", []).insert(0, role_coding)
    return cc


def _related_person(bundle, msg, opts, n: int, patient_ref: str) -> None:
    seg = f"NK1[{n}]"
    names = [xpn(f, opts.timezone) for f in fields(msg, f"{seg}-2[*]")]
    relationships = [_relationship(f, opts) for f in fields(msg, f"{seg}-3[*]")]
    relationships += [concept(f, opts, vocab.V2 + "0131") for f in fields(msg, f"{seg}-7[*]")]
    telecom = [xtn(f, "home") for f in fields(msg, f"{seg}-5[*]")]
    telecom += [xtn(f, "work") for f in fields(msg, f"{seg}-6[*]")]
    person = compact({
        "resourceType": "RelatedPerson",
        "patient": ref(patient_ref),
        "relationship": [r for r in relationships if r],
        "name": [x for x in names if x],
        "telecom": [t for t in telecom if t],
        "gender": vocab.GENDER.get(field(msg, f"{seg}-15").c(1).upper()),
        "birthDate": dtm(field(msg, f"{seg}-16").c(1), opts.timezone, date_only=True),
        "address": [a for a in (xad(f) for f in fields(msg, f"{seg}-4[*]")) if a],
    })  # fmt: skip
    if set(person) - {"resourceType", "patient"}:
        bundle.add(person, key=f"NK1|{n}")


def _allergy(bundle, msg, opts, n: int, patient_ref: str, encounter_ref: str | None) -> None:
    seg = f"AL1[{n}]"
    kind = field(msg, f"{seg}-2").c(1).upper()
    category = vocab.ALLERGY_CATEGORY.get(kind)
    reactions = [  # ST (v2.3-2.8); a coded value from some senders
        (cwe(f, opts) if f.enc[0] in f.raw else None) or {"text": f.text}
        for f in fields(msg, f"{seg}-5[*]")
    ]
    code = cwe(field(msg, f"{seg}-3"), opts)
    if not code:
        return
    allergy = compact({
        "resourceType": "AllergyIntolerance",
        "clinicalStatus": coded(ALLERGY_CLINICAL, "active", "Active"),
        # [ours] AL1 says nothing about how certain the allergy is: "unconfirmed"
        "verificationStatus": coded(ALLERGY_VERIFICATION, "unconfirmed", "Unconfirmed"),
        "type": "allergy" if category and kind.endswith("A") else None,
        "category": [category] if category else [],
        "criticality": vocab.ALLERGY_CRITICALITY.get(field(msg, f"{seg}-4").c(1).upper()),
        "code": code,
        "patient": ref(patient_ref),
        "encounter": ref(encounter_ref),
        "onsetDateTime": dtm(field(msg, f"{seg}-6").c(1), opts.timezone),
        "reaction": [{"manifestation": reactions}] if reactions else [],
    })  # fmt: skip
    bundle.add(allergy, key=f"AL1|{n}")


def _ei_identifier(f: V2, opts: ConvertOptions) -> dict | None:
    """EI -> Identifier: .1 value; the system from .2-.4 as a CX.4 would give it."""
    if not f.c(1):
        return None
    parts = f.raw.split(f.enc[0])
    authority = f.enc[3].join(parts[1:4]) if len(parts) > 1 else ""
    return cx(V2(f"{parts[0]}{f.enc[0] * 3}{authority}", f.sep, f.enc), opts)


def _condition(bundle, msg, opts, n: int, patient_ref: str, encounter_ref: str | None) -> None:
    seg = f"DG1[{n}]"
    tz = opts.timezone
    dg3 = field(msg, f"{seg}-3")
    method = field(msg, f"{seg}-2").c(1)  # DG1-2 coding method (before v2.5)
    code = cwe(dg3, opts, vocab.system_uri(method, opts.local_system) if method else None)
    text = field(msg, f"{seg}-4").text
    if text:
        code = code or {}
        code.setdefault("text", text)
    if not code:
        return
    dtype = field(msg, f"{seg}-6").c(1).upper()
    verification = DIAGNOSIS_VERIFICATION.get(dtype)
    identifier = _ei_identifier(field(msg, f"{seg}-20"), opts)
    asserter = add_practitioner(bundle, field(msg, f"{seg}-16"), opts)
    condition = compact({
        "resourceType": "Condition",
        "identifier": [identifier] if identifier else [],
        "clinicalStatus": coded(CONDITION_CLINICAL, "active", "Active"),
        "verificationStatus": coded(CONDITION_VERIFICATION, verification) if verification
        else None,
        "category": [coded(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
        "code": code,
        "subject": ref(patient_ref),
        "encounter": ref(encounter_ref),
        "onsetDateTime": dtm(field(msg, f"{seg}-5").c(1), tz),
        "recordedDate": dtm(field(msg, f"{seg}-19").c(1), tz),
        "asserter": asserter,
    })  # fmt: skip
    search = search_for(identifier) if identifier and identifier.get("system") else None
    url = bundle.add(condition, key=f"DG1|{n}", search=search)
    if encounter_ref:
        _add_diagnosis(bundle, encounter_ref, url, dtype, field(msg, f"{seg}-15").c(1))


def _add_diagnosis(bundle, encounter_ref: str, condition_ref: str, dtype: str, rank: str):
    for entry in bundle.entries:
        if entry["fullUrl"] == encounter_ref:
            use = DIAGNOSIS_USE.get(dtype)
            diagnosis = compact({
                "condition": {"reference": condition_ref},
                "use": coded(DIAGNOSIS_ROLE, *use) if use else None,
                "rank": int(rank) if rank.isdigit() and int(rank) > 0 else None,
            })  # fmt: skip
            entry["resource"].setdefault("diagnosis", []).append(diagnosis)
            return


def _payor(bundle, msg, opts, seg: str) -> dict:
    """IN1-4 (name) / IN1-3 (identifier) -> Organization; conditional create on an
    identifier with a system, else a plain create. Payor is 1..* in Coverage: without either, a
    display-only reference [ours]."""
    name = field(msg, f"{seg}-4").c(1)
    identifier = cx(field(msg, f"{seg}-3"), opts, opts.timezone)
    if not name and not identifier:
        return {"display": "unknown payor"}
    if not opts.emits("Organization"):
        return compact({"identifier": identifier, "display": name})
    org = compact({
        "resourceType": "Organization",
        "identifier": [identifier] if identifier else [],
        "name": name,
        "address": [a for a in (xad(f) for f in fields(msg, f"{seg}-5[*]")) if a],
        "telecom": [t for t in (xtn(f, "work") for f in fields(msg, f"{seg}-7[*]")) if t],
    })  # fmt: skip
    if identifier and identifier.get("system"):  # a bare value could match another issuer's
        key = f"{identifier['system']}|{identifier['value']}"
        url = bundle.add(org, key=key, search=search_for(identifier), method="POST")
    else:
        bare = identifier["value"] if identifier else ""
        url = bundle.add(org, key=f"name|{name}|{bare}")
    return compact({"reference": url, "display": name})


def _subscriber_relationship(f: V2, opts: ConvertOptions) -> tuple[dict | None, bool]:
    """IN1-17 -> Coverage.relationship (subscriber-relationship, the v2 code kept) and
    whether the insured is the patient ("SEL", or a local code shown as "SELF")."""
    if not f:
        return None, False
    code = f.c(1).upper()
    is_self = code == "SEL" or f.c(2).upper() == "SELF"
    cc = concept(f, opts, vocab.V2 + "0063")
    mapped = SUBSCRIBER.get("SEL" if is_self else code)
    if cc and mapped:
        cc.setdefault("coding", []).insert(0, {"system": SUBSCRIBER_RELATIONSHIP, "code": mapped})
    return cc, is_self


def _coverage(bundle, msg, opts, n: int, patient_ref: str) -> None:
    seg = f"IN1[{n}]"
    plan = field(msg, f"{seg}-2")
    plan_id = compact({
        "value": plan.c(1),
        "system": vocab.system_uri(plan.c(3), opts.local_system) if plan.c(3) else None,
    })  # fmt: skip
    relationship, is_self = _subscriber_relationship(field(msg, f"{seg}-17"), opts)
    subscriber = ref(patient_ref) if is_self else None
    insured = fields(msg, f"{seg}-16[*]")
    if not is_self and insured and opts.emits("RelatedPerson"):
        person = compact({
            "resourceType": "RelatedPerson",
            "patient": ref(patient_ref),
            "relationship": [r for r in [_relationship(field(msg, f"{seg}-17"), opts)] if r],
            "name": [x for x in (xpn(f, opts.timezone) for f in insured) if x],
            "address": [a for a in (xad(f) for f in fields(msg, f"{seg}-19[*]")) if a],
        })  # fmt: skip
        subscriber = ref(bundle.add(person, key=f"IN1|{n}"))
    coverage = compact({
        "resourceType": "Coverage",
        "identifier": [plan_id] if plan_id.get("value") else [],
        "status": "active",
        "type": cwe(field(msg, f"{seg}-15"), opts, vocab.V2 + "0086"),
        "subscriber": subscriber,
        "subscriberId": field(msg, f"{seg}-49").c(1),
        "beneficiary": ref(patient_ref),
        "relationship": relationship,
        "period": period(field(msg, f"{seg}-12").c(1), field(msg, f"{seg}-13").c(1),
                         opts.timezone),
        "payor": [_payor(bundle, msg, opts, seg)],
    })  # fmt: skip
    bundle.add(coverage, key=f"IN1|{n}")
