"""OBX -> Observation and SPM -> Specimen (checklist: shared/fhir-mapping.md).

Choices where the guide is silent are marked [ours]:
- a repeating OBX-5 of a non-text type (NM, CWE, SN, ...) gives one ``component`` per
  repetition, each with the OBX-3 code and no top-level value (the guide: "components if
  OBX-5 repeats"); ST/TX/FT repetitions are joined with new lines into one valueString;
- NM that is not a number (``<0.10``, ``POS``): a comparator Quantity when it reads as one,
  else valueString (the value is never dropped);
- ED/RP: no value, dataAbsentReason ``unsupported``; OBX-11 X: ``cancelled`` with
  dataAbsentReason ``not-performed``; OBX-11 empty or unknown: ``unknown`` (status is 1..1);
- unknown OBX-2 types: valueString of the non-empty components joined by blanks.
"""

from __future__ import annotations

from functools import lru_cache

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle
from engine.fhir.datatypes import V2, cwe, dtm, period
from engine.fhir.options import ConvertOptions
from engine.fhir.orders import (
    Seg,
    ei,
    ei_sub,
    formatted_text,
    identifier_search,
    notes_after,
    seg_at,
)
from engine.fhir.patient import add_practitioner
from engine.hl7.message import Message

DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
SUB_ID = "http://hl7.org/fhir/StructureDefinition/observation-v2-subid"
TEXT_TYPES = frozenset({"ST", "TX", "FT"})
CODED_TYPES = frozenset({"CWE", "CE", "CNE", "CF"})
DATE_TYPES = frozenset({"DT", "DTM", "TS"})
COMPARATORS = frozenset({"<", "<=", ">=", ">"})
_ASCII_DIGITS = frozenset("0123456789")


# values ------------------------------------------------------------------------------------
def number(text: str) -> int | float | None:
    """A v2 NM as a JSON number (int when it has no decimal point), or None."""
    s = text.strip()
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body:
        return None
    if _ASCII_DIGITS.issuperset(body):
        return int(s)
    whole, dot, frac = body.partition(".")
    if dot and (whole or frac) and _ASCII_DIGITS.issuperset(whole + frac):
        return float(s)
    return None


def _split_comparator(text: str) -> tuple[str, str]:
    s = text.strip()
    n = 2 if s[:2] in ("<=", ">=", "<>") else 1 if s[:1] in ("<", ">", "=") else 0
    return s[:n], s[n:].strip()


def _quantity(value, unit: dict, comparator: str = "") -> dict:
    q = {"value": value}
    if comparator:
        q["comparator"] = comparator
    q.update(unit)
    return q


def time_of_day(text: str) -> str | None:
    """TM HH[MM[SS[.S+]]][+/-ZZZZ] -> FHIR time HH:MM:SS[.S] (FHIR time has no offset)."""
    s = text.strip()
    for sign in ("+", "-"):
        cut = s.find(sign)
        if cut >= 0:
            s = s[:cut]
    digits, _, frac = s.partition(".")
    if len(digits) not in (2, 4, 6) or not _ASCII_DIGITS.issuperset(digits):
        return None
    hh, mm, ss = digits[0:2], digits[2:4] or "00", digits[4:6] or "00"
    if int(hh) > 23 or int(mm) > 59 or int(ss) > 59:
        return None
    out = f"{hh}:{mm}:{ss}"
    if frac and _ASCII_DIGITS.issuperset(frac):
        out += "." + frac
    return out


def _sn(f: V2, unit: dict) -> tuple[str, object] | None:
    """SN: comparator + number -> Quantity; "-" -> Range; ":" or "/" -> Ratio; otherwise
    (``2^+``, ``<>``) valueString. A comparator written into .1 (``<0.10``) is read too."""
    comp, n1, sep, n2 = f.c(1), f.c(2), f.c(3), f.c(4)
    if comp and not n1 and not sep and not n2:
        comp, n1 = _split_comparator(comp)
    a, b = number(n1), number(n2)
    if sep == "-" and (a is not None or b is not None) and not comp:
        rng = {}
        if a is not None:
            rng["low"] = _quantity(a, unit)
        if b is not None:
            rng["high"] = _quantity(b, unit)
        return "valueRange", rng
    if sep in (":", "/") and a is not None and b is not None and not comp:
        return "valueRatio", {"numerator": {"value": a}, "denominator": {"value": b}}
    if not sep and not n2 and a is not None:
        if comp in COMPARATORS:
            return "valueQuantity", _quantity(a, unit, comp)
        if comp in ("", "="):
            return "valueQuantity", _quantity(a, unit)
    text = "".join((comp, n1, sep, n2)).strip()
    return ("valueString", text) if text else None


