"""ORU^R01 -> per OBR group: ServiceRequest, DiagnosticReport (ORC[DiagnosticReport] +
OBR[DiagnosticReport]), Observations, Specimens (SPM, else OBR[Specimen]); the ORU_R01
message map. Choices where the guide is silent are marked [ours]."""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, derived, identifier_query
from engine.fhir.datatypes import V2, coded, compact, cwe, dtm, ei_sub
from engine.fhir.observation import add_observation
from engine.fhir.options import ConvertOptions
from engine.fhir.orders import (
    add_service_request,
    code_query,
    order_identifiers,
    participations,
    shared_order_number,
)
from engine.fhir.people import add_practitioner, practitioners
from engine.fhir.segments import Seg, order_groups, seg_at
from engine.fhir.specimen import add_obr_specimen, add_specimen
from engine.hl7.message import Message

PERFORMER_FUNCTION = "http://hl7.org/fhir/StructureDefinition/event-performerFunction"
EVENT_STATUS_REASON = "http://hl7.org/fhir/StructureDefinition/event-statusReason"


def ndl(f: V2) -> V2:
    """NDL (OBR-32..35): its .1 is a CNN written as subcomponents; as an XCN view (CNN .9-.11
    become the XCN.9 authority). A sender writing an XCN there is read as it is."""
    if not f.s(1, 2):
        return f
    first = f.raw.split(f.enc[0], 1)[0]
    subs = first.split(f.enc[3])
    comps = subs[:8] + [""] * (8 - len(subs[:8]))
    comps.append(f.enc[3].join(subs[8:11]))
    return V2(f.enc[0].join(comps), f.sep, f.enc)


def observation_identifier(msg: Message, obx_pos: int, order: dict, seen: set[str]) -> dict:
    """[ours] A business identifier for a result: the order number (filler, else placer)
    + OBX-3.1 (+ OBX-4 sub-ID), in the order number's system; a code repeated under one order
    gets the OBX set ID appended. The same result in a later (corrected) message gets the
    same identifier."""
    fields = msg.segments[obx_pos].split(msg.sep)
    comp = msg.enc[0]
    code = fields[3].split(comp, 1)[0].strip() if len(fields) > 3 else ""
    value = f"{order['value']}-{code or 'OBX'}"
    sub_id = fields[4].split(comp, 1)[0].strip() if len(fields) > 4 else ""
    if sub_id:
        value += f"-{sub_id}"
    if value in seen or not code:
        value += f"-{fields[1].strip() if len(fields) > 1 and fields[1].strip() else obx_pos}"
    seen.add(value)
    return {"system": order["system"], "value": value}


def _performers(bundle, obr: Seg, opts, roles: dict) -> list[dict]:
    """OBR-34 technician (SPRF), OBR-35 transcriptionist (TRANS), PRT ARI/TN/TR."""
    out = []
    for n, function in ((34, "SPRF"), (35, "TRANS")):
        for f in obr.reps(n):
            who = add_practitioner(bundle, ndl(f), opts)
            if who and who.get("reference"):
                who = {
                    **who,
                    "extension": [
                        {
                            "url": PERFORMER_FUNCTION,
                            "valueCodeableConcept": coded(vocab.V3_PARTICIPATION, function),
                        }
                    ],
                }
                out.append(who)
    for role in ("ARI", "TN", "TR"):
        out += [p for p in practitioners(bundle, roles.get(role, []), opts) if p.get("reference")]
    return out


