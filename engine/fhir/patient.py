"""PID -> Patient and PV1/PV2 -> Encounter (+ Practitioner), for every message type.

The checklist is shared/fhir-mapping.md (from the HL7 V2-to-FHIR guide). Choices where the
guide is silent are marked "[ours]".
"""

from __future__ import annotations

import re
from urllib.parse import quote

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, search_for
from engine.fhir.datatypes import (
    V2,
    coded,
    compact,
    cwe,
    cx,
    dtm,
    identifier_system,
    period,
    xad,
    xpn,
    xtn,
)
from engine.fhir.options import ConvertOptions
from engine.hl7.message import Message

BIRTH_TIME = "http://hl7.org/fhir/StructureDefinition/patient-birthTime"
MOTHERS_MAIDEN_NAME = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
BCP47 = "urn:ietf:bcp:47"
V3_NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
ENCOUNTER_STATUS_BY_EVENT = {"A03": "finished", "A11": "cancelled", "A13": "in-progress"}
# v3 MaritalStatus displays (vocab.MARITAL gives the code)
_MARITAL_DISPLAY = {
    "A": "Annulled", "C": "Common Law", "D": "Divorced", "I": "Interlocutory",
    "L": "Legally Separated", "M": "Married", "P": "Polygamous", "S": "Never Married",
    "T": "Domestic partner", "U": "unmarried", "W": "Widowed",
}  # fmt: skip
_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")
_NULL = '""'  # HL7 "explicit null": treated as empty here (a PUT replaces the resource anyway)


# reading the message -------------------------------------------------------------------------
def _drop_nulls(raw: str, enc: str) -> str:
    if _NULL not in raw:
        return raw
    comps = []
    for comp in raw.split(enc[0]):
        subs = ["" if s.strip() == _NULL else s for s in comp.split(enc[3])]
        comps.append(enc[3].join(subs))
    return enc[0].join(comps)


def fields(msg: Message, path: str) -> list[V2]:
    """The non-empty repetitions at ``path`` (e.g. ``PID-3[*]``, ``NK1[2]-5[*]``) as V2
    views; ``""`` (explicit null) counts as empty."""
    out = []
    for raw in msg.iter_values(path, decode=False):
        f = V2(_drop_nulls(raw, msg.enc), msg.sep, msg.enc)
        if f:
            out.append(f)
    return out


def field(msg: Message, path: str) -> V2:
    """The first repetition at ``path`` (an empty view when absent or null)."""
    found = fields(msg, path)
    return found[0] if found else V2("", msg.sep, msg.enc)


def adt_event(msg: Message) -> str:
    """The ADT trigger event (MSH-9.2, else EVN-1), or "" for other message types."""
    if (msg.get("MSH-9.1") or "").strip().upper() != "ADT":
        return ""
    return ((msg.get("MSH-9.2") or "").strip() or field(msg, "EVN-1").c(1)).upper()


def ref(reference: str | None, display: str | None = None) -> dict | None:
    return compact({"reference": reference, "display": display}) or None


def concept(f: V2, opts: ConvertOptions, default_system: str | None = None) -> dict | None:
    """CWE -> CodeableConcept, except a bare free-text value (no system, contains blanks,
    e.g. "Emergency Contact 1") which becomes text only rather than a made-up code [ours]."""
    if f and not f.c(2) and not f.c(3) and not f.c(4) and re.search(r"\s", f.c(1)):
        return {"text": f.c(1)}
    return cwe(f, opts, default_system)


def _dedupe(items: list[dict], key) -> list[dict]:
    seen, out = set(), []
    for item in items:
        k = key(item)
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out


# Patient ----------------------------------------------------------------------------------
def _marital(f: V2, opts: ConvertOptions) -> dict | None:
    if not f:
        return None
    code = vocab.MARITAL.get(f.c(1))
    if code == "UNK":
        out = coded(V3_NULL_FLAVOR, "UNK", "unknown")
    elif code:
        out = coded(vocab.V3_MARITAL, code, _MARITAL_DISPLAY.get(code))
    else:
        return cwe(f, opts, vocab.V2 + "0002")
    if f.c(2):
        out["text"] = f.c(2)
    return out