def _value(vtype: str, f: V2, unit: dict, opts: ConvertOptions) -> tuple[str, object] | None:
    """One OBX-5 repetition (not a text type) -> (value[x] name, value)."""
    if vtype == "NM":
        text = f.c(1)
        n = number(text)
        if n is not None:
            return "valueQuantity", _quantity(n, unit)
        comp, rest = _split_comparator(text)
        n = number(rest)
        if n is not None and comp in COMPARATORS:
            return "valueQuantity", _quantity(n, unit, comp)
        return ("valueString", text) if text else None
    if vtype in CODED_TYPES:
        concept = cwe(f, opts)
        return ("valueCodeableConcept", concept) if concept else None
    if vtype == "SN":
        return _sn(f, unit)
    if vtype in DATE_TYPES:
        when = _dtm(f.c(1), opts.timezone)
        return ("valueDateTime", when) if when else None
    if vtype == "TM":
        t = time_of_day(f.c(1))
        return ("valueTime", t) if t else None
    if vtype == "NR":
        low, high = number(f.c(1)), number(f.c(2))
        rng = {}
        if low is not None:
            rng["low"] = _quantity(low, unit)
        if high is not None:
            rng["high"] = _quantity(high, unit)
        return ("valueRange", rng) if rng else None
    parts = [p for p in (f.c(i) for i in range(1, f.raw.count(f.enc[0]) + 2)) if p]
    return ("valueString", " ".join(parts)) if parts else None


@lru_cache(maxsize=1024)
def _unit(raw: str, sep: str, enc: str, local_system: str) -> tuple[tuple[str, str], ...]:
    """OBX-6 -> Quantity unit (.2, else .1); code (.1) and system only when .3 names one
    (UCUM -> http://unitsofmeasure.org, other names via the vocabulary, local ones under the
    channel's URI), since a Quantity.system needs a code. Cached: units repeat."""
    f = V2(raw, sep, enc)
    code, text, name = f.c(1), f.c(2), f.c(3)
    out = []
    if text or code:
        out.append(("unit", text or code))
    if code and name:
        system = vocab.system_uri(name, local_system)
        if system:
            out += [("system", system), ("code", code)]
    return tuple(out)


_dtm = lru_cache(maxsize=1024)(dtm)  # results are strings; OBX-14 repeats within a message


def _absent(code: str) -> dict:
    return {"coding": [{"system": DATA_ABSENT, "code": code}]}


def _interpretation(reps: list[V2]) -> list[dict]:
    """OBX-8 (0078) -> v3-ObservationInterpretation (same codes); an unknown code is kept
    in v2-0078."""
    out = []
    for r in reps:
        code = r.c(1)
        if not code:
            continue
        v3 = vocab.INTERPRETATION.get(code) or vocab.INTERPRETATION.get(code.upper())
        coding = {"system": vocab.V3_INTERPRETATION if v3 else vocab.V2 + "0078",
                  "code": v3 or code}  # fmt: skip
        if r.c(2):
            coding["display"] = r.c(2)
        out.append({"coding": [coding]})
    return out


