"""OBX -> Observation: the guide's OBX[Observation] map (values in obx_values.py) and
NTE[Observation].

Every Observation is a conditional update (PUT) on its business identifier (OBX-21, else one
the caller derives, e.g. filler number + OBX-3): a preliminary result is replaced by its final
one, and a correction (OBX-11 C) updates the stored result instead of being ignored.

Choices where the guide is silent are marked [ours]:
- a repeating OBX-5 of a non-text type (NM, CWE, SN, ...) gives one ``component`` per
  repetition, each with the OBX-3 code and no top-level value (the guide: "components if
  OBX-5 repeats"); ST/TX/FT repetitions are joined with new lines into one valueString;
- OBX-11 empty or unknown: ``unknown`` (status is 1..1); OBX-11 X also gets
  dataAbsentReason ``not-performed`` and no value;
- OBX-16 performers are Practitioners (the guide goes through a PractitionerRole coded
  "responsibleObserver"; R4 lets the performer be the Practitioner itself).
"""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, derived, identifier_query
from engine.fhir.datatypes import cwe, dtm, ei, ei_sub
from engine.fhir.obx_values import (
    attachment,
    interpretation,
    number,
    time_of_day,
    unit,
    value,
)
from engine.fhir.options import ConvertOptions
from engine.fhir.people import (
    add_practitioner,
    add_practitioner_role,
    cwe_organization,
    practitioners,
    xon_organization,
)
from engine.fhir.segments import Seg, formatted_text, notes_after, seg_at
from engine.hl7.message import Message

DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
EXT = "http://hl7.org/fhir/StructureDefinition/"
SUB_ID = EXT + "observation-v2-subid"
ALTERNATE_CODES = EXT + "alternate-codes"
ANALYSIS_TIME = EXT + "observation-analysis-date-time"
NATURE_OF_ABNORMAL = EXT + "observation-nature-of-abnormal-test"
# OBX-5 ED/RP rows: the R5 Observation.value[x] Attachment as a cross-version extension (the
# guide writes https://...; FHIR canonical URLs are http)
VALUE_ATTACHMENT = (
    "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.valueAttachment"
)
TEXT_TYPES = frozenset({"ST", "TX", "FT"})
ATTACHMENT_TYPES = frozenset({"ED", "RP"})
MEDICAL_DIRECTOR = {"coding": [{"system": vocab.V2 + "0912", "code": "MDIR",
                                "display": "Medical Director"}]}  # fmt: skip


def _absent(code: str) -> dict:
    return {"coding": [{"system": DATA_ABSENT, "code": code}]}


def _values(res: dict, msg: Message, obx: Seg, vtype: str, code: dict, opts) -> None:
    if vtype in ATTACHMENT_TYPES:
        extensions = [{"url": VALUE_ATTACHMENT, "valueAttachment": a}
                      for a in (attachment(vtype, r) for r in obx.reps(5)) if a]  # fmt: skip
        if extensions:
            res.setdefault("extension", []).extend(extensions)
    elif vtype in TEXT_TYPES:
        esc = msg.enc[2]
        text = "\n".join(formatted_text(r.text, esc) for r in obx.reps(5)).strip()
        if text:
            res["valueString"] = text
    else:
        reps = obx.reps(5)
        if not reps:
            return
        u = obx.f(6)
        units = dict(unit(u.raw, u.sep, u.enc, opts.local_system)) if u else {}
        if len(reps) == 1:
            found = value(vtype, reps[0], units, opts)
            if found:
                res[found[0]] = found[1]
            return
        components = []
        for r in reps:
            found = value(vtype, r, units, opts)
            if found:
                components.append({"code": code, found[0]: found[1]})
        if components:
            res["component"] = components


def _performers(bundle, obx: Seg, opts) -> list[dict]:
    """OBX-16 responsible observers; OBX-15 producer; OBX-23/-24 performing organisation
    with its address, through a PractitionerRole coded MDIR when OBX-25 names the medical
    director (the OBX-23..25 rows)."""
    out = practitioners(bundle, obx.reps(16), opts) if obx.raw(16) else []
    if obx.raw(15) and (producer := cwe_organization(bundle, obx.f(15), opts)):
        out.append(producer)
    if obx.raw(23):
        org = xon_organization(bundle, obx.f(23), opts, obx.reps(24))
        director = add_practitioner(bundle, obx.f(25), opts) if obx.raw(25) else None
        if director:
            out.append(add_practitioner_role(bundle, opts, director, MEDICAL_DIRECTOR, org))
        elif org:
            out.append(org)
    return [p for p in out if p]