def _language(f: V2, opts: ConvertOptions) -> dict | None:
    """PID-15: a coded language as given; a bare BCP-47 tag ("en") as urn:ietf:bcp:47; a
    bare word ("ENGLISH") as text only, not a code claimed from some system [ours]."""
    if not f:
        return None
    if f.c(3) or f.c(4):
        return cwe(f, opts)
    code = f.c(1)
    if _LANGUAGE_TAG.match(code):
        return compact({"coding": [{"system": BCP47, "code": code}], "text": f.c(2)})
    return {"text": f.c(2) or code}


def sender_system(msg: Message, opts: ConvertOptions) -> str:
    """The system for identifiers that name no assigning authority [ours]: they are the
    sending facility's own numbers, so they are scoped to it (MSH-4.1, else MSH-3.1). The same
    sender's re-post updates; another sender's 123 never matches this one's."""
    sender = msg.get("MSH-4.1") or msg.get("MSH-3.1") or "unknown"
    return f"{opts.local_system.rstrip('/')}/id/sender/{quote(sender, safe='')}"


def _scoped(identifier: dict | None, msg: Message, opts: ConvertOptions) -> dict | None:
    if identifier and not identifier.get("system"):
        identifier = {**identifier, "system": sender_system(msg, opts)}
    return identifier


def _patient_identifiers(msg: Message, pid: str, opts: ConvertOptions) -> tuple[list, dict]:
    tz = opts.timezone
    raw3 = [i for i in (cx(f, opts, tz) for f in fields(msg, f"{pid}-3[*]")) if i]
    # the key: an identifier whose assigning authority we know, else the sender-scoped first
    key = next((i for i in raw3 if i.get("system")), None)
    pid3 = [_scoped(i, msg, opts) for i in raw3]
    if key is None and pid3:
        key = pid3[0]
    others = [cx(f, opts, tz) for f in fields(msg, f"{pid}-2[*]") + fields(msg, f"{pid}-4[*]")]
    ids = pid3 + [i for i in others if i]
    ssn = field(msg, f"{pid}-19").c(1)
    if ssn:
        ids.append({"type": coded(vocab.V2 + "0203", "SS"), "system": US_SSN, "value": ssn})
    return _dedupe(ids, lambda i: (i.get("system"), i["value"])), key


def build_patient(msg: Message, opts: ConvertOptions, pid: str = "PID[1]") -> tuple[dict, dict]:
    """The Patient resource from one PID, and the identifier to key it on (or None)."""
    tz = opts.timezone
    identifiers, key = _patient_identifiers(msg, pid, opts)
    names = [xpn(f, tz) for f in fields(msg, f"{pid}-5[*]") + fields(msg, f"{pid}-9[*]")]
    patient: dict = {"resourceType": "Patient", "identifier": identifiers}
    patient["name"] = _dedupe([n for n in names if n], repr)  # PID-9 often repeats PID-5
    patient["gender"] = vocab.GENDER.get(field(msg, f"{pid}-8").c(1).upper())

    born = field(msg, f"{pid}-7").c(1)
    patient["birthDate"] = dtm(born, tz, date_only=True)
    birth_time = dtm(born, tz) if patient["birthDate"] else None
    if birth_time and "T" in birth_time:
        patient["_birthDate"] = {"extension": [{"url": BIRTH_TIME, "valueDateTime": birth_time}]}

    died = dtm(field(msg, f"{pid}-29").c(1), tz)
    if died:
        patient["deceasedDateTime"] = died
    else:
        flag = field(msg, f"{pid}-30").c(1).upper()
        patient["deceasedBoolean"] = {"Y": True, "N": False}.get(flag)

    addresses = [a for a in (xad(f) for f in fields(msg, f"{pid}-11[*]")) if a]
    county = field(msg, f"{pid}-12").c(1)
    if addresses and county and not addresses[0].get("district"):
        addresses[0]["district"] = county  # the county belongs to the primary address [ours]
    patient["address"] = addresses

    telecom = [xtn(f, "home") for f in fields(msg, f"{pid}-13[*]")]
    telecom += [xtn(f, "work") for f in fields(msg, f"{pid}-14[*]")]
    patient["telecom"] = [t for t in telecom if t]

    patient["maritalStatus"] = _marital(field(msg, f"{pid}-16"), opts)
    languages = [_language(f, opts) for f in fields(msg, f"{pid}-15[*]")]
    patient["communication"] = [{"language": lang} for lang in languages if lang]

    multiple = field(msg, f"{pid}-25").c(1)
    if multiple.isdigit() and int(multiple) > 0:
        patient["multipleBirthInteger"] = int(multiple)
    else:
        patient["multipleBirthBoolean"] = {"Y": True, "N": False}.get(
            field(msg, f"{pid}-24").c(1).upper()
        )
    maiden = field(msg, f"{pid}-6")
    maiden_name = maiden.s(1, 1) or maiden.c(1)
    if maiden_name:
        patient["extension"] = [{"url": MOTHERS_MAIDEN_NAME, "valueString": maiden_name}]
    return compact(patient), key


