"""IN1 -> Coverage (+ payor Organization, subscriber RelatedPerson): the guide's IN1[Coverage]
map, for ADT, ORM, OML and any message carrying IN1. Choices where the guide is silent are
marked [ours]."""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import derived, identifier_query
from engine.fhir.datatypes import V2, compact, cwe, cx, dtm, period, xad, xpn_names, xtn
from engine.fhir.people import add_organization, ref
from engine.fhir.related import relationship
from engine.fhir.segments import Seg, segs

SUBSCRIBER_RELATIONSHIP = "http://terminology.hl7.org/CodeSystem/subscriber-relationship"
# 0063 -> Coverage.relationship (subscriber-relationship) [ours: the guide's Relationship map
# gives v3-RoleCode, which is not the element's binding; both are kept]
SUBSCRIBER = {
    "SEL": "self", "SPO": "spouse", "DOM": "common", "CHD": "child", "NCH": "child",
    "SCH": "child", "FCH": "child", "PAR": "parent", "MTH": "parent", "FTH": "parent",
}  # fmt: skip


def _subscriber_relationship(f: V2, opts) -> tuple[dict | None, bool]:
    """IN1-17 -> Coverage.relationship and whether the insured is the patient ("SEL", or a
    local code shown as "SELF")."""
    if not f:
        return None, False
    code = f.c(1).upper()
    is_self = code == "SEL" or f.c(2).upper() == "SELF"
    cc = relationship(f, opts) or {}
    mapped = SUBSCRIBER.get("SEL" if is_self else code)
    if mapped:
        cc.setdefault("coding", []).insert(0, {"system": SUBSCRIBER_RELATIONSHIP, "code": mapped})
    return cc or None, is_self


def _payor(bundle, in1: Seg, opts) -> dict:
    """IN1-4 name with IN1-5 address and IN1-7 phone -> Organization, identified by IN1-3
    (CX) [ours: the guide leaves IN1-3 unmapped]. Payor is 1..*: without a name or an id, a
    display-only reference [ours]."""
    tz = opts.timezone
    org = add_organization(
        bundle, opts, cx(in1.f(3), opts, tz), in1.f(4).c(1),
        address=[a for a in (xad(f, tz) for f in in1.reps(5)) if a],
        telecom=[t for t in (xtn(f, "work", tz) for f in in1.reps(7)) if t],
    )  # fmt: skip
    return org or {"display": "unknown payor"}


def add_coverages(bundle, msg, opts, patient_ref: str | None) -> None:
    """Each IN1 -> Coverage keyed on the patient and the plan (IN1-2, else the company IN1-3,
    else the set ID) [ours: a plan id is shared by many patients, so it is no key alone]."""
    if not patient_ref or not opts.emits("Coverage"):
        return
    tz = opts.timezone
    for n, in1 in enumerate(segs(msg, "IN1"), 1):
        plan = in1.f(2)
        plan_id = compact({  # CWE[Identifier]: the code in its coding system
            "value": plan.c(1),
            "system": vocab.system_uri(plan.c(3), opts.local_system) if plan.c(3) else None,
        })  # fmt: skip
        rel, is_self = _subscriber_relationship(in1.f(17), opts)
        subscriber = ref(patient_ref) if is_self else None
        insured = in1.reps(16)
        if not is_self and insured and opts.emits("RelatedPerson"):
            person_id = derived(opts, "subscriber", bundle.subject_key, f"IN1-{n}")
            person = compact({
                "resourceType": "RelatedPerson",
                "identifier": [person_id],
                "patient": ref(patient_ref),
                "relationship": [r for r in [relationship(in1.f(17), opts)] if r],
                "name": xpn_names(insured, tz),
                "birthDate": dtm(in1.f(18).c(1), tz, date_only=True),
                "address": [a for a in (xad(f, tz) for f in in1.reps(19)) if a],
            })  # fmt: skip
            subscriber = ref(bundle.add(person, f"IN1|{n}", identifier_query(person_id)))
        group_id = cx(in1.f(10), opts, tz)  # IN1-10: SN -> subscriberId, else the employer's
        is_sn = bool(group_id) and in1.f(10).c(5).upper() == "SN"
        # IN1-10/-11 the insured's group employer -> policyHolder
        holder = add_organization(bundle, opts, None if is_sn else group_id, in1.f(11).c(1))
        subscriber_id = (cx(in1.f(49), opts, tz) or (group_id if is_sn else None) or {}).get(
            "value"
        )
        key = derived(opts, "coverage", bundle.subject_key,
                      plan.c(1) or in1.f(3).c(1) or in1.f(4).c(1) or f"IN1-{n}")  # fmt: skip
        coverage = compact({
            "resourceType": "Coverage",
            "identifier": [key] + ([plan_id] if plan_id.get("value") else []),
            "status": "active",
            "type": cwe(in1.f(15), opts, vocab.V2 + "0086"),
            "policyHolder": holder,
            "subscriber": subscriber,
            "subscriberId": subscriber_id,
            "beneficiary": ref(patient_ref),
            "relationship": rel,
            "period": period(in1.f(12).c(1), in1.f(13).c(1), tz),
            "payor": [_payor(bundle, in1, opts)],
        })  # fmt: skip
        bundle.add(coverage, f"IN1|{n}|{key['value']}", identifier_query(key))


__all__ = ["add_coverages"]
