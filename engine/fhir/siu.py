"""SIU^S12 (and S13-S15, same structure) -> Appointment from SCH with participants from
PID, AIG, AIL and AIP, NTE as comment; OBX and DG1 about the patient: the guide's SIU_S12
message map with SCH[Appointment], PID[Appointment], AIG/AIL/AIP[Appointment] and
NTE[Appointment-Comment]. Choices where the guide is silent are marked [ours]."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, derived, identifier_query
from engine.fhir.clinical import add_conditions
from engine.fhir.datatypes import compact, cwe, dtm, ei
from engine.fhir.observation import add_observation
from engine.fhir.options import ConvertOptions
from engine.fhir.people import add_location, add_practitioner
from engine.fhir.segments import Seg, first, formatted_text, segs
from engine.hl7.message import Message

PROVENANCE_TYPE = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
R5_SUBJECT = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Appointment.subject"
MINUTES = {"MIN": 1, "M": 1, "MINUTES": 1, "MINUTE": 1, "S": 1 / 60, "SEC": 1 / 60,
           "H": 60, "HR": 60, "HOURS": 60, "D": 1440, "DAYS": 1440}  # fmt: skip
# AIx-12 / SCH-25 filler status -> Appointment.participant.status [ours: no guide map]
PARTICIPATION = {"booked": "accepted", "checked-in": "accepted", "fulfilled": "accepted",
                 "cancelled": "declined", "noshow": "declined", "entered-in-error": "declined",
                 "pending": "tentative", "waitlist": "tentative"}  # fmt: skip
# SCH-12/-16/-20 participants (SCH[Appointment] rows); the guide's "#placer contact#" and
# "#filler contact#" are placeholders with no code: text only [ours]
CONTACTS = ((12, None, "placer contact"), (16, None, "filler contact"),
            (20, (PROVENANCE_TYPE, "enterer"), "Enterer"))  # fmt: skip


def _minutes(amount: str, units) -> float | None:
    try:
        value = float(amount)
    except ValueError:
        return None
    factor = MINUTES.get((units.c(1) or units.c(2) or "min").upper())
    return value * factor if factor else None


def _period(start_value: str, amount: str, units, tz) -> dict | None:
    """Start (a DTM) and a duration in the given units -> Period (AIx-6/-9/-10 rows)."""
    start = dtm(start_value, tz)
    if not start:
        return None
    out = {"start": start}
    minutes = _minutes(amount, units) if amount else None
    if minutes and "T" in start:
        out["end"] = (datetime.fromisoformat(start) + timedelta(minutes=minutes)).isoformat()
    return out


def _status(sch: Seg) -> str:
    """SCH-25 via FillerStatusCodes[Appointment]; unmapped or empty -> booked (an S12 is a
    booking notification) [ours]."""
    code = (sch.f(25).c(1) or sch.f(25).c(2)).upper()
    return vocab.APPOINTMENT_STATUS.get(code, "booked")


def _resources(bundle, msg, opts, default: str) -> list[dict]:
    out = []
    for aig in segs(msg, "AIG"):  # AIG-3 is an actor only when AIG-4 names a location
        kind = cwe(aig.f(4), opts)
        location = add_location(bundle, aig.f(3), opts) if aig.code(4) in ("L", "LOC") else None
        out.append(compact({"type": [kind] if kind else [], "actor": location,
                            "status": default,
                            "period": _period(aig.f(8).c(1), aig.f(11).c(1), aig.f(12),
                                              opts.timezone)}))  # fmt: skip
    for ail in segs(msg, "AIL"):
        out.append(compact({"actor": add_location(bundle, ail.f(3), opts), "status": default,
                            "period": _period(ail.f(6).c(1), ail.f(9).c(1), ail.f(10),
                                              opts.timezone)}))  # fmt: skip
    for aip in segs(msg, "AIP"):
        own = vocab.APPOINTMENT_STATUS.get((aip.f(12).c(1) or "").upper())
        kind = cwe(aip.f(4), opts)
        out.append(compact({"type": [kind] if kind else [],
                            "actor": add_practitioner(bundle, aip.f(3), opts),
                            "status": PARTICIPATION.get(own, default) if own else default,
                            "period": _period(aip.f(6).c(1), aip.f(9).c(1), aip.f(10),
                                              opts.timezone)}))  # fmt: skip
    return [p for p in out if p.get("actor") or p.get("type")]


def convert_siu(
    bundle: TransactionBundle,
    msg: Message,
    opts: ConvertOptions,
    patient_ref: str | None,
    encounter_ref: str | None,
) -> None:
    if patient_ref:
        for n in range(1, len(msg.segment_indexes("OBX")) + 1):
            add_observation(bundle, msg, n, opts, patient_ref, encounter_ref, key=f"siu-obx-{n}")
        add_conditions(bundle, msg, opts, patient_ref, encounter_ref)
    sch = first(msg, "SCH")
    if sch is None or not opts.emits("Appointment"):
        return
    tz = opts.timezone
    status = _status(sch)
    default = PARTICIPATION.get(status, "needs-action")
    identifiers = [i for i in (ei(sch.f(1), opts, "PLAC"), ei(sch.f(2), opts, "FILL")) if i]
    key = (identifiers[1] if len(identifiers) > 1 else None) or (
        identifiers[0] if identifiers else derived(opts, "appointment", msg.get("MSH-10") or "")
    )
    participants = []
    if patient_ref:  # PID[Appointment]: the patient as a participant (and the R5 subject)
        participants.append({"actor": {"reference": patient_ref}, "status": default})
    for n, code, text in CONTACTS:
        for f in sch.reps(n):
            actor = add_practitioner(bundle, f, opts)
            if actor:
                kind = {"coding": [{"system": code[0], "code": code[1]}], "text": text} \
                    if code else {"text": text}  # fmt: skip
                participants.append({"type": [kind], "actor": actor, "status": default})
    participants += _resources(bundle, msg, opts, default)
    reason_system = sch.f(7).c(3).upper()
    timing = sch.f(11)
    start, end = dtm(timing.c(4), tz), dtm(timing.c(5), tz)
    minutes = _minutes(sch.f(9).c(1), sch.f(10)) if sch.f(9).c(1) else None
    notes = [formatted_text(r.text, msg.enc[2]) for nte in segs(msg, "NTE") for r in nte.reps(3)]
    basis = [ei(f, opts, "PLAC") for f in sch.reps(26)] + [
        ei(f, opts, "FILL") for f in sch.reps(27)
    ]
    appointment = compact({
        "resourceType": "Appointment",
        "extension": [{"url": R5_SUBJECT, "valueReference": {"reference": patient_ref}}]
        if patient_ref else [],
        "identifier": identifiers or [key],
        "status": status,
        # SCH-7 -> appointmentType when coded in 0277, else reasonCode (SCH-7 rows)
        "reasonCode": [c] if reason_system != "HL70277" and (c := cwe(sch.f(7), opts)) else [],
        "appointmentType": cwe(sch.f(8), opts) or (cwe(sch.f(7), opts)
                                                   if reason_system == "HL70277" else None),
        "start": start if start and end else None,
        "end": end if start and end else None,
        "minutesDuration": int(minutes) if minutes and minutes >= 1 else None,
        "comment": "\n".join(n for n in notes if n) or None,
        "basedOn": [{"identifier": b} for b in basis if b],
        "participant": participants or [{"type": [{"text": "unknown"}], "status": default}],
    })  # fmt: skip
    search = identifier_query(key)
    bundle.add(appointment, "appt|" + search, search)


__all__ = ["convert_siu"]
