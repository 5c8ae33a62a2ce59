"""ADT beyond PID/PV1: NK1 -> RelatedPerson, PID-21 -> the mother, AL1/DG1/PR1 ->
AllergyIntolerance/Condition/Procedure, IN1 -> Coverage (the ADT_A01 message map, used for
the events sharing its structure); A40 merge and A24 link -> Patient.link.

The guide has no A40/A24 map. A merge is written as FHIR's Patient.link describes one: the
surviving patient (PID) ``replaces`` the merged-away record (MRG), and that record, keyed on
its MRG-1 identifier, is ``replaced-by`` the survivor and no longer active; it keeps its
identifiers and MRG-7 name only [ours: the conditional update rewrites it, so demographics
the server held for it are dropped, as they now belong to the survivor]."""

from __future__ import annotations

from engine.fhir.bundle import TransactionBundle, identifier_query
from engine.fhir.clinical import add_clinical
from engine.fhir.coverage import add_coverages
from engine.fhir.datatypes import cx, xpn_names
from engine.fhir.options import ConvertOptions
from engine.fhir.patient import add_patient, adt_event
from engine.fhir.related import add_mother, add_related_people
from engine.fhir.segments import Seg
from engine.hl7.message import Message

# Events with the ADT_A01 segment structure (NK1/AL1/DG1/PR1/IN1 mean the same in each)
A01_EVENTS = frozenset({"A01", "A02", "A03", "A04", "A05", "A06", "A07", "A08", "A11", "A13",
                        "A28", "A31"})  # fmt: skip
MERGE_EVENTS = frozenset({"A40"})
LINK_EVENTS = frozenset({"A24"})
EVENTS = A01_EVENTS | MERGE_EVENTS | LINK_EVENTS


def convert_adt(
    bundle: TransactionBundle,
    msg: Message,
    opts: ConvertOptions,
    patient_ref: str | None,
    encounter_ref: str | None,
) -> None:
    """Add what the event's structure carries beyond Patient and Encounter. Resources that
    need the patient (all of these) are skipped without one."""
    event = adt_event(msg)
    if not patient_ref:
        return
    if event in MERGE_EVENTS:
        _merge(bundle, msg, opts, patient_ref)
        return
    if event in LINK_EVENTS:
        _link(bundle, msg, opts, patient_ref)
        return
    if event not in A01_EVENTS:
        return
    pid_idx = msg.segment_indexes("PID")
    patient = bundle.entry(patient_ref)["resource"]
    add_mother(bundle, Seg(msg, pid_idx[0]), opts, patient_ref)
    add_related_people(bundle, msg, opts, patient_ref, patient)
    add_clinical(bundle, msg, opts, patient_ref, encounter_ref)
    add_coverages(bundle, msg, opts, patient_ref)


def _patient_refs(bundle, msg, opts, patient_ref) -> list[tuple[int, str]]:
    """(PID position, Patient reference) for every PID of the message."""
    out = []
    for i, pos in enumerate(msg.segment_indexes("PID")):
        ref = patient_ref if i == 0 else add_patient(bundle, msg, opts, pid_pos=pos)
        if ref:
            out.append((pos, ref))
    return out


def _merge(bundle, msg: Message, opts, patient_ref: str) -> None:
    """Each PID/MRG pair: the survivor links ``replaces`` the old record, which becomes
    ``active: false`` with a ``replaced-by`` link (MRG-1 and MRG-4 identifiers, MRG-7
    name)."""
    mrg_idx = msg.segment_indexes("MRG")
    tz = opts.timezone
    for pid_pos, survivor in _patient_refs(bundle, msg, opts, patient_ref):
        mrg_pos = next((p for p in mrg_idx if p > pid_pos), None)
        if mrg_pos is None:
            continue
        mrg = Seg(msg, mrg_pos)
        pairs = [(f, cx(f, opts, tz)) for f in mrg.reps(1) + mrg.reps(4)]
        identifiers = [i for _, i in pairs if i]
        if not identifiers:
            continue
        key = next((i for f, i in pairs if i and f.c(4)), identifiers[0])
        for identifier in identifiers:
            identifier["use"] = "old"
        old = {
            "resourceType": "Patient",
            "identifier": identifiers,
            "active": False,
            "link": [{"other": {"reference": survivor}, "type": "replaced-by"}],
        }
        names = xpn_names(mrg.reps(7), tz)
        if names:
            old["name"] = names
        old_ref = bundle.add(old, f"merged|{key['system']}|{key['value']}", identifier_query(key))
        bundle.entry(survivor)["resource"].setdefault("link", []).append(
            {"other": {"reference": old_ref}, "type": "replaces"}
        )


def _link(bundle, msg: Message, opts, patient_ref: str) -> None:
    """A24: the two patients of the message refer to each other (``seealso``)."""
    refs = [ref for _, ref in _patient_refs(bundle, msg, opts, patient_ref)]
    for ref in refs:
        links = [{"other": {"reference": other}, "type": "seealso"} for other in refs
                 if other != ref]  # fmt: skip
        if links:
            bundle.entry(ref)["resource"].setdefault("link", []).extend(links)
