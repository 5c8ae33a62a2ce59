"""ORC/OBR -> ServiceRequest: the guide's ORC[ServiceRequest] and OBR[ServiceRequest] maps, the
OrderControlCode[ServiceRequest.status] and OrderStatus vocabulary maps; the order keys the
result mappings share; PRT participations of an order group.

Choices where the guide is silent are marked [ours]."""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, derived, identifier_query, query, token
from engine.fhir.datatypes import V2, coded, compact, cwe, cx, dtm, ei, ei_sub, period, xad, xtn
from engine.fhir.options import ConvertOptions
from engine.fhir.patient import concept
from engine.fhir.people import add_practitioner, add_practitioner_role, xon_organization
from engine.fhir.segments import Seg, following, notes_after, seg_at
from engine.fhir.specimen import cq_quantity
from engine.hl7.message import Message

EXT = "http://hl7.org/fhir/StructureDefinition/"
CALLBACK = EXT + "servicerequest-order-callback-phone-number"
STATUS_REASON = EXT + "request-statusReason"
PRIORITY = {"S": "stat", "A": "asap", "R": "routine"}  # 0027 (OBR-5, TQ.6) [ours: the rest]
# OBR-25 (result status) -> ServiceRequest.status when ORC-5 and ORC-1 give none [ours]
RESULT_ORDER_STATUS = {"F": "completed", "C": "completed", "X": "revoked"}


def order_identifiers(orc: Seg | None, obr: Seg | None, opts: ConvertOptions):
    """(placer, filler) Identifiers: OBR-2/OBR-3, the ORC's when the OBR's is empty."""
    placer = (ei(obr.f(2), opts, "PLAC") if obr else None) or (
        ei(orc.f(2), opts, "PLAC") if orc else None
    )
    filler = (ei(obr.f(3), opts, "FILL") if obr else None) or (
        ei(orc.f(3), opts, "FILL") if orc else None
    )
    return placer, filler


def code_query(code: dict | None) -> str:
    """``&code=system|code`` added to a search whose identifier several OBR share [ours]."""
    coding = ((code or {}).get("coding") or [{}])[0]
    if not coding.get("code"):
        return ""
    return "&" + query(("code", token(coding.get("system"), coding["code"])))


def shared_order_number(msg: Message, field_no: int, value: str) -> bool:
    """True when more than one OBR of the message carries ``value`` as its placer (2) or
    filler (3) number, taking the ORC's when the OBR's is empty."""
    if not value:
        return False
    sep, comp = msg.sep, msg.enc[0]
    seen = 0
    orc: list[str] = []
    for seg in msg.segments:
        sid = seg[:3]
        if sid == "ORC":
            orc = seg.split(sep)
        elif sid == "OBR":
            fields = seg.split(sep)
            raw = fields[field_no] if field_no < len(fields) else ""
            if not raw.split(comp, 1)[0].strip() and len(orc) > field_no:
                raw = orc[field_no]
            if raw.split(comp, 1)[0].strip() == value:
                seen += 1
                if seen > 1:
                    return True
    return False


def order_status(orc: Seg | None, obr: Seg | None) -> str:
    """ORC-5 (OrderStatus map), else ORC-1 (OrderControlCode map: "IF ORC-5 NOT VALUED"),
    else a final/corrected/cancelled OBR-25 [ours], else unknown (status is 1..1)."""
    if orc is not None:
        status = vocab.ORDER_STATUS.get(orc.code(5))
        if status:
            return status
        if not orc.code(5):
            status = vocab.ORDER_CONTROL_STATUS.get(orc.code(1))
            if status:
                return status
    if obr is not None:
        return RESULT_ORDER_STATUS.get(obr.code(25), "unknown")
    return "unknown"


def _priority(orc: Seg | None, obr: Seg | None) -> str | None:
    """OBR-5, else the priority of the timing/quantity ORC-7.6 / OBR-27.6."""
    for code in (
        obr.code(5) if obr else "",
        orc.f(7).c(6).upper() if orc else "",
        obr.f(27).c(6).upper() if obr else "",
    ):
        if code:
            return PRIORITY.get(code)
    return None


def participations(msg: Message, pos: int) -> dict[str, list[V2]]:
    """PRT-5 persons after the segment at ``pos`` by PRT-4 role (table 0443)."""
    out: dict[str, list[V2]] = {}
    for prt in following(msg, pos, ("PRT",), ("OBR", "ORC", "OBX", "SPM", "RXO", "PID")):
        role = prt.code(4)
        out.setdefault(role, []).extend(prt.reps(5))
    return out


