"""One HL7 v2 message to one FHIR R4 transaction Bundle.

The message types and events mapped are in SUPPORTED; any other is refused with
UnsupportedMessage (the CLI exits 1 with it, the FHIR destination keeps the message as
errored with it as the reason): a bundle with most of a message's content dropped would look
like a success."""

from __future__ import annotations

import dataclasses
import re

from engine.fhir.adt import EVENTS as ADT_EVENTS
from engine.fhir.bundle import TransactionBundle, sender_system
from engine.fhir.options import ConvertOptions
from engine.hl7.message import Message

SUPPORTED = {
    "ADT": ADT_EVENTS, "ORU": frozenset({"R01"}), "ORM": frozenset({"O01"}),
    "OML": frozenset({"O21"}), "VXU": frozenset({"V04"}), "MDM": frozenset({"T02"}),
    "SIU": frozenset({"S12", "S13", "S14", "S15"}),
}  # fmt: skip
# types with one trigger: a message naming no trigger (older senders) is read as that one
DEFAULT_TRIGGER = {"ORU": "R01", "ORM": "O01", "OML": "O21", "VXU": "V04"}


class UnsupportedMessage(ValueError):
    pass


def supported_text() -> str:
    adt = "/".join(sorted(ADT_EVENTS))
    others = ", ".join(f"{k}^{'/'.join(sorted(v))}" for k, v in SUPPORTED.items() if k != "ADT")
    return f"ADT^{adt}, {others}"


def check_supported(message: Message) -> tuple[str, str]:
    """(type, trigger) of a message this package maps; UnsupportedMessage otherwise."""
    from engine.fhir.patient import adt_event

    kind = (message.get("MSH-9.1") or "").strip().upper()
    trigger = (message.get("MSH-9.2") or "").strip().upper()
    if kind == "ADT":
        trigger = adt_event(message)
    trigger = trigger or DEFAULT_TRIGGER.get(kind, "")
    if trigger not in SUPPORTED.get(kind, ()):
        raise UnsupportedMessage(
            f"no FHIR mapping for {kind or '?'}^{trigger or '?'}: the FHIR conversion maps "
            f"{supported_text()} (refused rather than sent with most of its content dropped)"
        )
    return kind, trigger


def convert(message: Message, opts: ConvertOptions | None = None, hook=None) -> dict:
    """The transaction Bundle for ``message``; ``hook(bundle, message, opts)`` may amend it
    (return a new dict, or change it in place and return None). Raises UnsupportedMessage for
    a type or event not in SUPPORTED."""
    from engine.fhir.adt import convert_adt
    from engine.fhir.encounter import add_encounter
    from engine.fhir.header import add_message_header, add_provenance, instant
    from engine.fhir.mdm import convert_mdm
    from engine.fhir.observation import add_observation
    from engine.fhir.orm import convert_orm
    from engine.fhir.oru import convert_oru
    from engine.fhir.patient import add_patient
    from engine.fhir.siu import convert_siu
    from engine.fhir.vxu import convert_vxu

    kind, _ = check_supported(message)
    opts = opts or ConvertOptions()
    sender = (message.get("MSH-4.1") or message.get("MSH-3.1") or "").strip()
    opts = dataclasses.replace(opts, sender=sender)
    msh10 = message.get("MSH-10") or ""
    bundle = TransactionBundle(
        message_key="|".join((message.get("MSH-3") or "", message.get("MSH-4") or "", msh10)),
        timestamp=instant(message.get("MSH-7") or "", opts.timezone),  # an instant
        msh10=msh10,
    )
    bundle.identifier_system = sender_system(opts, "message")
    patient = add_patient(bundle, message, opts)
    encounter = add_encounter(bundle, message, opts, patient)
    handler = {"ORU": convert_oru, "ORM": convert_orm, "OML": convert_orm, "VXU": convert_vxu,
               "MDM": convert_mdm, "SIU": convert_siu, "ADT": convert_adt}[kind]  # fmt: skip
    handler(bundle, message, opts, patient, encounter)
    if kind == "ADT" and patient:
        for n in range(1, len(message.segment_indexes("OBX")) + 1):
            add_observation(bundle, message, n, opts, patient, encounter, key=f"obx-{n}")
    add_provenance(bundle, message, opts, [r for r in (patient, encounter) if r])
    add_message_header(bundle, message, opts, [r for r in (patient, encounter) if r])
    result = bundle.to_json()
    if hook is not None:
        amended = hook(result, message, opts)
        if amended is not None:
            result = amended
    return result


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