# Observation -----------------------------------------------------------------------------
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
) -> str | None:
    """OBX (``obx_index``: 1-based occurrence in the message) -> Observation.

    ``default_effective`` is a FHIR dateTime (e.g. the converted OBR-7) used when OBX-14 is
    empty; ``identifier`` a caller-made business identifier (e.g. filler number + code).
    With OBX-21 or ``identifier`` the entry is a conditional create (ifNoneExist on the
    OBX-21 one first), else a plain POST. Returns the reference, or None when Observation is
    not emitted or there is no such OBX.
    """
    if not opts.emits("Observation"):
        return None
    at = seg_at(msg, "OBX", obx_index)
    if at is None:
        return None
    pos, obx = at
    tz = opts.timezone
    vtype = obx.code(2)
    code = cwe(obx.f(3), opts) or {"text": "unknown"}
    status_code = obx.code(11)
    status = vocab.OBSERVATION_STATUS.get(status_code, "unknown")

    res: dict = {"resourceType": "Observation"}
    sub_id = obx.f(4).c(1) if obx.raw(4) else ""
    if sub_id:
        res["extension"] = [{"url": SUB_ID, "extension": [
            {"url": "original-sub-identifier", "valueString": sub_id}]}]  # fmt: skip
    own = ei(obx.f(21), opts) if obx.raw(21) else None
    ids = [i for i in (own, identifier) if i]
    if ids:
        res["identifier"] = ids
    res["status"] = status
    res["code"] = code
    if subject:
        res["subject"] = {"reference": subject}
    if encounter:
        res["encounter"] = {"reference": encounter}
    effective = _dtm(obx.f(14).c(1), tz) if obx.raw(14) else None
    effective = effective or default_effective
    if effective:
        res["effectiveDateTime"] = effective
    if obx.raw(16):
        performers = [p for p in (add_practitioner(bundle, r, opts) for r in obx.reps(16)) if p]
        if performers:
            res["performer"] = performers

    if status_code == "X":
        res["dataAbsentReason"] = _absent("not-performed")
    elif vtype in ("ED", "RP"):
        if obx.raw(5):
            res["dataAbsentReason"] = _absent("unsupported")
    elif vtype in TEXT_TYPES:
        esc = msg.enc[2]
        text = "\n".join(formatted_text(r.text, esc) for r in obx.reps(5)).strip()
        if text:
            res["valueString"] = text
    else:
        reps = obx.reps(5)
        if reps:
            u = obx.f(6)
            unit = dict(_unit(u.raw, u.sep, u.enc, opts.local_system)) if u else {}
            if len(reps) == 1:
                value = _value(vtype, reps[0], unit, opts)
                if value:
                    res[value[0]] = value[1]
            else:
                components = []
                for r in reps:
                    value = _value(vtype, r, unit, opts)
                    if value:
                        components.append({"code": code, value[0]: value[1]})
                if components:
                    res["component"] = components

    if obx.raw(8) and (interpretation := _interpretation(obx.reps(8))):
        res["interpretation"] = interpretation
    notes = notes_after(msg, pos, opts)
    if notes:
        res["note"] = notes
    if obx.raw(20) and (body_site := cwe(obx.f(20), opts)):
        res["bodySite"] = body_site
    if obx.raw(17) and (method := cwe(obx.f(17), opts)):
        res["method"] = method
    if specimen:
        res["specimen"] = {"reference": specimen}
    if obx.raw(7) and (ref_range := obx.f(7).text):
        res["referenceRange"] = [{"text": ref_range}]

    search = identifier_search(ids[0]) if ids else None
    return bundle.add(res, key, search=search, method="POST")


# Specimen --------------------------------------------------------------------------------
def add_specimen(
    bundle: TransactionBundle, msg: Message, spm_pos: int, opts: ConvertOptions,
    subject: str | None,
) -> str | None:  # fmt: skip
    """SPM (segment position) -> Specimen: SPM-2 identifiers (.1 placer, .2 filler EI as
    subcomponents), -4 type, -7 collection.method, -8 collection.bodySite, -17 collected
    (dateTime, a Period when .2 is valued), -18 receivedTime, -14 note. A conditional update
    on the first identifier, else a plain POST."""
    if not opts.emits("Specimen"):
        return None
    spm = Seg(msg, spm_pos)
    tz = opts.timezone
    ids_field = spm.f(2)
    ids = [i for i in (ei_sub(ids_field, 1, opts, "PLAC"), ei_sub(ids_field, 2, opts, "FILL"))
           if i]  # fmt: skip
    res: dict = {"resourceType": "Specimen"}
    if ids:
        res["identifier"] = ids
    kind = cwe(spm.f(4), opts)
    if kind:
        res["type"] = kind
    if subject:
        res["subject"] = {"reference": subject}
    received = dtm(spm.f(18).c(1), tz)
    if received:
        res["receivedTime"] = received
    collection: dict = {}
    collected = spm.f(17)
    if collected.c(2):
        when = period(collected.c(1), collected.c(2), tz)
        if when:
            collection["collectedPeriod"] = when
    elif collected_at := dtm(collected.c(1), tz):
        collection["collectedDateTime"] = collected_at
    method = cwe(spm.f(7), opts)
    if method:
        collection["method"] = method
    site = cwe(spm.f(8), opts)
    if site:
        collection["bodySite"] = site
    if collection:
        res["collection"] = collection
    description = spm.f(14).text
    if description:
        res["note"] = [{"text": description}]
    search = identifier_search(ids[0]) if ids else None
    key = f"spm|{search}" if search else f"spm|{spm_pos}"
    return bundle.add(res, key, search=search, method="PUT")


__all__ = ["add_observation", "add_specimen", "number", "time_of_day"]