def _requester(bundle, orc: Seg | None, obr: Seg | None, opts, roles) -> dict | None:
    """ORC-12 (else OBR-16, else a PRT with role OP) -> Practitioner; with ORC-21/-22/-23
    the ordering facility, through a PractitionerRole; ORC-24 the provider's address."""
    field = orc.f(12) if orc and orc.f(12) else (obr.f(16) if obr and obr.f(16) else None)
    if field is None and roles.get("OP"):
        field = roles["OP"][0]
    who = add_practitioner(bundle, field, opts) if field else None
    if who and who.get("reference") and orc and orc.raw(24):
        entry = bundle.entry(who["reference"])
        entry["resource"]["address"] = [a for a in (xad(f, opts.timezone)
                                                    for f in orc.reps(24)) if a]  # fmt: skip
    facility = xon_organization(bundle, orc.f(21), opts, orc.reps(22), orc.reps(23)) \
        if orc and orc.raw(21) else None  # fmt: skip
    if facility and facility.get("reference"):
        return add_practitioner_role(bundle, opts, who, None, facility)
    return who


def _parent(bundle: TransactionBundle, obr: Seg | None, orc: Seg | None, opts,
            subject: str) -> str | None:  # fmt: skip
    """OBR-29 (else OBR-54, ORC-8: EIP, placer/filler EI as subcomponents) -> the parent
    ServiceRequest: the one in this bundle with that key, else a stub created only if none
    exists on the server (POST ifNoneExist) [ours: a conditional reference would fail the
    whole transaction when the parent is unknown]. A later OBR for that parent replaces the
    stub in place."""
    f = (obr.f(29) or obr.f(54)) if obr else None
    f = f or (orc.f(8) if orc else None)
    if not f:
        return None
    identifier = ei_sub(f, 1, opts, "PLAC") or ei_sub(f, 2, opts, "FILL")
    search = identifier_query(identifier)
    if not search:
        return None
    key = "sr|" + search
    found = bundle.find("ServiceRequest", key)
    if found:
        return found
    stub = {"resourceType": "ServiceRequest", "identifier": [identifier], "status": "unknown",
            "intent": "order", "subject": {"reference": subject}}  # fmt: skip
    return bundle.add(stub, key, search, method="POST")


def _extensions(orc: Seg | None, obr: Seg | None, opts) -> list[dict]:
    """ORC-14 (if no OBR-17) / OBR-17 call-back phone, ORC-16 control reason (if no ORC-5)."""
    out = []
    phones = (obr.reps(17) if obr else []) or (orc.reps(14) if orc else [])
    for f in phones:
        if point := xtn(f, "work", opts.timezone):
            out.append({"url": CALLBACK, "valueContactPoint": point})
    if orc and not orc.code(5) and (reason := cwe(orc.f(16), opts)):
        out.append({"url": STATUS_REASON, "valueCodeableConcept": reason})
    return out


def _tq1(msg: Message, orc: Seg | None, opts) -> dict:
    """TQ1 after the ORC (TQ1[ServiceRequest]): -2 quantityQuantity, -7/-8 the timing's
    bounds, -9 priority, -11 a note."""
    if orc is None:
        return {}
    tq1 = next(iter(following(msg, orc.pos, ("TQ1",), ("ORC", "OBR", "RXO", "OBX"))), None)
    if tq1 is None:
        return {}
    out: dict = {}
    if quantity := cq_quantity(tq1.f(2), opts):
        out["quantityQuantity"] = quantity
    bounds = period(tq1.f(7).c(1), tq1.f(8).c(1), opts.timezone)
    if bounds:
        out["occurrenceTiming"] = {"repeat": {"boundsPeriod": bounds}}
    if priority := PRIORITY.get(tq1.code(9)):
        out["priority"] = priority
    if tq1.f(11).text:
        out["note"] = [{"text": tq1.f(11).text}]
    return out


