"""MDM^T02 -> a DocumentReference from TXA with one content per OBX, and the ServiceRequest of
the ORC/OBR it relates to: the guide's MDM_T02 message map with TXA[DocumentReference] and
OBX[DocumentReference]. Choices where the guide is silent are marked [ours]."""

from __future__ import annotations

import base64

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, derived, identifier_query
from engine.fhir.datatypes import coded, compact, cwe, dtm, ei
from engine.fhir.obx_values import attachment
from engine.fhir.options import ConvertOptions
from engine.fhir.orders import add_service_request
from engine.fhir.people import practitioners
from engine.fhir.segments import first, formatted_text, order_groups, segs
from engine.hl7.message import Message

ALTERNATE_CODES = "http://hl7.org/fhir/StructureDefinition/alternate-codes"
# OBX[DocumentReference] OBX-5 rows: FT -> text/hl7v2, TX -> application/text (as the guide
# writes them); ST has no row [ours: text/plain]
TEXT_CONTENT_TYPE = {"FT": "text/hl7v2", "TX": "application/text", "ST": "text/plain"}
# 0191 type of referenced data (TXA-3) -> MIME type [ours: the guide maps it as a code]
PRESENTATION = {"TX": "text/plain", "FT": "text/plain", "AP": "application/octet-stream",
                "IM": "image/*", "AU": "audio/*", "TEXT": "text/plain",
                "MULTIPART": "multipart/mixed", "HTML": "text/html"}  # fmt: skip
# 0271 document completion status (TXA-17) -> docStatus [ours: the guide gives no map]
DOC_STATUS = {"AU": "final", "LA": "final", "DO": "final", "DI": "preliminary",
              "IN": "preliminary", "IP": "preliminary", "PA": "preliminary"}  # fmt: skip
# TXA-19 availability: AV current; CA/OB/UN kept as an alternate code, status [ours]
AVAILABILITY = {"AV": "current", "CA": "entered-in-error", "OB": "superseded", "UN": "current"}
CONFIDENTIALITY = {"V": "Very restricted", "R": "Restricted", "U": "Usual control"}


def _contents(msg: Message, presentation: str | None) -> list[dict]:
    """Each OBX -> a content: ED an attachment, RP its url, FT/TX/ST the text as data."""
    out = []
    esc = msg.enc[2]
    for obx in segs(msg, "OBX"):
        vtype = obx.code(2)
        if vtype in ("ED", "RP"):
            for f in obx.reps(5):
                if found := attachment(vtype, f):
                    out.append({"attachment": found})
            continue
        text = "\n".join(formatted_text(r.text, esc) for r in obx.reps(5)).strip()
        if not text:
            continue
        data = base64.b64encode(text.encode("utf-8")).decode("ascii")
        ctype = TEXT_CONTENT_TYPE.get(vtype, presentation or "text/plain")
        out.append({"attachment": {"contentType": ctype, "data": data}})
    return out


def convert_mdm(
    bundle: TransactionBundle,
    msg: Message,
    opts: ConvertOptions,
    patient_ref: str | None,
    encounter_ref: str | None,
) -> None:
    orders = [
        add_service_request(bundle, msg, g.orc, g.obr, opts, patient_ref, encounter_ref)
        for g in order_groups(msg, reuse_orc=True)
    ]
    txa = first(msg, "TXA")
    if txa is None or not patient_ref or not opts.emits("DocumentReference"):
        return
    tz = opts.timezone
    presentation = PRESENTATION.get(txa.code(3))
    contents = _contents(msg, presentation)
    if not contents:  # content is 1..*: the document's metadata only [ours]
        contents = [{"attachment": compact({"contentType": presentation,
                                            "title": txa.f(16).c(1) or None})}]  # fmt: skip
    master = ei(txa.f(12), opts)
    file_name = txa.f(16).c(1)
    identifiers = [derived(opts, "document-file", file_name)] if file_name else []
    key = master or (
        identifiers[0] if identifiers else derived(opts, "document", msg.get("MSH-10") or "", "TXA")
    )
    availability = txa.code(19)
    status = AVAILABILITY.get(availability, "current")
    created = dtm(txa.f(6).c(1), tz)
    confidentiality = txa.code(18)
    document = compact({
        "resourceType": "DocumentReference",
        "masterIdentifier": master,
        "identifier": identifiers or ([] if master else [key]),
        "status": status,
        "_status": {"extension": [{"url": ALTERNATE_CODES, "valueCodeableConcept":
                    coded(vocab.V2 + "0275", availability)}]}
        if availability in ("CA", "OB", "UN") else None,
        "docStatus": DOC_STATUS.get(txa.code(17)),
        "type": cwe(txa.f(2), opts, vocab.V2 + "0270"),
        "subject": {"reference": patient_ref},
        "date": created if created and "T" in created else None,  # an instant
        "author": [a for a in practitioners(bundle, txa.reps(9), opts) if a.get("reference")],
        "authenticator": next((a for a in practitioners(bundle, txa.reps(10), opts)
                               if a.get("reference")), None),
        "description": txa.f(25).text or None,
        "securityLabel": [coded(vocab.V2 + "0272", confidentiality,
                                CONFIDENTIALITY[confidentiality])]
        if confidentiality in CONFIDENTIALITY else [],
        "content": contents,
        "context": compact({
            "encounter": [{"reference": encounter_ref}] if encounter_ref else [],
            "related": [{"reference": r} for r in orders if r],
        }),
    })  # fmt: skip
    search = identifier_query(key)
    bundle.add(document, "doc|" + search, search)


__all__ = ["convert_mdm"]
