"""ORC + RXO (+ RXR) -> MedicationRequest (and a Medication when RXO gives a form or a
strength): the guide's RXO[MedicationRequest] and RXR[MedicationRequest] maps. The ORC rows
of ORC[ServiceRequest] (identifiers, status, requester, authoredOn) are applied to the
MedicationRequest, which stands in the ServiceRequest's place for a pharmacy order [ours: the
ORM_O01 map creates both; one request per order is what a receiver can act on]."""

from __future__ import annotations

import re

from engine.fhir import vocab
from engine.fhir.bundle import derived, identifier_query
from engine.fhir.datatypes import V2, coded, compact, cwe, dtm, ei, period
from engine.fhir.obx_values import quantity
from engine.fhir.orders import order_identifiers, order_status
from engine.fhir.people import add_practitioner
from engine.fhir.segments import Seg, following, notes_after

DOSE_RATE_TYPE = "http://terminology.hl7.org/CodeSystem/dose-rate-type"
# request-status (order_status) -> MedicationRequest.status; "revoked" splits by the code
MEDICATION_STATUS = {"active": "active", "on-hold": "on-hold", "completed": "completed",
                     "entered-in-error": "entered-in-error", "unknown": "unknown"}  # fmt: skip
DISCONTINUED = frozenset({"DC", "OD", "DR"})


def _quantity(amount: str, units: V2, opts) -> dict | None:
    """NM + CWE units -> Quantity: ``code``/``system`` when the unit is coded (RXO-4/-12
    rows: "IF .1 OR .3 VALUED"), else ``unit`` only."""
    return quantity(amount, units.c(1), units.c(2), units.c(3), opts.local_system)


def _medication(bundle, rxo: Seg, opts) -> dict:
    """RXO-1 as medicationCodeableConcept; with RXO-5 (form) or RXO-18/-25 (strength) a
    Medication resource keyed on the code, form and strength."""
    code = cwe(rxo.f(1), opts) or {"text": "unknown"}
    form = cwe(rxo.f(5), opts, vocab.V2 + "0292")
    numerator = _quantity(rxo.f(18).c(1), rxo.f(19), opts)
    denominator = _quantity(rxo.f(25).c(1), rxo.f(26), opts)
    if not (form or numerator) or not opts.emits("Medication"):
        return {"medicationCodeableConcept": code}
    strength = compact({"numerator": numerator, "denominator": denominator})
    coding = (code.get("coding") or [{}])[0]
    identifier = derived(opts, "medication", coding.get("code") or code.get("text", ""),
                         rxo.f(5).c(1), rxo.f(18).c(1), rxo.f(19).c(1))  # fmt: skip
    medication = compact({
        "resourceType": "Medication",
        "identifier": [identifier],
        "code": code,
        "form": form,
        "ingredient": [{"itemCodeableConcept": code, "strength": strength}] if strength else [],
    })  # fmt: skip
    url = bundle.add(medication, identifier["value"], identifier_query(identifier), "POST")
    return {"medicationReference": {"reference": url, "display": coding.get("display")}}


_INTERVAL = re.compile(r"^Q(\d+)(H|D|W|M|S)$")  # TQ.2 "Q6H": every 6 hours


def _timing(orc: Seg | None, opts) -> dict | None:
    """ORC-7 (TQ): .2 interval as the timing's code (and its repeat for "Q<n><unit>"), .4/.5
    the bounds [ours: the guide's TQ[MedicationRequest] map, in part]."""
    tq = orc.f(7) if orc else None
    if not tq:
        return None
    repeat = {}
    if bounds := period(tq.c(4), tq.c(5), opts.timezone):
        repeat["boundsPeriod"] = bounds
    interval = tq.c(2).upper()
    if m := _INTERVAL.match(interval):
        repeat |= {"frequency": 1, "period": int(m.group(1)),
                   "periodUnit": {"S": "s", "H": "h", "D": "d", "W": "wk", "M": "min"}[
                       m.group(2)]}  # fmt: skip
    return compact({"repeat": repeat, "code": {"text": tq.c(2)} if tq.c(2) else None}) or None


def _dosage(rxo: Seg, rxr: Seg | None, opts, orc: Seg | None = None) -> dict:
    low = _quantity(rxo.f(2).c(1), rxo.f(4), opts)
    high = _quantity(rxo.f(3).c(1), rxo.f(4), opts)
    dose = compact({"low": low, "high": high})
    dosage = {}
    if timing := _timing(orc, opts):
        dosage["timing"] = timing
    if dose:
        dosage["doseAndRate"] = [{"type": coded(DOSE_RATE_TYPE, "ordered", "Ordered"),
                                  "doseRange": dose}]  # fmt: skip
    if rxr is not None:
        dosage |= compact({
            "route": cwe(rxr.f(1), opts, vocab.V2 + "0162"),
            "site": cwe(rxr.f(2), opts, vocab.V2 + "0550"),
            "method": cwe(rxr.f(4), opts, vocab.V2 + "0165"),
            "additionalInstruction": [c] if (c := cwe(rxr.f(5), opts)) else [],
        })  # fmt: skip
    return dosage


def add_medication_request(bundle, msg, orc: Seg | None, rxo: Seg, opts, subject: str,
                           encounter: str | None) -> str | None:  # fmt: skip
    """RXO[MedicationRequest] with the ORC rows, RXR after the RXO, NTE after it as notes."""
    if not opts.emits("MedicationRequest"):
        return None
    tz = opts.timezone
    rxr = next(iter(following(msg, rxo.pos, ("RXR",), ("ORC", "RXO", "OBR", "OBX"))), None)
    placer, filler = order_identifiers(orc, None, opts)
    key = placer or filler or derived(opts, "medication-order", msg.get("MSH-10") or "",
                                      f"RXO-{rxo.pos}")  # fmt: skip
    status = order_status(orc, None)
    if status == "revoked":
        codes = {orc.code(5), orc.code(1)} if orc else set()
        status = "stopped" if codes & DISCONTINUED else "cancelled"
    requester_field = rxo.f(14) if rxo.f(14) else (orc.f(12) if orc else None)
    allowed = rxo.code(9)
    refills = rxo.f(13).c(1)
    dispense = compact({
        "quantity": _quantity(rxo.f(11).c(1), rxo.f(12), opts),
        "numberOfRepeatsAllowed": int(refills) if refills.isdigit() else None,
    })  # fmt: skip
    dosage = _dosage(rxo, rxr, opts, orc)
    request = compact({
        "resourceType": "MedicationRequest",
        "identifier": [i for i in (placer, filler) if i] or [key],
        "groupIdentifier": ei(orc.f(4), opts, "PGN") if orc else None,  # ORC-4
        "status": MEDICATION_STATUS.get(status, status),
        "intent": "original-order",  # RXO row 0
        **_medication(bundle, rxo, opts),
        "subject": {"reference": subject},
        "encounter": {"reference": encounter} if encounter else None,
        "authoredOn": dtm(orc.f(9).c(1), tz) if orc else None,
        "requester": add_practitioner(bundle, requester_field, opts) if requester_field else None,
        "note": notes_after(msg, rxo.pos, opts, bundle),
        "dosageInstruction": [dosage] if dosage else [],
        "dispenseRequest": dispense,
        "substitution": {"allowedCodeableConcept": coded(vocab.V2 + "0161", allowed)}
        if allowed else None,
    })  # fmt: skip
    search = identifier_query(key)
    return bundle.add(request, "mr|" + search, search)


__all__ = ["add_medication_request"]