def convert_oru(
    bundle: TransactionBundle,
    msg: Message,
    opts: ConvertOptions,
    patient_ref: str | None,
    encounter_ref: str | None,
) -> None:
    """Each OBR (with its ORC, OBX until the next OBR, SPM) -> ServiceRequest (basedOn the
    OBR-29 parent), Specimen per SPM (else one from the OBR), Observation per OBX
    (DiagnosticReport.result), and a DiagnosticReport: conditional update on the filler
    number OBR-3 (else ORC-3, else the placer number)."""
    tz = opts.timezone
    obx_idx = msg.segment_indexes("OBX")
    seen: set[str] = set()
    for g in order_groups(msg, reuse_orc=False):
        obr = Seg(msg, g.obr_pos)
        orc_at = seg_at(msg, "ORC", g.orc)
        orc = orc_at[1] if orc_at else None
        placer, filler = order_identifiers(orc, obr, opts)
        order = filler or placer or derived(opts, "order", msg.get("MSH-10") or "", f"OBR-{g.obr}")
        order_key = f"{order['value']}@{order['system']}"
        specimens = [add_specimen(bundle, msg, p, opts, patient_ref, order_key) for p in g.spm]
        specimen_refs = [s for s in specimens if s]
        if not g.spm and (own := add_obr_specimen(bundle, obr, opts, patient_ref, order)):
            specimen_refs = [own]
        sr = add_service_request(
            bundle, msg, g.orc, g.obr, opts, patient_ref, encounter_ref,
            specimens=specimen_refs,
        )  # fmt: skip
        start = dtm(obr.f(7).c(1), tz)
        end = dtm(obr.f(8).c(1), tz)
        results = []
        for occurrence, spm_i in g.obx:
            spec = specimens[spm_i] if spm_i >= 0 else (specimen_refs[0] if specimen_refs else None)
            ident = observation_identifier(msg, obx_idx[occurrence - 1], order, seen)
            ref = add_observation(
                bundle, msg, occurrence, opts, patient_ref, encounter_ref,
                key=f"oru-obx-{occurrence}", specimen=spec, default_effective=start,
                identifier=ident,
            )  # fmt: skip
            if ref and spm_i < 0:
                results.append(ref)

        if not opts.emits("DiagnosticReport"):
            continue
        roles = participations(msg, g.obr_pos)
        code = cwe(obr.f(4), opts)
        group = (ei_sub(orc.f(4), 2, opts, "FGN") or ei_sub(orc.f(4), 1, opts, "PGN")) \
            if orc and orc.raw(4) else None  # ORC-4 (EIP) rows  # fmt: skip
        interpreters = [add_practitioner(bundle, ndl(f), opts) for f in obr.reps(32)]
        interpreters += practitioners(bundle, roles.get("PRI", []), opts)
        issued = dtm(obr.f(22).c(1), tz)
        reason = cwe(orc.f(16), opts) if orc else None
        security = cwe(orc.f(28), opts, vocab.V2 + "0177") if orc else None
        report = compact({
            "resourceType": "DiagnosticReport",
            "meta": {"security": security["coding"][:1]} if security and security.get("coding")
            else None,
            "extension": [{"url": EVENT_STATUS_REASON, "valueCodeableConcept": reason}]
            if reason else [],
            "identifier": [i for i in (filler, placer, group) if i],
            "basedOn": [{"reference": sr}] if sr else [],
            "status": vocab.REPORT_STATUS.get(obr.code(25), "unknown"),
            "category": [coded(vocab.V2 + "0074", obr.code(24))] if obr.code(24) else [],
            "code": code or {"text": "unknown"},
            "subject": {"reference": patient_ref} if patient_ref else None,
            "encounter": {"reference": encounter_ref} if encounter_ref else None,
            "effectivePeriod": {"start": start, "end": end} if start and end else None,
            "effectiveDateTime": start if start and not end else None,
            "issued": issued if issued and "T" in issued else None,  # an instant
            "performer": _performers(bundle, obr, opts, roles),
            # Reference(Practitioner...): no display-only interpreter
            "resultsInterpreter": [w for w in interpreters if w and w.get("reference")],
            "specimen": [{"reference": s} for s in specimen_refs],
            "result": [{"reference": r} for r in results],
        })  # fmt: skip
        search = identifier_query(order)
        if (filler or placer) and shared_order_number(msg, 3 if filler else 2, order["value"]):
            search += code_query(code)
        if not (filler or placer):
            report["identifier"] = [order]
        bundle.add(report, "dr|" + search, search)


__all__ = ["convert_oru", "ndl", "observation_identifier"]
