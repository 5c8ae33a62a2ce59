"""Every shared sample that carries a patient converts to a valid R4 transaction Bundle whose
references all resolve; the guide's own test messages included."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from engine.fhir.convert import convert, validate
from engine.fhir.options import ConvertOptions
from engine.hl7.batch import split_file
from engine.hl7.message import Message

from .conftest import samples_or_skip

OPTS = ConvertOptions(timezone=ZoneInfo("Europe/Amsterdam"))


def messages():
    root = samples_or_skip().parent
    for path in sorted(root.glob("*/*.hl7")):
        raw = path.read_bytes()
        payloads = split_file(raw).messages if raw.startswith((b"BHS", b"FHS")) else [raw]
        for i, payload in enumerate(payloads):
            msg = Message.from_bytes(payload)
            if msg.get("MSH-9.1") in ("ACK",):
                continue
            yield f"{path.name}#{i + 1}", msg


def references(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "reference" and isinstance(v, str):
                out.append(v)
            else:
                references(v, out)
    elif isinstance(node, list):
        for v in node:
            references(v, out)
    return out


def test_every_sample_converts_validates_and_resolves():
    seen = 0
    for name, msg in messages():
        bundle = convert(msg, OPTS)
        validate(bundle)
        assert bundle["type"] == "transaction", name
        urls = {e["fullUrl"] for e in bundle["entry"]}
        for ref in references(bundle, []):
            assert ref in urls or "?" in ref, (name, ref)
        for entry in bundle["entry"]:
            assert entry["fullUrl"].startswith("urn:uuid:"), name
            assert entry["request"]["method"] in ("POST", "PUT"), name
        types = {e["resource"]["resourceType"] for e in bundle["entry"]}
        if msg.segment_indexes("PID"):
            assert "Patient" in types, name
        seen += 1
    assert seen >= 20


def test_same_message_same_bundle():
    (_, msg), *_ = list(messages())
    assert convert(msg, OPTS) == convert(msg, OPTS)


@pytest.mark.parametrize(("kind", "resource"), [("SIU_S12", "Appointment"),
                                               ("MDM_T02", "DocumentReference"),
                                               ("VXU_V04", "Immunization")])  # fmt: skip
def test_new_types_give_their_own_resource(kind, resource):
    root = samples_or_skip().parent / "fhir-ig"
    msg = Message.from_bytes((root / f"IG-test_conversions-{kind}.hl7").read_bytes())
    bundle = convert(msg, OPTS)
    validate(bundle)
    types = [e["resource"]["resourceType"] for e in bundle["entry"]]
    assert types.count("Patient") == 1
    assert resource in types
