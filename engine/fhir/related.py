"""NK1 -> RelatedPerson (or Patient.contact for an organisation), PID-21 -> the mother as a
RelatedPerson: the guide's NK1[RelatedPerson] map and CX[RelatedPerson-Mother], with the
Relationship (0063) and ContactRole (0131) vocabulary maps.

A relationship or contact role is coded only when its code is one of the table's: a value
that is not (free text, a local code with no coding system) becomes ``text``, never a coding
that claims v2-0063 or v2-0131 [ours]."""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import derived, identifier_query
from engine.fhir.datatypes import V2, coded, compact, cwe, cx, dtm, period, xad, xpn_names, xtn
from engine.fhir.patient import US_SSN, language
from engine.fhir.people import ref, xon_organization
from engine.fhir.segments import Seg, segs

# NK1 that name an organisation go to Patient.contact (ADT_A01 message map, NK1 rows)
ORGANIZATION_RELATIONSHIP = frozenset({"EMR"})
ORGANIZATION_ROLE = frozenset({"E", "F", "I", "S"})


def _table_coding(f: V2, table: str, known) -> tuple[str, bool]:
    """(code, in the table): the code and whether it is one of ``known`` with no coding
    system, or with the table's own (``HL7nnnn``), named."""
    code, system = f.c(1), f.c(3).upper()
    return code, bool(code) and code.upper() in known and system in ("", f"HL7{table}")


def relationship(f: V2, opts) -> dict | None:
    """0063 (NK1-3, IN1-17): the Relationship map's target coding and the v2-0063 code, for a
    code in the table; a code in another named system as that coding; otherwise text."""
    if not f:
        return None
    code, known = _table_coding(f, "0063", vocab.RELATIONSHIP)
    if known:
        system, target, text = vocab.RELATIONSHIP[code.upper()]
        codings = [{"system": system, "code": target, "display": text}]
        if system != vocab.V2 + "0063":
            codings.append(compact({"system": vocab.V2 + "0063", "code": code.upper(),
                                    "display": f.c(2)}))  # fmt: skip
        return {"coding": codings}
    if f.c(3) and f.c(3).upper() != "HL70063":
        return cwe(f, opts)
    return _text(f)


def contact_role(f: V2, opts) -> dict | None:
    """0131 (NK1-7): coded in v2-0131 only when the code is one of the table's."""
    if not f:
        return None
    code, known = _table_coding(f, "0131", vocab.CONTACT_ROLE)
    if known:
        return coded(vocab.V2 + "0131", code.upper(), vocab.CONTACT_ROLE[code.upper()])
    if f.c(3) and f.c(3).upper() != "HL70131":
        return cwe(f, opts)
    return _text(f)


def _text(f: V2) -> dict | None:
    text = f.c(2) or f.c(1) or f.c(9)
    return {"text": text} if text else None


def is_organization(nk1: Seg) -> bool:
    return nk1.code(3) in ORGANIZATION_RELATIONSHIP or nk1.code(7) in ORGANIZATION_ROLE


def add_related_people(bundle, msg, opts, patient_ref: str, patient: dict | None) -> None:
    """Each NK1 -> RelatedPerson; an NK1 naming an organisation -> ``Patient.contact``."""
    for n, nk1 in enumerate(segs(msg, "NK1"), 1):
        if is_organization(nk1):
            if patient is not None:
                _contact(bundle, nk1, opts, patient)
        elif opts.emits("RelatedPerson"):
            _related_person(bundle, nk1, opts, patient_ref, n)


def _nk1_identifiers(nk1: Seg, opts) -> list[dict]:
    ids = [cx(f, opts, opts.timezone) for f in nk1.reps(33) + nk1.reps(12)]
    out = [i for i in ids if i]
    ssn = nk1.f(37).c(1)
    if ssn:
        out.append({"type": coded(vocab.V2 + "0203", "SS"), "system": US_SSN, "value": ssn})
    return out


