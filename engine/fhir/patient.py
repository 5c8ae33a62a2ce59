"""PID (+ PD1) -> Patient, for every message type: the guide's PID[Patient] and PD1[Patient]
maps. Choices where the guide is silent are marked "[ours]"."""

from __future__ import annotations

import re

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, derived, identifier_query, sender_system, slug
from engine.fhir.datatypes import V2, coded, compact, cwe, cx, dtm, xad, xpn_names, xtn
from engine.fhir.options import ConvertOptions
from engine.fhir.people import add_practitioner, xon_organization
from engine.fhir.segments import Seg
from engine.hl7.message import Message

EXT = "http://hl7.org/fhir/StructureDefinition/"
BIRTH_TIME = EXT + "patient-birthTime"
MOTHERS_MAIDEN_NAME = EXT + "patient-mothersMaidenName"
US_SSN = "http://hl7.org/fhir/sid/us-ssn"
BCP47 = "urn:ietf:bcp:47"
V3_NULL_FLAVOR = "http://terminology.hl7.org/CodeSystem/v3-NullFlavor"
# v3 MaritalStatus displays (vocab.MARITAL gives the code)
_MARITAL_DISPLAY = {
    "A": "Annulled", "C": "Common Law", "D": "Divorced", "I": "Interlocutory",
    "L": "Legally Separated", "M": "Married", "P": "Polygamous", "S": "Never Married",
    "T": "Domestic partner", "U": "unmarried", "W": "Widowed",
}  # fmt: skip
_LANGUAGE_TAG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{1,8})*$")


def adt_event(msg: Message) -> str:
    """The ADT trigger event (MSH-9.2, else EVN-1), or "" for other message types."""
    if (msg.get("MSH-9.1") or "").strip().upper() != "ADT":
        return ""
    event = (msg.get("MSH-9.2") or "").strip()
    if not event and msg.segment_indexes("EVN"):
        event = Seg(msg, msg.segment_indexes("EVN")[0]).code(1)
    return event.upper()


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


def language(f: V2, opts: ConvertOptions) -> dict | None:
    """A language CWE: coded as given; a bare BCP-47 tag ("en") as urn:ietf:bcp:47; a bare
    word ("ENGLISH") as text only, not a code claimed from some system [ours]."""
    if not f:
        return None
    if f.c(3) or f.c(4):
        return cwe(f, opts)
    code = f.c(1)
    if _LANGUAGE_TAG.match(code):
        return compact({"coding": [{"system": BCP47, "code": code}], "text": f.c(2)})
    return {"text": f.c(2) or code}


def _driver_license(f: V2, opts: ConvertOptions) -> dict | None:
    """PID-20 (DLN[Identifier]): .1 value, type DL, .2 issuing state as the system
    (``local_system/id/drivers-license/<state>`` [ours: the guide gives no URI]), .3 the end
    of its period. A sender writing a CX there (.4 authority, .5 type) is read as a CX."""
    if not f.c(1):
        return None
    if f.c(4) or f.c(5):
        identifier = cx(f, opts, opts.timezone)
        identifier.setdefault("type", coded(vocab.V2 + "0203", "DL"))
        return identifier
    base = opts.local_system.rstrip("/")
    state = f.c(2)
    system = f"{base}/id/drivers-license/{slug(state)}" if state else None
    return compact({
        "type": coded(vocab.V2 + "0203", "DL"),
        "system": system or sender_system(opts, "drivers-license"),
        "value": f.c(1),
        "period": {"end": dtm(f.c(3), opts.timezone, date_only=True)} if f.c(3) else None,
    })  # fmt: skip


def patient_identifiers(pid: Seg, opts: ConvertOptions) -> tuple[list, dict | None]:
    """PID-2, PID-3, PID-4, PID-19 (SSN), PID-20 (driver's licence); and the key: the first
    PID-3 identifier whose assigning authority is named, else the first PID-3."""
    tz = opts.timezone
    pid3 = [(f, cx(f, opts, tz)) for f in pid.reps(3)]
    key = next((i for f, i in pid3 if i and f.c(4)), None) or next((i for _, i in pid3 if i), None)
    others = [cx(f, opts, tz) for f in pid.reps(2) + pid.reps(4)]
    ids = [i for _, i in pid3 if i] + [i for i in others if i]
    ssn = pid.f(19).c(1)
    if ssn:
        ids.append({"type": coded(vocab.V2 + "0203", "SS"), "system": US_SSN, "value": ssn})
    dl = _driver_license(pid.f(20), opts)
    if dl:
        ids.append(dl)
    return _dedupe(ids, lambda i: (i.get("system"), i["value"])), key


def _addresses(pid: Seg, tz) -> list[dict]:
    """PID-11, and PID-12 county per the guide's four PID-12 rows: the district of the one
    address without an XAD.9, else an address of its own."""
    addresses = [a for a in (xad(f, tz) for f in pid.reps(11)) if a]
    county = pid.f(12).c(1)
    if county:
        if len(addresses) == 1 and not addresses[0].get("district"):
            addresses[0]["district"] = county
        elif not addresses or addresses[-1].get("district") != county:
            addresses.append({"district": county})
    return addresses