def add_patient(bundle: TransactionBundle, msg: Message, opts: ConvertOptions) -> str | None:
    """PID -> Patient: a conditional update on the first PID-3 identifier that has a system
    (``PUT Patient?identifier=sys|value``), a plain POST when none has one [ours: a value
    without a system would match any issuer's number and overwrite another patient].
    Returns the reference, or None without a PID or when Patient is not emitted."""
    if not msg.segment_indexes("PID") or not opts.emits("Patient"):
        return None
    patient, key = build_patient(msg, opts)
    return bundle.add(patient, key="patient", search=search_for(key))


# Practitioner ------------------------------------------------------------------------------
def xcn_name(f: V2) -> dict | None:
    """XCN .2 family, .3 given, .4 second given, .5 suffix, .6 prefix, .7 degree (suffix),
    .10 name type."""
    name = compact({
        "use": vocab.NAME_USE.get(f.c(10)),
        "family": f.s(2, 1) or f.c(2),
        "given": [g for g in (f.c(3), f.c(4)) if g],
        "prefix": [f.c(6)] if f.c(6) else [],
        "suffix": [s for s in (f.c(5), f.c(7)) if s],
    })  # fmt: skip
    return name if (name.get("family") or name.get("given")) else None


def _display(name: dict | None) -> str | None:
    if not name:
        return None
    return " ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
                    ).strip() or None  # fmt: skip


def xcn_identifier(f: V2, opts: ConvertOptions) -> dict | None:
    """XCN.1 with the system of the assigning authority XCN.9 (OID/UUID/URI, a configured
    namespace, else ``local_system/id/<namespace>``), else ``local_system/id/practitioner``
    [ours: staff numbers without an authority are the sender's own], type from XCN.13."""
    if not f.c(1):
        return None
    parts = f.raw.split(f.enc[0])
    authority = parts[8] if len(parts) > 8 else ""
    as_cx = V2(f.enc[0] * 3 + authority, f.sep, f.enc)  # the HD in CX.4's place
    type_code = f.c(13)
    system = identifier_system(as_cx, opts)
    if system is None and type_code == "NPI":  # no authority given: NPI has a canonical system
        system = "http://hl7.org/fhir/sid/us-npi"
    system = system or f"{opts.local_system.rstrip('/')}/id/practitioner"
    return compact({
        "system": system,
        "value": f.c(1),
        "type": coded(vocab.V2 + "0203", type_code) if type_code else None,
    })  # fmt: skip


def add_practitioner(bundle: TransactionBundle, f: V2, opts: ConvertOptions) -> dict | None:
    """XCN -> Practitioner (conditional create on its identifier); returns the Reference
    (only a display when Practitioner is not emitted), or None for an empty XCN."""
    if not f:
        return None
    identifier = xcn_identifier(f, opts)
    name = xcn_name(f)
    if not identifier and not name:
        return None
    if not opts.emits("Practitioner"):
        return ref(None, _display(name) or f.c(1))
    resource = compact({
        "resourceType": "Practitioner",
        "identifier": [identifier] if identifier else [],
        "name": [name] if name else [],
    })  # fmt: skip
    if identifier:
        key = f"{identifier['system']}|{identifier['value']}"
        url = bundle.add(resource, key=key, search=search_for(identifier), method="POST")
    else:  # a name only: one per message, a plain create
        url = bundle.add(resource, key="name|" + f.raw)
    return ref(url, _display(name))