def _related_person(bundle, nk1: Seg, opts, patient_ref: str, n: int) -> None:
    """NK1[RelatedPerson]: -2/-30 name, -3/-7 relationship, -4/-32 address, -5/-6/-31/-40/-41
    telecom, -8/-9 period, -12/-33/-37 identifiers, -15 gender, -16 birthDate, -20 language.
    Keyed on its identifier, else on the patient and the NK1 set ID (NK1-1, else its place
    in the message) [ours: a later A08 with the same NK1-1 updates the same person]."""
    tz = opts.timezone
    relationships = [relationship(f, opts) for f in nk1.reps(3)]
    relationships += [contact_role(f, opts) for f in nk1.reps(7)]
    telecom = [xtn(f, None, tz) for f in nk1.reps(5)]
    telecom += [xtn(f, "work", tz) for f in nk1.reps(6)]
    telecom += [xtn(f, None, tz) for n_ in (31, 40, 41) for f in nk1.reps(n_)]
    identifiers = _nk1_identifiers(nk1, opts)
    key = (
        identifiers[0]
        if identifiers
        else derived(opts, "related-person", bundle.subject_key, f"NK1-{nk1.f(1).c(1) or n}")
    )
    if not identifiers:
        identifiers = [key]
    person = compact({
        "resourceType": "RelatedPerson",
        "identifier": identifiers,
        "patient": ref(patient_ref),
        "relationship": [r for r in relationships if r],
        "name": xpn_names(nk1.reps(2) + nk1.reps(30), tz),
        "telecom": [t for t in telecom if t],
        "gender": vocab.GENDER.get(nk1.code(15)),
        "birthDate": dtm(nk1.f(16).c(1), tz, date_only=True),
        "address": [a for a in (xad(f, tz) for f in nk1.reps(4) + nk1.reps(32)) if a],
        "period": period(nk1.f(8).c(1), nk1.f(9).c(1), tz),
        "communication": [{"language": lang}] if (lang := language(nk1.f(20), opts)) else [],
    })  # fmt: skip
    if set(person) - {"resourceType", "patient", "identifier"}:
        bundle.add(person, f"NK1|{n}", identifier_query(key))


def _contact(bundle, nk1: Seg, opts, patient: dict) -> None:
    """An organisation in NK1 (NK1-3 EMR, NK1-7 E/F/I/S) -> Patient.contact with the
    organisation (NK1-13), name, telecom, address and relationship."""
    tz = opts.timezone
    org = None
    for f in nk1.reps(13):
        org = xon_organization(bundle, f, opts)
        break
    contact = compact({
        "relationship": [r for r in (relationship(nk1.f(3), opts),
                                     contact_role(nk1.f(7), opts)) if r],
        "name": (xpn_names(nk1.reps(2), tz) or [None])[0],
        "telecom": [t for t in (xtn(f, "work", tz) for f in nk1.reps(5) + nk1.reps(6)) if t],
        "address": (([a for a in (xad(f, tz) for f in nk1.reps(4)) if a]) or [None])[0],
        "organization": org,
        "period": period(nk1.f(8).c(1), nk1.f(9).c(1), tz),
    })  # fmt: skip
    if contact:
        patient.setdefault("contact", []).append(contact)


def add_mother(bundle, pid: Seg, opts, patient_ref: str) -> None:
    """PID-21 -> RelatedPerson (CX[RelatedPerson-Mother]): the mother's identifier,
    relationship MTH, the patient; keyed on that identifier."""
    if not opts.emits("RelatedPerson"):
        return
    for f in pid.reps(21):
        identifier = cx(f, opts, opts.timezone)
        if not identifier:
            continue
        mother = {
            "resourceType": "RelatedPerson",
            "identifier": [identifier],
            "patient": {"reference": patient_ref},
            "relationship": [coded(vocab.V3_ROLE_CODE, "MTH", "mother")],
        }
        bundle.add(mother, f"mother|{identifier['system']}|{identifier['value']}",
                   identifier_query(identifier))  # fmt: skip
