"""What the message says about itself: MSH -> Bundle.identifier/timestamp (MSH[Bundle]) and
MessageHeader (MSH[MessageHeader], emitted only when the channel asks for it: the Bundle is a
transaction, not a FHIR message); EVN -> Provenance (EVN[Provenance]), whose target is the
Patient and Encounter ("If the FHIR transformation does not yield a FHIR message ... consider
attaching this Provenance resource instance to the relevant FHIR resources", ADT_A01 map).

Neither resource has an identifier in R4: each carries a tag naming the sender and MSH-10
and is a conditional create on it (``_tag=<local>/message|<sender>.<MSH-10>.<what>``), so
a re-post of the message adds nothing [ours]."""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import query, slug, token
from engine.fhir.datatypes import V2, coded, compact, cwe, dtm
from engine.fhir.people import add_location, add_practitioner, hd_organization, xon_organization
from engine.fhir.segments import Seg, first
from engine.hl7.message import Message

DATA_ABSENT = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"


def message_tag(opts, msh10: str, what: str) -> tuple[dict, str]:
    """The tag that identifies what this message produced, and its ``_tag`` search."""
    system = f"{opts.local_system.rstrip('/')}/message"
    code = f"{slug(opts.sender or 'unknown')}.{slug(msh10 or 'none')}.{what}"
    return {"system": system, "code": code}, query(("_tag", token(system, code)))


def instant(value: str, tz) -> str | None:
    """A DTM as a FHIR instant (a time to the second with an offset), or None."""
    when = dtm(value, tz)
    return when if when and "T" in when else None


def _endpoint(f: V2) -> tuple[str | None, dict | None]:
    """HD -> an endpoint: its universal id when that is a URL (type URI/URL), else a
    data-absent-reason (the MSH-24/-25 rows; an OID names the application, it is no
    address)."""
    if f.c(2) and f.c(3).upper() in ("URI", "URL") and "://" in f.c(2):
        return f.c(2), None
    return None, {"extension": [{"url": DATA_ABSENT, "valueCode": "unknown"}]}


def add_message_header(bundle, msg: Message, opts, focus: list[str]) -> None:
    """MSH[MessageHeader]: -3/-24 source, -4 sender (Organization, -17 its country), -5/-25
    destination, -6/-23 receiver, -8/-26/-27 meta.security, -9 eventCoding, -11 processing id
    (meta.tag v2-0103), -19 language, -22 responsible."""
    if not opts.emits("MessageHeader"):
        return
    msh = Seg(msg, 0)
    tag, search = message_tag(opts, msh.f(10).c(1), "MSH")
    source_hd = msh.f(24) or msh.f(3)
    endpoint, absent = _endpoint(source_hd)
    source = compact({"name": msh.f(3).c(1), "endpoint": endpoint, "_endpoint": absent})
    dest_hd = msh.f(25) or msh.f(5)
    dest_endpoint, dest_absent = _endpoint(dest_hd)
    receiver = xon_organization(bundle, msh.f(23), opts) or hd_organization(bundle, msh.f(6), opts)
    sender = hd_organization(bundle, msh.f(4), opts)
    if sender and sender.get("reference") and msh.f(17).c(1):
        org = bundle.entry(sender["reference"])["resource"]
        org["address"] = [{"country": msh.f(17).c(1)}]
    security = [{"code": msh.f(8).c(1)}] if msh.f(8).c(1) else []
    security += [c["coding"][0] for n in (26, 27) for f in msh.reps(n)
                 if (c := cwe(f, opts)) and c.get("coding")]  # fmt: skip
    tags = [tag] + ([{"system": vocab.V2 + "0103", "code": msh.f(11).c(1)}]
                    if msh.f(11).c(1) else [])  # fmt: skip
    lang = msh.f(19).c(1)
    header = compact({
        "resourceType": "MessageHeader",
        "meta": compact({"tag": tags, "security": security}),
        "language": lang if lang else None,
        "eventCoding": coded(vocab.V2 + "0003", msh.f(9).c(2) or msh.f(9).c(1),
                             f"{msh.f(9).c(1)}^{msh.f(9).c(2)}")["coding"][0],
        "destination": [compact({"name": dest_hd.c(1), "endpoint": dest_endpoint,
                                 "_endpoint": dest_absent, "receiver": receiver})],
        "sender": sender,
        "source": source,
        "responsible": xon_organization(bundle, msh.f(22), opts),
        "focus": [{"reference": r} for r in focus],
    })  # fmt: skip
    bundle.add(header, "header", search, method="POST")


def add_provenance(bundle, msg: Message, opts, targets: list[str]) -> None:
    """EVN[Provenance]: -2 recorded (else MSH-7), -4 reason (U -> data-absent-reason), -5
    agent (a Practitioner; without it the sending facility MSH-4, as the guide's
    MSH[Provenance-Operator] row has it), -6 occurredDateTime, -7 location; activity the
    event (v2-0003)."""
    evn = first(msg, "EVN")
    if evn is None or not targets or not opts.emits("Provenance"):
        return
    tz = opts.timezone
    msh = Seg(msg, 0)
    recorded = instant(evn.f(2).c(1), tz) or instant(msh.f(7).c(1), tz)
    if not recorded:
        return  # recorded is 1..1 and an instant: nothing to say when it is
    agents = [a for a in (add_practitioner(bundle, f, opts) for f in evn.reps(5)) if a]
    if not agents:
        org = hd_organization(bundle, msh.f(4), opts)
        agents = [org] if org else []
    if not agents:
        return  # agent.who is 1..1
    reason = None
    if evn.code(4) == "U":
        reason = {"extension": [{"url": DATA_ABSENT, "valueCode": "unknown"}]}
    elif evn.f(4):
        reason = cwe(evn.f(4), opts, vocab.V2 + "0062")
    facility = evn.f(7)
    location = (
        add_location(
            bundle,
            V2(
                "^^^" + facility.raw.replace(facility.enc[0], facility.enc[3]),
                facility.sep,
                facility.enc,
            ),
            opts,
        )
        if facility
        else None
    )
    event = evn.f(1).c(1) or msh.f(9).c(2)
    tag, search = message_tag(opts, msh.f(10).c(1), "EVN")
    provenance = compact({
        "resourceType": "Provenance",
        "meta": {"tag": [tag]},
        "target": [{"reference": t} for t in targets],
        "occurredDateTime": dtm(evn.f(6).c(1), tz),
        "recorded": recorded,
        "location": location if location and location.get("reference") else None,
        "reason": [reason] if reason else [],
        "activity": coded(vocab.V2 + "0003", event, f"{msh.f(9).c(1)}^{msh.f(9).c(2)}")
        if event else None,
        "agent": [{"who": a} for a in agents],
    })  # fmt: skip
    bundle.add(provenance, "provenance", search, method="POST")
