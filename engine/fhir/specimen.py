"""SPM -> Specimen (the guide's SPM[Specimen] map) and, for an ORU OBR without SPM, OBR ->
Specimen (OBR[Specimen]: "The OBR specimen data yields one Specimen resource that all
Observations generated for the same OBR need to reference", ORU_R01 map).

Specimens are conditional updates on SPM-2 (else one derived from the order's key and the
SPM set ID) [ours]."""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, derived, identifier_query
from engine.fhir.datatypes import V2, coded, compact, cwe, cx, dtm, ei, ei_sub, period
from engine.fhir.obx_values import quantity
from engine.fhir.options import ConvertOptions
from engine.fhir.people import add_practitioner
from engine.fhir.segments import Seg
from engine.hl7.message import Message

# OBR-24 diagnostic service sections whose OBR-7 is an exam time, not a specimen's
# collection [ours: no Specimen from such an OBR]
IMAGING_SECTIONS = frozenset({"RAD", "RX", "CT", "MR", "NMR", "NMS", "US", "CUS", "OUS", "VUS",
                              "XRC", "RT", "CTH", "EC", "EN", "PHY", "PT"})  # fmt: skip


def cq_quantity(f: V2, opts) -> dict | None:
    """CQ (.1 quantity, .2 units as CWE subcomponents) -> SimpleQuantity."""
    return quantity(f.c(1), f.s(2, 1), f.s(2, 2), f.s(2, 3), opts.local_system)


def _collected(start: str, end: str, tz) -> dict:
    if end:
        when = period(start, end, tz)
        return {"collectedPeriod": when} if when else {}
    when = dtm(start, tz)
    return {"collectedDateTime": when} if when else {}


def add_specimen(
    bundle: TransactionBundle, msg: Message, spm_pos: int, opts: ConvertOptions,
    subject: str | None, order_key: str = "",
) -> str | None:  # fmt: skip
    """SPM (segment position) -> Specimen: -2 identifiers (placer, filler), -3 parents, -4
    type, -6 additive, -7 method, -8 body site, -12 quantity, -14 note, -17 collected, -18
    received, -20 status, -24 condition, -27 container type, -30 accession, -31 other ids,
    -32 shipment id (STN)."""
    if not opts.emits("Specimen"):
        return None
    spm = Seg(msg, spm_pos)
    tz = opts.timezone
    ids_field = spm.f(2)
    ids = [i for i in (ei_sub(ids_field, 1, opts, "PLAC"), ei_sub(ids_field, 2, opts, "FILL"))
           if i]  # fmt: skip
    ids += [i for i in (cx(f, opts, tz) for f in spm.reps(31)) if i]
    if shipment := ei(spm.f(32), opts, "STN"):
        ids.append(shipment)
    if not ids:
        ids = [derived(opts, "specimen", order_key or msg.get("MSH-10") or "",
                       f"SPM-{spm.f(1).c(1) or spm_pos}")]  # fmt: skip
    collected = spm.f(17)
    collection = compact({
        **_collected(collected.c(1), collected.c(2), tz),
        "quantity": cq_quantity(spm.f(12), opts),
        "method": cwe(spm.f(7), opts, vocab.V2 + "0488"),
        "bodySite": cwe(spm.f(8), opts, vocab.V2 + "0550"),
    })  # fmt: skip
    container = compact({
        "type": cwe(spm.f(27), opts, vocab.V2 + "0785"),
        "additiveCodeableConcept": cwe(spm.f(6), opts, vocab.V2 + "0371"),
    })  # fmt: skip
    parents = [p for f in spm.reps(3) if (p := ei_sub(f, 1, opts, "PLAC") or
                                          ei_sub(f, 2, opts, "FILL"))]  # fmt: skip
    availability = {"Y": "available", "N": "unavailable"}.get(spm.code(20))
    res = compact({
        "resourceType": "Specimen",
        "identifier": ids,
        "accessionIdentifier": cx(spm.f(30), opts, tz),
        "status": availability,
        "type": cwe(spm.f(4), opts, vocab.V2 + "0487"),
        "subject": {"reference": subject} if subject else None,
        "receivedTime": dtm(spm.f(18).c(1), tz),
        "parent": [{"identifier": p} for p in parents],
        "collection": collection,
        "container": [container] if container else [],
        "condition": [c for c in (cwe(f, opts, vocab.V2 + "0493") for f in spm.reps(24)) if c],
        "note": [{"text": t} for t in (f.text for f in spm.reps(14)) if t],
    })  # fmt: skip
    key = identifier_query(ids[0])
    return bundle.add(res, f"spm|{key}", key)


def add_obr_specimen(bundle: TransactionBundle, obr: Seg, opts: ConvertOptions,
                     subject: str | None, order: dict | None) -> str | None:  # fmt: skip
    """OBR[Specimen], when the OBR has no SPM: -7/-8 collected, -9 quantity, -10 collector,
    -14 received, -15 source (type, body site), -39 note; keyed on the order. None for an
    imaging OBR-24 section or an OBR that says nothing about a specimen."""
    if not opts.emits("Specimen") or obr.code(24) in IMAGING_SECTIONS or order is None:
        return None
    if not any(obr.raw(n) for n in (7, 9, 10, 14, 15)):
        return None
    tz = opts.timezone
    source = obr.f(15)  # SPS: .1 specimen source (CWE as subcomponents), .4 body site
    source_type = None
    if source.s(1, 1) or source.s(1, 2):
        source_type = compact(
            {
                "coding": [
                    compact(
                        {
                            "system": vocab.system_uri(source.s(1, 3), opts.local_system)
                            if source.s(1, 3)
                            else vocab.V2 + "0487",
                            "code": source.s(1, 1),
                            "display": source.s(1, 2),
                        }
                    )
                ]
                if source.s(1, 1)
                else [],
                "text": None if source.s(1, 1) else source.s(1, 2),
            }
        )
    body_site = coded(vocab.V2 + "0163", source.s(4, 1), source.s(4, 2) or None) \
        if source.s(4, 1) else None  # fmt: skip
    collector = add_practitioner(bundle, obr.f(10), opts)
    collection = compact({
        **_collected(obr.f(7).c(1), obr.f(8).c(1), tz),
        "quantity": cq_quantity(obr.f(9), opts),
        "collector": collector if collector and collector.get("reference") else None,
        "bodySite": body_site,
    })  # fmt: skip
    identifier = derived(opts, "specimen", f"{order['value']}@{order['system']}", "OBR")
    res = compact({
        "resourceType": "Specimen",
        "identifier": [identifier],
        "type": source_type,
        "subject": {"reference": subject} if subject else None,
        "receivedTime": dtm(obr.f(14).c(1), tz),
        "collection": collection,
        "note": [{"text": c.get("text") or (c.get("coding") or [{}])[0].get("display", "")}
                 for c in (cwe(f, opts) for f in obr.reps(39)) if c],
    })  # fmt: skip
    key = identifier_query(identifier)
    return bundle.add(res, f"spm|{key}", key)
