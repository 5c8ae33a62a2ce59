"""PV1 + PV2 (+ ROL after PV1) -> Encounter: the guide's PV1[Encounter], PV2[Encounter] and
ROL[Encounter-PractitionerRole] maps. Choices where the guide is silent are marked [ours]."""

from __future__ import annotations

from html import escape

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, derived, identifier_query
from engine.fhir.datatypes import V2, coded, compact, cwe, cx, dtm, period
from engine.fhir.options import ConvertOptions
from engine.fhir.patient import adt_event
from engine.fhir.people import add_location, add_practitioner, ref
from engine.fhir.segments import Seg, following
from engine.hl7.message import Message

V3_NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
V3_CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
R5 = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Encounter."
MODE_OF_ARRIVAL = "http://hl7.org/fhir/StructureDefinition/encounter-modeOfArrival"
STATUS_BY_EVENT = {"A03": "finished", "A11": "cancelled", "A13": "in-progress"}
# PV1-7/8/9/17/52, PV2-13 -> participant type (v3-ParticipationType), per the PV1/PV2 rows
PARTICIPANTS = (("PV1", 7, "ATND", "attender"), ("PV1", 8, "REF", "referrer"),
                ("PV1", 9, "CON", "consultant"), ("PV1", 17, "ADM", "admitter"),
                ("PV1", 52, "PART", "Participation"), ("PV2", 13, "REF", "referrer"))  # fmt: skip


def _encounter_class(f: V2) -> dict:
    code = f.c(1).upper()
    if code in vocab.ENCOUNTER_CLASS:
        system, v3, text = vocab.ENCOUNTER_CLASS[code]
        return {"system": system, "code": v3, "display": text}
    if code:
        return compact({"system": vocab.V2 + "0004", "code": code, "display": f.c(2)})
    # class is 1..1: an empty PV1-2 is "unknown" [ours]
    return {"system": V3_NULL_FLAVOR, "code": "UNK", "display": "unknown"}


def encounter_status(msg: Message, pv1: Seg) -> str:
    """A03 finished, A11 cancelled, A13 in-progress (the guide's 0003 -> encounter-status
    map); otherwise PV1-45 valued -> finished, PV1-2 P planned, U unknown, else in-progress.
    A04 (guide: planned) and A08 (guide: unknown) follow PV1 [ours: a walk-in registration
    is under way, and an update must not blank a known status]."""
    by_event = STATUS_BY_EVENT.get(adt_event(msg))
    if by_event:
        return by_event
    if pv1.f(45).c(1):
        return "finished"
    return {"P": "planned", "U": "unknown"}.get(pv1.code(2), "in-progress")


def _locations(bundle, pv1: Seg, pv2: Seg | None, opts, status: str) -> list[dict]:
    """PV1-3 current (active, planned for PV1-2 P; completed once finished), PV1-6 prior
    (completed), PV1-11 temporary (active), PV1-42 pending (reserved), PV2-1 prior pending
    (planned): each a Location chain (PL[Location])."""
    current = {"finished": "completed", "cancelled": None, "planned": "planned"}.get(
        status, "planned" if pv1.code(2) == "P" else "active"
    )
    spots = [(pv1.f(3), current), (pv1.f(6), "completed"), (pv1.f(11), "active"),
             (pv1.f(42), "reserved")] + ([(pv2.f(1), "planned")] if pv2 else [])  # fmt: skip
    out = []
    for f, loc_status in spots:
        where = add_location(bundle, f, opts)
        if where:
            out.append(compact({"location": where, "status": loc_status}))
    return out


def _participants(bundle, msg: Message, pv1: Seg, pv2: Seg | None, opts) -> list[dict]:
    out = []
    for seg_name, n, code, text in PARTICIPANTS:
        seg = pv1 if seg_name == "PV1" else pv2
        for f in seg.reps(n) if seg else ():
            individual = add_practitioner(bundle, f, opts)
            if individual:
                out.append({"type": [coded(vocab.V3_PARTICIPATION, code, text)],
                            "individual": individual})  # fmt: skip
    for rol in following(msg, pv1.pos, ("ROL",), ("PR1", "DG1", "OBX", "AL1", "IN1", "GT1")):
        role = cwe(rol.f(3), opts, vocab.V2 + "0443")  # ROL[Encounter-PractitionerRole]
        for f in rol.reps(4):
            individual = add_practitioner(bundle, f, opts)
            if individual:
                out.append(compact({"type": [role] if role else [], "individual": individual,
                                    "period": period(rol.f(5).c(1), rol.f(6).c(1),
                                                     opts.timezone)}))  # fmt: skip
    return out


