"""ORU^R01 -> per OBR group: ServiceRequest, DiagnosticReport, Observations, Specimens
(checklist: shared/fhir-mapping.md). Choices where the guide is silent are marked [ours]."""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle
from engine.fhir.datatypes import V2, coded, cwe, dtm
from engine.fhir.observation import add_observation, add_specimen
from engine.fhir.options import ConvertOptions
from engine.fhir.orders import (
    Seg,
    add_service_request,
    code_search,
    identifier_search,
    order_groups,
    order_identifiers,
    seg_at,
    shared_order_number,
)
from engine.fhir.patient import add_practitioner
from engine.hl7.message import Message


def _interpreter(f: V2) -> V2:
    """OBR-32 (NDL): its .1 is a CNN written as subcomponents; as an XCN view (CNN .9-.11
    become the XCN.9 authority). A sender writing an XCN there is read as it is."""
    if not f.s(1, 2):
        return f
    first = f.raw.split(f.enc[0], 1)[0]
    subs = first.split(f.enc[3])
    comps = subs[:8] + [""] * (8 - len(subs[:8]))
    comps.append(f.enc[3].join(subs[8:11]))
    return V2(f.enc[0].join(comps), f.sep, f.enc)


def _observation_identifier(
    msg: Message, obx_pos: int, filler: dict | None, opts: ConvertOptions, seen: set[str]
) -> dict | None:
    """[ours] A business identifier for a result: filler order number + OBX-3.1 (+ OBX-4
    sub-ID), in the filler number's system (else ``local_system/id/observation``); a code
    repeated under one order gets the OBX set ID appended."""
    if not filler:
        return None
    fields = msg.segments[obx_pos].split(msg.sep)
    comp = msg.enc[0]
    code = fields[3].split(comp, 1)[0].strip() if len(fields) > 3 else ""
    if not code:
        return None
    value = f"{filler['value']}-{code}"
    sub_id = fields[4].split(comp, 1)[0].strip() if len(fields) > 4 else ""
    if sub_id:
        value += f"-{sub_id}"
    if value in seen:
        value += f"-{fields[1].strip() if len(fields) > 1 else obx_pos}"
    seen.add(value)
    system = filler.get("system") or f"{opts.local_system.rstrip('/')}/id/observation"
    return {"system": system, "value": value}


def convert_oru(
    bundle: TransactionBundle,
    msg: Message,
    opts: ConvertOptions,
    patient_ref: str | None,
    encounter_ref: str | None,
) -> None:
    """Each OBR (with its ORC, OBX until the next OBR, SPM) -> ServiceRequest (basedOn the
    OBR-29 parent), Specimen per SPM, Observation per OBX (DiagnosticReport.result), and a
    DiagnosticReport: conditional update on the filler number OBR-3 (else ORC-3)."""
    tz = opts.timezone
    obx_idx = msg.segment_indexes("OBX")
    seen: set[str] = set()
    for g in order_groups(msg, reuse_orc=False):
        obr = Seg(msg, g.obr_pos)
        orc_at = seg_at(msg, "ORC", g.orc)
        orc = orc_at[1] if orc_at else None
        specimens = [add_specimen(bundle, msg, p, opts, patient_ref) for p in g.spm]
        specimen_refs = [s for s in specimens if s]
        sr = add_service_request(
            bundle, msg, g.orc, g.obr, opts, patient_ref, encounter_ref,
            specimens=specimen_refs,
        )  # fmt: skip
        start = dtm(obr.f(7).c(1), tz)
        end = dtm(obr.f(8).c(1), tz)
        placer, filler = order_identifiers(orc, obr, opts)

        results = []
        for occurrence, spm_i in g.obx:
            spec = specimens[spm_i] if spm_i >= 0 else (specimen_refs[0] if specimen_refs else None)
            ident = _observation_identifier(msg, obx_idx[occurrence - 1], filler, opts, seen)
            ref = add_observation(
                bundle, msg, occurrence, opts, patient_ref, encounter_ref,
                key=f"oru-obx-{occurrence}", specimen=spec, default_effective=start,
                identifier=ident,
            )  # fmt: skip
            if ref and spm_i < 0:
                results.append(ref)

        if not opts.emits("DiagnosticReport"):
            continue
        code = cwe(obr.f(4), opts)
        res: dict = {"resourceType": "DiagnosticReport"}
        ids = [i for i in (filler, placer) if i]
        if ids:
            res["identifier"] = ids
        if sr:
            res["basedOn"] = [{"reference": sr}]
        res["status"] = vocab.REPORT_STATUS.get(obr.code(25), "unknown")
        section = obr.f(24).c(1)
        if section:
            res["category"] = [coded(vocab.V2 + "0074", section)]
        res["code"] = code or {"text": "unknown"}
        if patient_ref:
            res["subject"] = {"reference": patient_ref}
        if encounter_ref:
            res["encounter"] = {"reference": encounter_ref}
        if start and end:
            res["effectivePeriod"] = {"start": start, "end": end}
        elif start:
            res["effectiveDateTime"] = start
        issued = dtm(obr.f(22).c(1), tz)
        if issued and "T" in issued:  # an instant: date, time and offset
            res["issued"] = issued
        interpreters = obr.f(32)
        if interpreters:
            who = add_practitioner(bundle, _interpreter(interpreters), opts)
            if who and who.get("reference"):  # Reference(Practitioner...): no display-only
                res["resultsInterpreter"] = [who]
        if specimen_refs:
            res["specimen"] = [{"reference": s} for s in specimen_refs]
        if results:
            res["result"] = [{"reference": r} for r in results]

        search = identifier_search(filler)
        if search:
            if shared_order_number(msg, 3, filler["value"]):
                search += code_search(code)
            bundle.add(res, "dr|" + search, search=search, method="PUT")
        else:
            bundle.add(res, f"dr|obr{g.obr}", method="POST")


__all__ = ["convert_oru"]
