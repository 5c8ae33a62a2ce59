"""VXU^V04 -> an Immunization per ORC/RXA (+RXR) and Observations for the OBX (partOf the
Immunization in an order, about the patient before the first ORC); NK1 as RelatedPerson:
the guide's VXU_V04 message map with ORC[Immunization], RXA[Immunization] and
RXR[Immunization]. Choices where the guide is silent are marked [ours]."""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, derived, identifier_query
from engine.fhir.datatypes import coded, compact, cwe, dtm, ei, ei_sub, xad
from engine.fhir.observation import add_observation
from engine.fhir.obx_values import quantity
from engine.fhir.options import ConvertOptions
from engine.fhir.oru import observation_identifier
from engine.fhir.people import add_location, add_practitioner, cwe_organization
from engine.fhir.related import add_related_people
from engine.fhir.segments import Seg, following
from engine.hl7.message import Message

FUNCTION = vocab.V2 + "0443"
UNKNOWN_AMOUNT = "999"  # RXA-6 "999": amount unknown (CDC immunization guide) [ours]
# RXA-9 administration notes (NIP001): 00 new record (primary source), 01 historical
PRIMARY_SOURCE = {"00": True, "01": False}


def _status(rxa: Seg) -> str:
    """RXA-21 D -> entered-in-error; RXA-20 via the CompletionStatus map; empty -> completed
    (the RXA-20/-21 rows)."""
    if rxa.code(21) == "D":
        return "entered-in-error"
    return vocab.COMPLETION_STATUS.get(rxa.code(20), "completed")


def _key(msg: Message, orc: Seg | None, rxa: Seg, opts, subject_key: str) -> dict:
    """ORC-3 (else ORC-2) when the order number is the only one in the message with it;
    else one derived from the patient, the vaccine code and the administration time [ours:
    the guide's sample sends three RXA under one order number]."""
    if orc is not None:
        for n, kind in ((3, "FILL"), (2, "PLAC")):
            own = ei(orc.f(n), opts, kind)
            if own and sum(1 for p in msg.segment_indexes("ORC")
                           if Seg(msg, p).f(n).c(1) == own["value"]) == 1:  # fmt: skip
                return own
    return derived(opts, "immunization", subject_key, rxa.f(5).c(1), rxa.f(3).c(1))


def _immunization(bundle, msg, orc: Seg | None, rxa: Seg, opts, patient_ref, encounter_ref):
    tz = opts.timezone
    rxr = next(iter(following(msg, rxa.pos, ("RXR",), ("ORC", "RXA", "OBX"))), None)
    identifiers = []
    if orc is not None:
        identifiers = [i for i in (ei(orc.f(2), opts, "PLAC"), ei(orc.f(3), opts, "FILL"),
                                   ei_sub(orc.f(4), 2, opts, "FGN"),
                                   ei_sub(orc.f(4), 1, opts, "PGN")) if i]  # fmt: skip
    key = _key(msg, orc, rxa, opts, bundle.subject_key)
    if key not in identifiers:
        identifiers.append(key)
    performers = []
    for field, function in (((orc.f(12) if orc else None), "OP"), (rxa.f(10), "AP")):
        actor = add_practitioner(bundle, field, opts) if field else None
        if actor:
            performers.append({"function": coded(FUNCTION, function), "actor": actor})
    amount, units = rxa.f(6).c(1), rxa.f(7)
    dose = None
    if amount != UNKNOWN_AMOUNT:
        dose = quantity(amount, units.c(1), units.c(2), units.c(3), opts.local_system)
    recorded = dtm(orc.f(9).c(1), tz) if orc else None
    if not recorded and rxa.code(21) == "A":
        recorded = dtm(rxa.f(22).c(1), tz)
    address = xad(rxa.f(28), tz)
    location = add_location(bundle, rxa.f(27), opts, address)
    expires = dtm(rxa.f(16).c(1), tz, date_only=True)
    immunization = compact({
        "resourceType": "Immunization",
        "identifier": identifiers,
        "status": _status(rxa),
        "statusReason": cwe(rxa.f(18), opts, vocab.V2 + "0440"),
        "vaccineCode": cwe(rxa.f(5), opts) or {"text": "unknown"},
        "patient": {"reference": patient_ref},
        "encounter": {"reference": encounter_ref} if encounter_ref else None,
        "occurrenceDateTime": dtm(rxa.f(3).c(1), tz),
        "recorded": recorded,
        "primarySource": PRIMARY_SOURCE.get(rxa.f(9).c(1)),
        "location": location if location and location.get("reference") else None,
        "manufacturer": cwe_organization(bundle, rxa.f(17), opts),
        "lotNumber": rxa.f(15).c(1),
        "expirationDate": expires,
        "site": cwe(rxr.f(2), opts, vocab.V2 + "0163") if rxr else None,
        "route": cwe(rxr.f(1), opts, vocab.V2 + "0162") if rxr else None,
        "doseQuantity": dose,
        "performer": performers,
        "reasonCode": [c] if (c := cwe(rxa.f(19), opts)) else [],
    })  # fmt: skip
    if "occurrenceDateTime" not in immunization:  # occurrence[x] is 1..1 [ours]
        immunization["occurrenceString"] = rxa.f(3).c(1) or "unknown"
    search = identifier_query(key)
    return bundle.add(immunization, "imm|" + search, search), key


def convert_vxu(
    bundle: TransactionBundle,
    msg: Message,
    opts: ConvertOptions,
    patient_ref: str | None,
    encounter_ref: str | None,
) -> None:
    if not patient_ref:
        return
    add_related_people(bundle, msg, opts, patient_ref, bundle.entry(patient_ref)["resource"])
    obx_positions = msg.segment_indexes("OBX")
    seen: set[str] = set()
    current = None  # (Immunization reference, its key) of the ORDER group
    orc: Seg | None = None
    for pos, segment in enumerate(msg.segments):
        sid = segment[:3]
        if sid == "ORC":
            orc, current = Seg(msg, pos), None
        elif sid == "RXA" and opts.emits("Immunization"):
            current = _immunization(bundle, msg, orc, Seg(msg, pos), opts, patient_ref,
                                    encounter_ref)  # fmt: skip
        elif sid == "OBX":
            occurrence = obx_positions.index(pos) + 1
            ident = observation_identifier(msg, pos, current[1], seen) if current else None
            add_observation(bundle, msg, occurrence, opts, patient_ref, encounter_ref,
                            key=f"vxu-obx-{occurrence}", identifier=ident,
                            part_of=current[0] if current else None)  # fmt: skip


__all__ = ["convert_vxu"]