def _pv2(enc: dict, pv2: Seg, opts: ConvertOptions) -> None:
    """PV2-3 reason, -8/-9 planned start/end (R5 extensions), -11 length, -12 text, -22
    protection (meta.security [ours: Y restricted, N normal]), -25 priority, -38 arrival."""
    tz = opts.timezone
    extensions = []
    for n, element in ((8, "plannedStartDate"), (9, "plannedEndDate")):
        when = dtm(pv2.f(n).c(1), tz)
        if when:
            extensions.append({"url": R5 + element, "valueDateTime": when})
    arrival = cwe(pv2.f(38), opts, vocab.V2 + "0430")
    if arrival and arrival.get("coding"):
        extensions.append({"url": MODE_OF_ARRIVAL, "valueCoding": arrival["coding"][0]})
    if extensions:
        enc["extension"] = extensions
    reasons = [r for r in (cwe(f, opts) for f in pv2.reps(3)) if r]
    if reasons:
        enc["reasonCode"] = reasons
    days = pv2.f(11).c(1)
    if days.isdigit():
        enc["length"] = {"value": int(days), "unit": "days", "system": vocab.UCUM, "code": "d"}
    if pv2.f(12).text:
        enc["text"] = {"status": "additional", "div": '<div xmlns="http://www.w3.org/1999/'
                       f'xhtml">{escape(pv2.f(12).text)}</div>'}  # fmt: skip
    protection = {"Y": ("R", "restricted"), "N": ("N", "normal")}.get(pv2.code(22))
    if protection:
        enc["meta"] = {"security": [{"system": V3_CONFIDENTIALITY, "code": protection[0],
                                     "display": protection[1]}]}  # fmt: skip
    if priority := cwe(pv2.f(25), opts, vocab.V2 + "0217"):
        enc["priority"] = priority


def add_encounter(
    bundle: TransactionBundle, msg: Message, opts: ConvertOptions, patient_ref: str | None
) -> str | None:
    """PV1 (+PV2) -> Encounter: a conditional update on PV1-19 (visit number, type VN); a
    visit without a number is keyed on the patient and the admit time PV1-44 (else the
    message) [ours]. Returns the reference, or None without PV1 or when not emitted."""
    idx = msg.segment_indexes("PV1")
    if not idx or not opts.emits("Encounter"):
        return None
    tz = opts.timezone
    pv1 = Seg(msg, idx[0])
    pv2_idx = msg.segment_indexes("PV2")
    pv2 = Seg(msg, pv2_idx[0]) if pv2_idx else None
    status = encounter_status(msg, pv1)
    cancel_discharge = adt_event(msg) == "A13"

    identifier = cx(pv1.f(19), opts, tz)
    if identifier:
        identifier["type"] = {
            "coding": [{"system": vocab.V2 + "0203", "code": "VN"}],
            "text": "visit number",
        }  # the PV1-19 rows
    else:
        identifier = derived(opts, "encounter", bundle.subject_key,
                             pv1.f(44).c(1) or msg.get("MSH-10") or "")  # fmt: skip
    alternates = [cx(f, opts, tz) for f in pv1.reps(50)]  # PV1-50 alternate visit ID
    end = "" if cancel_discharge else pv1.f(45).c(1)
    hospitalization = compact({
        "preAdmissionIdentifier": cx(pv1.f(5), opts, tz),
        "reAdmission": cwe(pv1.f(13), opts, vocab.V2 + "0092"),
        "admitSource": cwe(pv1.f(14), opts, vocab.V2 + "0023"),
        "specialArrangement": [c for c in (cwe(f, opts, vocab.V2 + "0009")
                                           for f in pv1.reps(15)) if c],
        "specialCourtesy": [c] if (c := cwe(pv1.f(16), opts, vocab.V2 + "0099")) else [],
        "dischargeDisposition": None if cancel_discharge
        else cwe(pv1.f(36), opts, vocab.V2 + "0112"),
        "destination": add_location(bundle, pv1.f(37), opts),
        "dietPreference": [c] if (c := cwe(pv1.f(38), opts, vocab.V2 + "0114")) else [],
    })  # fmt: skip
    enc = compact({
        "resourceType": "Encounter",
        "identifier": [identifier] + [a for a in alternates if a],
        "status": status,
        "class": _encounter_class(pv1.f(2)),
        "type": [t] if (t := cwe(pv1.f(4), opts, vocab.V2 + "0007")) else [],
        "serviceType": cwe(pv1.f(10), opts, vocab.V2 + "0069"),
        "subject": ref(patient_ref),
        "participant": _participants(bundle, msg, pv1, pv2, opts),
        "period": period(pv1.f(44).c(1), end, tz),
        "hospitalization": hospitalization,
        "location": _locations(bundle, pv1, pv2, opts, status),
    })  # fmt: skip
    if pv2 is not None:
        _pv2(enc, pv2, opts)
    return bundle.add(enc, "encounter", identifier_query(identifier))