def build_service_request(bundle, msg, orc: Seg | None, obr: Seg | None, opts, subject: str,
                          encounter: str | None, obr_pos: int | None = None) -> dict:  # fmt: skip
    tz = opts.timezone
    placer, filler = order_identifiers(orc, obr, opts)
    alternates = [cx(f, opts, tz) for f in (obr.reps(53) if obr else [])] or [
        cx(f, opts, tz) for f in (orc.reps(33) if orc else [])
    ]  # OBR-53, else ORC-33
    for a in alternates:
        if a:
            a["type"] = coded(vocab.V2 + "0203", "PLAC")
    group = ei(orc.f(38), opts, "FGN") if orc else None
    roles = participations(msg, obr_pos if obr_pos is not None else (orc.pos if orc else 0))
    intent = {"G": "reflex-order"}.get(obr.code(11), "order") if obr else "order"
    when = None
    if obr:
        when = dtm(obr.f(6).c(1), tz) or dtm(obr.f(7).c(1), tz)
    tq = (orc.f(7) if orc else None) or (obr.f(27) if obr else None)
    occurrence = (
        {"occurrenceDateTime": when}
        if when
        else ({"occurrencePeriod": p} if tq and (p := period(tq.c(4), tq.c(5), tz)) else {})
    )
    confidentiality = cwe(orc.f(28), opts, vocab.V2 + "0177") if orc else None
    timing = _tq1(msg, orc, opts)
    if "occurrenceTiming" in timing and not occurrence:
        occurrence = {"occurrenceTiming": timing.pop("occurrenceTiming")}
    timing.pop("occurrenceTiming", None)
    res = compact({
        "resourceType": "ServiceRequest",
        "meta": {"security": confidentiality["coding"][:1]}
        if confidentiality and confidentiality.get("coding") else None,
        "extension": _extensions(orc, obr, opts),
        "identifier": [i for i in (placer, filler, *alternates, group) if i],
        "requisition": ei(orc.f(4), opts, "PGN") if orc else None,
        "basedOn": [{"reference": p}] if (p := _parent(bundle, obr, orc, opts, subject)) else [],
        "status": order_status(orc, obr),
        "intent": intent,
        "priority": _priority(orc, obr) or timing.get("priority"),
        "code": cwe(obr.f(4), opts) if obr else None,
        "orderDetail": [c for n in (46, 47) for c in (cwe(f, opts) for f in obr.reps(n)) if c]
        if obr else [],
        "subject": {"reference": subject},
        "encounter": {"reference": encounter} if encounter else None,
        **occurrence,
        "authoredOn": dtm(orc.f(9).c(1), tz) if orc else None,
        "requester": _requester(bundle, orc, obr, opts, roles),
        "locationCode": [c] if orc and (c := cwe(orc.f(29), opts, vocab.V2 + "0482")) else [],
        "reasonCode": [c for c in (concept(r, opts) for r in obr.reps(31)) if c] if obr else [],
        "quantityQuantity": timing.get("quantityQuantity"),
        "note": (notes_after(msg, obr_pos, opts, bundle) if obr_pos is not None else [])
        + timing.get("note", []),
    })  # fmt: skip
    return res


def add_service_request(
    bundle: TransactionBundle,
    msg: Message,
    orc_index: int | None,
    obr_index: int | None,
    opts: ConvertOptions,
    subject: str | None,
    encounter: str | None,
    *,
    supporting_info: list[str] | None = None,
    specimens: list[str] | None = None,
    reasons: list[str] | None = None,
) -> str | None:
    """ORC/OBR (1-based occurrences; either may be None) -> ServiceRequest, a conditional
    update on the placer identifier (else the filler's; with ``&code=`` when several OBR of
    the message share the number [ours]; else one derived from the message). Returns the
    reference, or None when not emitted or without a subject (1..1 in R4)."""
    if not opts.emits("ServiceRequest") or not subject:
        return None
    orc_at, obr_at = seg_at(msg, "ORC", orc_index), seg_at(msg, "OBR", obr_index)
    if orc_at is None and obr_at is None:
        return None
    orc = orc_at[1] if orc_at else None
    obr = obr_at[1] if obr_at else None
    res = build_service_request(bundle, msg, orc, obr, opts, subject, encounter,
                                obr_at[0] if obr_at else None)  # fmt: skip
    if supporting_info:
        res["supportingInfo"] = [{"reference": r} for r in supporting_info]
    if specimens:
        res["specimen"] = [{"reference": r} for r in specimens]
    if reasons:
        res["reasonReference"] = [{"reference": r} for r in reasons]
    placer, filler = order_identifiers(orc, obr, opts)
    key_id = placer or filler
    if key_id is None:
        key_id = derived(opts, "order", msg.get("MSH-10") or "", f"OBR-{obr_index}-ORC-{orc_index}")
        res.setdefault("identifier", []).append(key_id)
    search = identifier_query(key_id)
    if obr and shared_order_number(msg, 2 if placer else 3, key_id["value"]):
        search += code_query(res.get("code"))
    key = "sr|" + search
    existing = bundle.find("ServiceRequest", key)
    if existing:  # a parent stub added for an earlier OBR-29: this order replaces it
        entry = bundle.entry(existing)
        if entry["request"].get("ifNoneExist"):
            entry["resource"] = res
            entry["request"] = {"method": "PUT", "url": f"ServiceRequest?{search}"}
        return existing
    return bundle.add(res, key, search)


__all__ = ["add_service_request", "code_query", "order_identifiers", "order_status",
           "participations", "shared_order_number"]  # fmt: skip