def _extensions(pid: Seg, opts: ConvertOptions) -> list[dict]:
    """PID-6 mother's maiden name, -17 religion, -23 birth place, -26/-39 citizenship, -28
    nationality, -35/-36 animal (the guide's extension rows)."""
    out = []
    maiden = pid.f(6)
    if maiden.s(1, 1) or maiden.c(1):
        out.append({"url": MOTHERS_MAIDEN_NAME, "valueString": maiden.s(1, 1) or maiden.c(1)})
    if religion := cwe(pid.f(17), opts, vocab.V2 + "0006"):
        out.append({"url": EXT + "patient-religion", "valueCodeableConcept": religion})
    if pid.f(23).text:
        out.append({"url": EXT + "patient-birthPlace", "valueAddress": {"text": pid.f(23).text}})
    for n in (26, 39):
        for f in pid.reps(n):
            if code := cwe(f, opts):
                out.append(
                    {
                        "url": EXT + "patient-citizenship",
                        "extension": [{"url": "code", "valueCodeableConcept": code}],
                    }
                )
    if nationality := cwe(pid.f(28), opts):
        out.append(
            {
                "url": EXT + "patient-nationality",
                "extension": [{"url": "code", "valueCodeableConcept": nationality}],
            }
        )
    animal = [
        {"url": part, "valueCodeableConcept": c}
        for part, n in (("species", 35), ("breed", 36))
        if (c := cwe(pid.f(n), opts))
    ]
    if animal:
        out.append({"url": EXT + "patient-animal", "extension": animal})
    return out  # fmt: skip


def build_patient(bundle: TransactionBundle, msg: Message, opts: ConvertOptions, pid: Seg,
                  pd1: Seg | None = None) -> tuple[dict, dict | None]:  # fmt: skip
    """The Patient from one PID (and the PD1 after it), and the identifier to key it on."""
    tz = opts.timezone
    identifiers, key = patient_identifiers(pid, opts)
    patient: dict = {"resourceType": "Patient"}
    extensions = _extensions(pid, opts)
    patient["identifier"] = identifiers
    names = xpn_names(pid.reps(5) + pid.reps(9), tz)
    patient["name"] = _dedupe(names, repr)  # PID-9 often repeats PID-5
    patient["telecom"] = [t for t in (
        [xtn(f, "home", tz) for f in pid.reps(13)] + [xtn(f, "work", tz) for f in pid.reps(14)]
        + [xtn(f, None, tz) for f in pid.reps(40)]) if t]  # fmt: skip
    patient["gender"] = vocab.GENDER.get(pid.code(8))
    born = pid.f(7).c(1)
    patient["birthDate"] = dtm(born, tz, date_only=True)
    birth_time = dtm(born, tz) if patient["birthDate"] else None
    if birth_time and "T" in birth_time:
        patient["_birthDate"] = {"extension": [{"url": BIRTH_TIME, "valueDateTime": birth_time}]}
    died = dtm(pid.f(29).c(1), tz)
    if died:
        patient["deceasedDateTime"] = died
    else:
        patient["deceasedBoolean"] = {"Y": True, "N": False}.get(pid.code(30))
    patient["address"] = _addresses(pid, tz)
    patient["maritalStatus"] = _marital(pid.f(16), opts)
    multiple = pid.f(25).c(1)
    if multiple.isdigit():  # PID-25 -> multipleBirthInteger (the row has no condition)
        patient["multipleBirthInteger"] = int(multiple)
    else:
        patient["multipleBirthBoolean"] = {"Y": True, "N": False}.get(pid.code(24))
    languages = [language(f, opts) for f in pid.reps(15)]
    patient["communication"] = [{"language": lang} for lang in languages if lang]
    if pd1 is not None:
        _pd1(bundle, pd1, opts, patient, extensions)
    patient["extension"] = extensions
    return compact(patient), key


def _pd1(bundle, pd1: Seg, opts, patient: dict, extensions: list) -> None:
    """PD1[Patient]: -3 primary facility and -4 primary care provider as generalPractitioner,
    -6 handicap (patient-disability), -14 place of worship (patient-congregation)."""
    gps = [xon_organization(bundle, f, opts) for f in pd1.reps(3)]
    gps += [add_practitioner(bundle, f, opts) for f in pd1.reps(4)]
    patient["generalPractitioner"] = [g for g in gps if g]
    if handicap := cwe(pd1.f(6), opts, vocab.V2 + "0295"):
        extensions.append({"url": EXT + "patient-disability", "valueCodeableConcept": handicap})
    for f in pd1.reps(14):
        if f.c(1):
            extensions.append({"url": EXT + "patient-congregation", "valueString": f.c(1)})


def subject_key(identifier: dict) -> str:
    """The patient's key as a value for derived identifiers (``MRN@system``)."""
    return f"{identifier['value']}@{identifier['system']}"


def add_patient(bundle: TransactionBundle, msg: Message, opts: ConvertOptions,
                pid_pos: int | None = None) -> str | None:  # fmt: skip
    """PID -> Patient: a conditional update on the key identifier (``PUT
    Patient?identifier=sys|value``; an identifier without an authority is the sending
    facility's own, so it is scoped to it). A PID without any identifier gets one derived from
    the message (a new Patient per message, never a duplicate on re-post). Sets
    ``bundle.subject_key``; returns the reference, or None without a PID or when Patient is
    not emitted."""
    idx = msg.segment_indexes("PID")
    if not idx or not opts.emits("Patient"):
        return None
    pos = idx[0] if pid_pos is None else pid_pos
    pid = Seg(msg, pos)
    pd1 = Seg(msg, pos + 1) if msg.segments[pos + 1 : pos + 2] and msg.segments[
        pos + 1].startswith("PD1") else None  # fmt: skip
    patient, key = build_patient(bundle, msg, opts, pid, pd1)
    if key is None:
        key = derived(opts, "patient", msg.get("MSH-10") or "", f"PID-{pos}")
        patient.setdefault("identifier", []).append(key)
    if pid_pos is None:
        bundle.subject_key = subject_key(key)
    return bundle.add(patient, f"patient|{key['system']}|{key['value']}", identifier_query(key))
