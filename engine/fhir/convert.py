"""One HL7 v2 message to one FHIR R4 transaction Bundle."""

from __future__ import annotations

import re

from engine.fhir.bundle import TransactionBundle
from engine.fhir.datatypes import compact, dtm
from engine.fhir.options import ConvertOptions
from engine.hl7.message import Message

MAPPED = {"ADT", "ORU", "ORM", "OML"}
# Other types carrying a patient (SIU, MDM, VXU...) get what every message shares: Patient,
# Encounter and an Observation per OBX. Their own resources (Appointment, DocumentReference,
# Immunization) are not mapped yet.
GENERIC = {"SIU", "MDM", "VXU", "BAR", "DFT", "RDE", "OUL", "REF", "PPR"}


class UnsupportedMessage(ValueError):
    pass


def convert(message: Message, opts: ConvertOptions | None = None, hook=None) -> dict:
    """The transaction Bundle for ``message``; ``hook(bundle, message, opts)`` may amend it
    (return a new dict, or change it in place and return None)."""
    from engine.fhir.adt import convert_adt
    from engine.fhir.observation import add_observation
    from engine.fhir.orm import convert_orm
    from engine.fhir.oru import convert_oru
    from engine.fhir.patient import add_encounter, add_patient

    opts = opts or ConvertOptions()
    kind, trigger = message.get("MSH-9.1") or "", message.get("MSH-9.2") or ""
    if kind not in MAPPED and kind not in GENERIC:
        raise UnsupportedMessage(f"no FHIR mapping for {kind}^{trigger} (ADT, ORU, ORM, OML)")
    msh10 = message.get("MSH-10") or ""
    stamp = dtm(message.get("MSH-7") or "", opts.timezone)
    bundle = TransactionBundle(
        message_key="|".join((message.get("MSH-3") or "", message.get("MSH-4") or "", msh10)),
        timestamp=stamp if stamp and "T" in stamp else None,  # Bundle.timestamp is an instant
        msh10=msh10,
    )
    if opts.emits("MessageHeader"):
        bundle.add(message_header(message, kind, trigger), key="header", method="POST")
    patient = add_patient(bundle, message, opts)
    encounter = add_encounter(bundle, message, opts, patient)
    if kind == "ORU":
        convert_oru(bundle, message, opts, patient, encounter)
    elif kind in ("ORM", "OML"):
        convert_orm(bundle, message, opts, patient, encounter)
    else:  # ADT, and the generic types: the observations they carry
        if kind == "ADT":
            convert_adt(bundle, message, opts, patient, encounter)
        if opts.emits("Observation"):
            for i in range(1, len(message.segment_indexes("OBX")) + 1):
                add_observation(bundle, message, i, opts, patient, encounter, key=f"obx-{i}")
    result = bundle.to_json()
    if hook is not None:
        amended = hook(result, message, opts)
        if amended is not None:
            result = amended
    return result


def message_header(message: Message, kind: str, trigger: str) -> dict:
    return compact({
        "resourceType": "MessageHeader",
        "eventCoding": {"system": "http://terminology.hl7.org/CodeSystem/v2-0003",
                        "code": trigger or kind},
        "source": compact({"name": message.get("MSH-3.1"),
                           "endpoint": message.get("MSH-3.2") or "urn:unknown"}),
        "destination": [compact({"name": message.get("MSH-5.1"), "endpoint": "urn:unknown"})],
    })  # fmt: skip


_TIME_WITHOUT_OFFSET = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")


def validate(bundle: dict) -> None:
    """Raise ValueError when the bundle is not valid FHIR R4: the fhir.resources models, plus
    the rule they do not enforce: a dateTime with a time must carry an offset."""
    from fhir.resources.bundle import Bundle
    from pydantic import ValidationError

    try:
        Bundle.parse_obj(bundle)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ValueError(f"not valid FHIR R4: {where}: {first.get('msg')}") from None
    where = _time_without_offset(bundle, "Bundle")
    if where:
        raise ValueError(f"not valid FHIR R4: {where}: a time without a UTC offset")


def _time_without_offset(node, path: str) -> str | None:
    if isinstance(node, dict):
        for key, value in node.items():
            found = _time_without_offset(value, f"{path}.{key}")
            if found:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _time_without_offset(value, f"{path}[{i}]")
            if found:
                return found
    elif isinstance(node, str) and _TIME_WITHOUT_OFFSET.match(node):
        return path
    return None