# Encounter ---------------------------------------------------------------------------------
def _location_display(f: V2) -> str | None:
    """PL -> text: point of care, room, bed, facility, building, floor, description [ours]."""
    parts: list[str] = []
    for n in (1, 2, 3, 4, 7, 8, 9):
        value = f.c(n)
        if value and value not in parts:
            parts.append(value)
    return ", ".join(parts) or None


def _encounter_class(f: V2) -> dict:
    code = f.c(1).upper()
    if code in vocab.ENCOUNTER_CLASS:
        system, v3, display = vocab.ENCOUNTER_CLASS[code]
        return {"system": system, "code": v3, "display": display}
    if code:
        return compact({"system": vocab.V2 + "0004", "code": code, "display": f.c(2)})
    # class is 1..1: an empty PV1-2 is "unknown" [ours]
    return {"system": V3_NULL_FLAVOR, "code": "UNK", "display": "unknown"}


def encounter_status(msg: Message) -> str:
    """A03 finished, A11 cancelled, A13 in-progress (the guide's 0003 -> encounter-status
    map); otherwise PV1-45 valued -> finished, PV1-2 P planned, U unknown, else in-progress.
    A04 (guide: planned) and A08 (guide: unknown) follow PV1 [ours: a walk-in registration
    is under way, and an update must not blank a known status]."""
    by_event = ENCOUNTER_STATUS_BY_EVENT.get(adt_event(msg))
    if by_event:
        return by_event
    if field(msg, "PV1-45").c(1):
        return "finished"
    return {"P": "planned", "U": "unknown"}.get(field(msg, "PV1-2").c(1).upper(), "in-progress")


def add_encounter(
    bundle: TransactionBundle, msg: Message, opts: ConvertOptions, patient_ref: str | None
) -> str | None:
    """PV1 (+PV2) -> Encounter: a conditional update on PV1-19 (visit number, type VN) when
    it has a system, else a plain POST. Returns the reference, or None without PV1 or when
    Encounter is not emitted."""
    if not msg.segment_indexes("PV1") or not opts.emits("Encounter"):
        return None
    tz = opts.timezone
    status = encounter_status(msg)
    cls = field(msg, "PV1-2")
    cancel_discharge = adt_event(msg) == "A13"

    identifier = _scoped(cx(field(msg, "PV1-19"), opts, tz), msg, opts)
    if identifier:
        identifier["type"] = coded(vocab.V2 + "0203", "VN")

    locations = []
    current = {"finished": "completed", "cancelled": None, "planned": "planned"}.get(
        status, "planned" if cls.c(1).upper() == "P" else "active"
    )
    for path, loc_status in (("PV1-3", current), ("PV1-6", "completed")):
        text = _location_display(field(msg, path))
        if text:
            locations.append(compact({"location": {"display": text}, "status": loc_status}))

    participants = []
    for n in (7, 8, 9, 17):
        code, display = vocab.PARTICIPANT[n]
        for f in fields(msg, f"PV1-{n}[*]"):
            individual = add_practitioner(bundle, f, opts)
            if individual:
                participants.append({
                    "type": [coded(vocab.V3_PARTICIPATION, code, display)],
                    "individual": individual,
                })  # fmt: skip

    end = "" if cancel_discharge else field(msg, "PV1-45").c(1)
    disposition = None if cancel_discharge else cwe(field(msg, "PV1-36"), opts, vocab.V2 + "0112")
    reasons = [cwe(f, opts) for f in fields(msg, "PV2-3[*]")]
    encounter = compact({
        "resourceType": "Encounter",
        "identifier": [identifier] if identifier else [],
        "status": status,
        "class": _encounter_class(cls),
        "serviceType": cwe(field(msg, "PV1-10"), opts, vocab.V2 + "0069"),
        "subject": ref(patient_ref),
        "participant": participants,
        "period": period(field(msg, "PV1-44").c(1), end, tz),
        "reasonCode": [r for r in reasons if r],
        "hospitalization": compact({"dischargeDisposition": disposition}),
        "location": locations,
    })  # fmt: skip
    search = search_for(identifier) if identifier and identifier.get("system") else None
    return bundle.add(encounter, key="encounter", search=search)  # (a visit number is scoped)