def add_observation(
    bundle: TransactionBundle,
    msg: Message,
    obx_index: int,
    opts: ConvertOptions,
    subject: str | None,
    encounter: str | None,
    key: str,
    specimen: str | None = None,
    *,
    default_effective: str | None = None,
    identifier: dict | None = None,
    part_of: str | None = None,
) -> str | None:
    """OBX (``obx_index``: 1-based occurrence in the message) -> Observation.

    ``default_effective`` is a FHIR dateTime (e.g. the converted OBR-7) used when OBX-14 is
    empty; ``identifier`` a caller-made business identifier (e.g. filler number + code);
    without either it and OBX-21, one is derived from the message (MSH-10 and the OBX set
    ID). Returns the reference, or None when Observation is not emitted or there is no such
    OBX."""
    if not opts.emits("Observation"):
        return None
    at = seg_at(msg, "OBX", obx_index)
    if at is None:
        return None
    pos, obx = at
    tz = opts.timezone
    fields = obx.fields
    if len(fields) < 34:
        fields = fields + [""] * (34 - len(fields))
    status_code = obx.code(11)
    code = cwe(obx.f(3), opts) or {"text": "unknown"}
    res: dict = {"resourceType": "Observation"}
    if fields[4] and (sub_id := obx.f(4).c(1)):
        res["extension"] = [{"url": SUB_ID, "extension": [
            {"url": "original-sub-identifier", "valueString": sub_id}]}]  # fmt: skip
    own = ei(obx.f(21), opts, "FILL") if fields[21] else None  # OBX-21 row: type FILL
    ids = [i for i in (own, identifier) if i] or [
        derived(opts, "observation", msg.get("MSH-10") or "", f"OBX-{obx_index}")
    ]
    res["identifier"] = ids
    if part_of:
        res["partOf"] = [{"reference": part_of}]
    res["status"] = vocab.OBSERVATION_STATUS.get(status_code, "unknown")
    if status_code == "X":  # OBX-11 X rows: the v2 code kept as an alternate code
        res["_status"] = {"extension": [{"url": ALTERNATE_CODES, "valueCodeableConcept": {
            "coding": [{"system": vocab.V2 + "0085", "code": "X"}]}}]}  # fmt: skip
    if fields[29]:  # OBX-29 observation type -> category (table 0936)
        res["category"] = [{"coding": [{"system": vocab.V2 + "0936", "code": obx.code(29)}]}]
    res["code"] = code
    if subject:
        res["subject"] = {"reference": subject}
    if encounter:
        res["encounter"] = {"reference": encounter}
    effective = (fields[14] and dtm(obx.f(14).c(1), tz)) or default_effective
    if effective:
        res["effectiveDateTime"] = effective
    if fields[15] or fields[16] or fields[23]:
        performers = _performers(bundle, obx, opts)
        if performers:
            res["performer"] = performers
    if status_code == "X":
        res["dataAbsentReason"] = _absent("not-performed")
    else:
        _values(res, msg, obx, obx.code(2), code, opts)
        if status_code == "N" and not any(k.startswith("value") for k in res):
            res["dataAbsentReason"] = _absent("not-asked")  # OBX-11 N row
    if fields[8] and (found := interpretation(obx.reps(8))):
        res["interpretation"] = found
    notes = notes_after(msg, pos, opts, bundle)
    if notes:
        res["note"] = notes
    if specimen:
        res["specimen"] = {"reference": specimen}
    if fields[7] and (ref_range := obx.f(7).text):
        res["referenceRange"] = [{"text": ref_range}]
    if fields[10] or fields[17] or fields[18] or fields[19] or fields[20] or fields[33]:
        _less_common(res, obx, opts)
    return bundle.add(res, key, identifier_query(ids[0]))


def _less_common(res: dict, obx: Seg, opts: ConvertOptions) -> None:
    """OBX-10 nature of abnormal test, -17 method, -18 device, -19 analysis time, -20 body
    site, -33 specimen (a logical reference when no SPM gave one)."""
    extensions = [
        {"url": NATURE_OF_ABNORMAL, "valueCodeableConcept": c}
        for c in (cwe(f, opts, vocab.V2 + "0080") for f in obx.reps(10))
        if c
    ]
    if analysed := dtm(obx.f(19).c(1), opts.timezone):
        extensions.append({"url": ANALYSIS_TIME, "valueDateTime": analysed})
    if extensions:
        res.setdefault("extension", []).extend(extensions)
    if body_site := cwe(obx.f(20), opts):
        res["bodySite"] = body_site
    if method := cwe(obx.f(17), opts):
        res["method"] = method
    if "specimen" not in res and (spec_id := ei_sub(obx.f(33), 1, opts, "PLAC")):
        res["specimen"] = {"identifier": spec_id}  # OBX-33: a logical reference
    if device := ei(obx.f(18), opts):
        res["device"] = {"identifier": device}  # OBX-18: Device.identifier


__all__ = ["add_observation", "number", "time_of_day"]
