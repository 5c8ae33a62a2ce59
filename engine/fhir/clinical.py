"""AL1 -> AllergyIntolerance, DG1 -> Condition (+ Encounter.diagnosis), PR1 -> Procedure:
the guide's AL1[AllergyIntolerance], DG1[Condition], DG1[Encounter] and PR1[Procedure] maps,
for ADT, ORM and OML (and any message carrying them).

None of these segments always carries an identifier, so each is keyed on its own (DG1-20,
PR1-19) or on one derived from the patient and what the segment is about (the allergen, the
diagnosis code, the procedure code and time) [ours]: a later message about the same allergy
updates it instead of adding a second one."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.fhir import vocab
from engine.fhir.bundle import derived, identifier_query
from engine.fhir.datatypes import coded, compact, cwe, dtm, ei
from engine.fhir.people import add_location, add_practitioner, ref
from engine.fhir.segments import segs

ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
ALTERNATE_CODES = "http://hl7.org/fhir/StructureDefinition/alternate-codes"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
ASSERTED_DATE = "http://hl7.org/fhir/StructureDefinition/condition-assertedDate"
DIAGNOSIS_ROLE = "http://terminology.hl7.org/CodeSystem/diagnosis-role"
SNOMED = "http://snomed.info/sct"
# DG1-6 diagnosis type -> Condition.verificationStatus / Encounter.diagnosis.use [ours]
DIAGNOSIS_VERIFICATION = {"A": "provisional", "W": "provisional", "F": "confirmed"}
DIAGNOSIS_USE = {"A": ("AD", "Admission diagnosis")}
# PR1-8/-11/-12 -> performer (function per the PR1[Procedure] rows)
PROCEDURE_PERFORMERS = ((8, "88189002", "Anesthesiologist"), (11, "304292004", "Surgeon"),
                        (12, None, None))  # fmt: skip


def _code_key(concept: dict | None) -> str:
    coding = ((concept or {}).get("coding") or [{}])[0]
    return coding.get("code") or (concept or {}).get("text", "")


# AllergyIntolerance --------------------------------------------------------------------------
def add_allergies(bundle, msg, opts, patient_ref: str, encounter_ref: str | None) -> None:
    if not opts.emits("AllergyIntolerance"):
        return
    tz = opts.timezone
    for al1 in segs(msg, "AL1"):
        code = cwe(al1.f(3), opts)
        if not code:
            continue
        kind = al1.f(2)
        category = vocab.ALLERGY_CATEGORY.get(kind.c(1).upper())
        severity = al1.f(4)
        reactions = [  # ST (v2.3-2.8); a coded value from some senders
            (cwe(f, opts) if f.enc[0] in f.raw else None) or {"text": f.text} for f in al1.reps(5)
        ]
        identifier = derived(opts, "allergy", bundle.subject_key, _code_key(code))
        allergy = compact({
            "resourceType": "AllergyIntolerance",
            "identifier": [identifier],
            "clinicalStatus": coded(ALLERGY_CLINICAL, "active", "Active"),
            # [ours] AL1 says nothing about how certain the allergy is: "unconfirmed"
            "verificationStatus": coded(ALLERGY_VERIFICATION, "unconfirmed", "Unconfirmed"),
            "type": "allergy" if category and kind.c(1).upper().endswith("A") else None,
            "category": [category] if category else [],
            # AL1-2 row 2: the original allergen type as an alternate code
            "_category": [{"extension": [{"url": ALTERNATE_CODES, "valueCodeableConcept":
                          cwe(kind, opts, vocab.V2 + "0127")}]}] if category else [],
            "criticality": vocab.ALLERGY_CRITICALITY.get(severity.c(1).upper()),
            "_criticality": {"extension": [{"url": ALTERNATE_CODES, "valueCodeableConcept":
                             cwe(severity, opts, vocab.V2 + "0128")}]} if severity else None,
            "code": code,
            "patient": ref(patient_ref),
            "encounter": ref(encounter_ref),
            "onsetDateTime": dtm(al1.f(6).c(1), tz),
            "reaction": [{"manifestation": reactions}] if reactions else [],
        })  # fmt: skip
        bundle.add(allergy, f"AL1|{identifier['value']}", identifier_query(identifier))


# Condition ------------------------------------------------------------------------------------
def add_conditions(bundle, msg, opts, patient_ref: str, encounter_ref: str | None
                   ) -> list[tuple[int, str]]:  # fmt: skip
    """Each DG1 -> Condition (and an Encounter.diagnosis); returns (DG1 position, reference)
    for each."""
    if not opts.emits("Condition"):
        return []
    tz = opts.timezone
    out = []
    for n, dg1 in enumerate(segs(msg, "DG1"), 1):
        method = dg1.f(2).c(1)  # DG1-2 coding method (before v2.5)
        code = cwe(dg1.f(3), opts, vocab.system_uri(method, opts.local_system) if method else None)
        text = dg1.f(4).text
        if text:
            code = code or {}
            code.setdefault("text", text)
        if not code:
            continue
        dtype = dg1.code(6)
        verification = DIAGNOSIS_VERIFICATION.get(dtype)
        if dg1.code(21) == "D":  # DG1-21 action code D: entered-in-error
            verification = "entered-in-error"
        identifier = ei(dg1.f(20), opts) or derived(
            opts, "condition", bundle.subject_key, _code_key(code)
        )
        recorded = dtm(dg1.f(19).c(1), tz)
        condition = compact({
            "resourceType": "Condition",
            "identifier": [identifier],
            "extension": [{"url": ASSERTED_DATE, "valueDateTime": recorded}] if recorded else [],
            "clinicalStatus": coded(CONDITION_CLINICAL, "active", "Active")
            if verification != "entered-in-error" else None,
            "verificationStatus": coded(CONDITION_VERIFICATION, verification) if verification
            else None,
            "category": [coded(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
            "code": code,
            "subject": ref(patient_ref),
            "encounter": ref(encounter_ref),
            "onsetDateTime": dtm(dg1.f(5).c(1), tz),
            "recordedDate": recorded,
            "asserter": add_practitioner(bundle, dg1.f(16), opts),
        })  # fmt: skip
        url = bundle.add(condition, f"DG1|{n}|{identifier['value']}", identifier_query(identifier))
        out.append((dg1.pos, url))
        if encounter_ref:
            _add_diagnosis(bundle, encounter_ref, url, dtype, dg1.f(15).c(1))
    return out


def _add_diagnosis(bundle, encounter_ref: str, condition_ref: str, dtype: str, rank: str):
    entry = bundle.entry(encounter_ref)
    if entry is None:
        return
    use = DIAGNOSIS_USE.get(dtype)
    diagnosis = compact({
        "condition": {"reference": condition_ref},
        "use": coded(DIAGNOSIS_ROLE, *use) if use else None,
        "rank": int(rank) if rank.isdigit() and int(rank) > 0 else None,
    })  # fmt: skip
    entry["resource"].setdefault("diagnosis", []).append(diagnosis)


# Procedure ------------------------------------------------------------------------------------
def _performed(pr1, tz) -> dict:
    """PR1-5 performedDateTime, or performedPeriod start + PR1-7 minutes when PR1-5 has a
    time to the minute (the PR1-5/PR1-7 rows)."""
    start = pr1.f(5).c(1)
    minutes = pr1.f(7).c(1)
    when = dtm(start, tz)
    if not when:
        return {}
    if minutes.isdigit() and len(start) >= 12 and "T" in when:
        begin = datetime.fromisoformat(when)
        end = (begin + timedelta(minutes=int(minutes))).isoformat()
        return {"performedPeriod": {"start": when, "end": end}}
    return {"performedDateTime": when}


def add_procedures(bundle, msg, opts, patient_ref: str, encounter_ref: str | None) -> None:
    """PR1[Procedure]: -3 code (with -16 modifiers joined by ":"), -4 text, -5/-7 performed,
    -6 category, -8/-11/-12 performers, -15 reason, -19 identifier, -23 location, -25 partOf;
    status "unknown" (the guide: the message context decides, else unknown)."""
    if not opts.emits("Procedure"):
        return
    tz = opts.timezone
    for n, pr1 in enumerate(segs(msg, "PR1"), 1):
        code = cwe(pr1.f(3), opts) or {}
        modifiers = [f.c(1) for f in pr1.reps(16) if f.c(1)]
        if modifiers and code.get("coding"):
            first = code["coding"][0]
            first["code"] = ":".join([first["code"], *modifiers])
        if pr1.f(4).text and not pr1.f(3).c(9):
            code["text"] = pr1.f(4).text
        if not code:
            continue
        performers = []
        for field_no, function, text in PROCEDURE_PERFORMERS:
            for f in pr1.reps(field_no):
                actor = add_practitioner(bundle, f, opts)
                if actor:
                    performers.append(
                        compact(
                            {
                                "function": coded(SNOMED, function, text) if function else None,
                                "actor": actor,
                            }
                        )
                    )
        identifier = ei(pr1.f(19), opts) or derived(
            opts, "procedure", bundle.subject_key, _code_key(code), pr1.f(5).c(1)
        )
        parent = ei(pr1.f(25), opts)
        procedure = compact({
            "resourceType": "Procedure",
            "identifier": [identifier],
            "status": "unknown",
            "category": cwe(pr1.f(6), opts, vocab.V2 + "0230"),
            "code": code,
            "subject": ref(patient_ref),
            "encounter": ref(encounter_ref),
            **_performed(pr1, tz),
            "performer": performers,
            "location": add_location(bundle, pr1.f(23), opts),
            "reasonCode": [c] if (c := cwe(pr1.f(15), opts)) else [],
            "partOf": [{"identifier": parent}] if parent else [],
        })  # fmt: skip
        bundle.add(procedure, f"PR1|{n}|{identifier['value']}", identifier_query(identifier))


def add_clinical(bundle, msg, opts, patient_ref, encounter_ref) -> None:
    """AL1, DG1 and PR1 of the message."""
    if not patient_ref:
        return
    add_allergies(bundle, msg, opts, patient_ref, encounter_ref)
    add_conditions(bundle, msg, opts, patient_ref, encounter_ref)
    add_procedures(bundle, msg, opts, patient_ref, encounter_ref)


__all__ = ["add_allergies", "add_clinical", "add_conditions", "add_procedures"]
