"""ORC/OBR -> ServiceRequest, and what the order-based mappings share: one-split segment
views, EI identifiers, NTE notes and the ORC/OBR/OBX/SPM grouping of a message.

The checklist is shared/fhir-mapping.md. Choices where the guide is silent are marked [ours].
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, search_for
from engine.fhir.datatypes import V2, coded, cwe, dtm, hd_system
from engine.fhir.options import ConvertOptions
from engine.fhir.patient import add_practitioner, concept
from engine.hl7.message import Message

V2_0203 = vocab.V2 + "0203"
PRIORITY = {"S": "stat", "A": "asap", "R": "routine"}  # 0027 (OBR-5, TQ.6) [ours: the rest]
NOTE_SKIP = frozenset({"PRT", "TQ1", "TQ2", "TCD", "CTD"})  # may sit between OBR/OBX and NTE
_NULL = '""'


# reading segments ---------------------------------------------------------------------------
class _Rep(V2):
    """A V2 view that splits its components once (V2 splits on every ``c``/``s`` call)."""

    __slots__ = ("_parts",)

    def __init__(self, raw: str, sep: str, enc: str):
        super().__init__(raw, sep, enc)
        self._parts: list[str] | None = None

    def _comp(self, n: int) -> str:
        parts = self._parts
        if parts is None:
            parts = self._parts = self.raw.split(self.enc[0])
        return parts[n - 1] if n <= len(parts) else ""


EMPTY = V2("")


class Seg:
    """One segment split once into fields (not for MSH). ``f(n)`` is the first repetition of
    field n as a V2 view, ``reps(n)`` the non-empty ones; ``""`` (explicit null) is empty."""

    __slots__ = ("enc", "fields", "sep")

    def __init__(self, msg: Message, pos: int):
        self.sep, self.enc = msg.sep, msg.enc
        self.fields = msg.segments[pos].split(msg.sep)

    def raw(self, n: int) -> str:
        fields = self.fields
        return fields[n] if n < len(fields) else ""

    def f(self, n: int) -> V2:
        fields = self.fields
        raw = fields[n] if n < len(fields) else ""
        if not raw or raw == _NULL:
            return EMPTY
        cut = raw.find(self.enc[1])
        if cut >= 0:
            raw = raw[:cut]
        return _Rep(raw, self.sep, self.enc)

    def reps(self, n: int) -> list[V2]:
        raw = self.raw(n)
        if not raw or raw == _NULL:
            return []
        sep, enc = self.sep, self.enc
        out = [_Rep(r, sep, enc) for r in raw.split(enc[1]) if r and r != _NULL]
        return [v for v in out if v]

    def code(self, n: int) -> str:
        """Component 1 of field n, upper-cased (an ID/IS code; no escapes expected)."""
        raw = self.raw(n)
        if not raw:
            return ""
        code = raw.split(self.enc[0], 1)[0].split(self.enc[1], 1)[0].strip().upper()
        return "" if code == _NULL else code


def seg_at(msg: Message, name: str, occurrence: int | None) -> tuple[int, Seg] | None:
    """(position, view) of the ``occurrence``-th (1-based) segment ``name``, or None."""
    if not occurrence:
        return None
    idx = msg.segment_indexes(name)
    if not 1 <= occurrence <= len(idx):
        return None
    pos = idx[occurrence - 1]
    return pos, Seg(msg, pos)


@dataclass(slots=True)
class OrderGroup:
    """An OBR with its ORC (occurrence, or None), its OBX (occurrence and the index into
    ``spm`` of the SPM it follows, -1 for result OBX) and its SPM segments (positions)."""

    orc: int | None
    obr: int
    obr_pos: int
    obx: list[tuple[int, int]] = field(default_factory=list)
    spm: list[int] = field(default_factory=list)


def order_groups(msg: Message, reuse_orc: bool) -> list[OrderGroup]:
    """ORC/OBR groups in message order. ``reuse_orc``: an OBR without its own ORC takes the
    last one (ORM/OML senders often send one ORC for several OBR [ours]); in ORU the ORC is
    optional per OBR, so it is not carried over."""
    groups: list[OrderGroup] = []
    sep = msg.sep
    orc_n = obr_n = obx_n = 0
    orc: int | None = None
    cur: OrderGroup | None = None
    for pos, seg in enumerate(msg.segments):
        if seg[3:4] not in ("", sep):
            continue
        sid = seg[:3]
        if sid == "OBX":
            obx_n += 1
            if cur is not None:
                cur.obx.append((obx_n, len(cur.spm) - 1))
        elif sid == "OBR":
            obr_n += 1
            cur = OrderGroup(orc, obr_n, pos)
            groups.append(cur)
            if not reuse_orc:
                orc = None
        elif sid == "ORC":
            orc_n += 1
            orc, cur = orc_n, None
        elif sid == "SPM":
            if cur is not None:
                cur.spm.append(pos)
        elif sid in ("PID", "MSH"):
            orc, cur = None, None
    return groups


# identifiers ---------------------------------------------------------------------------------
def ei(f: V2, opts: ConvertOptions, type_code: str | None = None) -> dict | None:
    """EI (.1 id, .2 namespace, .3 universal id, .4 its type) -> Identifier."""
    value = f.c(1)
    if not value:
        return None
    return _identifier(value, hd_system(f.c(2), f.c(3), f.c(4), opts), type_code)


def ei_sub(f: V2, component: int, opts: ConvertOptions, type_code: str | None = None):
    """An EI written as subcomponents of one component (EIP in OBR-29, SPM-2)."""
    value = f.s(component, 1)
    if not value:
        return None
    system = hd_system(f.s(component, 2), f.s(component, 3), f.s(component, 4), opts)
    return _identifier(value, system, type_code)


def _identifier(value: str, system: str | None, type_code: str | None) -> dict:
    out = {"value": value}
    if system:
        out["system"] = system
    if type_code:
        out["type"] = coded(V2_0203, type_code)
    return out


def identifier_search(identifier: dict | None) -> str | None:
    """The search for a conditional request: ``identifier=system|value``; without a system
    and with a v2-0203 type ``identifier:of-type=<v2-0203>|TYPE|value`` (R4), so a bare
    order number does not match other senders' identifiers of another kind [ours]."""
    if not identifier or not identifier.get("value"):
        return None
    if identifier.get("system"):
        return search_for(identifier)
    type_code = identifier.get("type", {}).get("coding", [{}])[0].get("code")
    value = identifier["value"].replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")
    if type_code:
        return f"identifier:of-type={V2_0203}|{type_code}|{value}"
    return f"identifier={value}"


def code_search(code: dict | None) -> str:
    """``&code=system|code`` added to a search whose identifier several OBR share [ours]."""
    coding = (code or {}).get("coding") or [{}]
    c = coding[0]
    if not c.get("code"):
        return ""
    value = c["code"].replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")
    return f"&code={c['system']}|{value}" if c.get("system") else f"&code={value}"


def shared_order_number(msg: Message, field_no: int, value: str) -> bool:
    """True when more than one OBR of the message carries ``value`` as its placer (2) or
    filler (3) number, taking the ORC's when the OBR's is empty."""
    if not value:
        return False
    sep, comp = msg.sep, msg.enc[0]
    seen = 0
    orc: list[str] = []
    for seg in msg.segments:
        sid = seg[:3]
        if sid == "ORC":
            orc = seg.split(sep)
        elif sid == "OBR":
            fields = seg.split(sep)
            raw = fields[field_no] if field_no < len(fields) else ""
            if not raw.split(comp, 1)[0].strip() and len(orc) > field_no:
                raw = orc[field_no]
            if raw.split(comp, 1)[0].strip() == value:
                seen += 1
                if seen > 1:
                    return True
    return False


# notes ----------------------------------------------------------------------------------------
def formatted_text(text: str, esc: str) -> str:
    """FT/TX display text: ``\\.br\\``/``\\.sp\\`` -> new line, highlighting (``\\H\\``,
    ``\\N\\``) dropped; other formatting escapes are kept as written."""
    if esc not in text:
        return text
    return (
        text.replace(f"{esc}.br{esc}", "\n")
        .replace(f"{esc}.sp{esc}", "\n")
        .replace(f"{esc}H{esc}", "")
        .replace(f"{esc}N{esc}", "")
    )


def notes_after(msg: Message, pos: int, opts: ConvertOptions) -> list[dict]:
    """The NTE segments following the segment at ``pos`` -> Annotations: NTE-3 (repeats
    joined by new lines) as text, NTE-6 time, NTE-5 (XCN) authorString."""
    notes = []
    segments, esc = msg.segments, msg.enc[2]
    for i in range(pos + 1, len(segments)):
        seg = segments[i]
        sid = seg[:3]
        if sid != "NTE":
            if sid in NOTE_SKIP:
                continue
            break
        nte = Seg(msg, i)
        text = "\n".join(formatted_text(r.text, esc) for r in nte.reps(3)).strip()
        if not text:
            continue
        note = {"text": text}
        author = nte.f(5)
        if author:
            name = " ".join(x for x in (author.c(3), author.s(2, 1) or author.c(2)) if x)
            if name:
                note["authorString"] = name
        when = dtm(nte.f(6).c(1), opts.timezone)
        if when and "T" in when:
            note["time"] = when
        notes.append(note)
    return notes


# ServiceRequest --------------------------------------------------------------------------------
def _priority(orc: Seg | None, obr: Seg | None) -> str | None:
    """OBR-5, else the priority of the timing/quantity ORC-7.6 / OBR-27.6."""
    for code in (
        obr.code(5) if obr else "",
        orc.f(7).c(6).upper() if orc else "",
        obr.f(27).c(6).upper() if obr else "",
    ):
        if code:
            return PRIORITY.get(code)
    return None


def _status(orc: Seg | None) -> str:
    if orc is None:
        return "unknown"
    return (
        vocab.ORDER_STATUS.get(orc.code(5))
        or vocab.ORDER_CONTROL_STATUS.get(orc.code(1))
        or "unknown"
    )


def order_identifiers(orc: Seg | None, obr: Seg | None, opts: ConvertOptions):
    """(placer, filler) Identifiers: OBR-2/OBR-3, the ORC's when the OBR's is empty."""
    placer = (ei(obr.f(2), opts, "PLAC") if obr else None) or (
        ei(orc.f(2), opts, "PLAC") if orc else None
    )
    filler = (ei(obr.f(3), opts, "FILL") if obr else None) or (
        ei(orc.f(3), opts, "FILL") if orc else None
    )
    return placer, filler


def _parent(bundle: TransactionBundle, obr: Seg, opts: ConvertOptions, subject: str) -> str | None:
    """OBR-29 (EIP: placer EI, filler EI as subcomponents) -> the parent ServiceRequest: the
    one in this bundle with that key, else a stub created only if none exists on the server
    (POST ifNoneExist) [ours: a conditional reference would fail the whole transaction when
    the parent is unknown]. A later OBR for that parent replaces the stub in place."""
    f = obr.f(29)
    if not f:
        return None
    identifier = ei_sub(f, 1, opts, "PLAC") or ei_sub(f, 2, opts, "FILL")
    search = identifier_search(identifier)
    if not search:
        return None
    key = "sr|" + search
    found = bundle.find("ServiceRequest", key)
    if found:
        return found
    stub = {
        "resourceType": "ServiceRequest",
        "identifier": [identifier],
        "status": "unknown",
        "intent": "order",
        "subject": {"reference": subject},
    }
    return bundle.add(stub, key, search=search, method="POST")


def add_service_request(
    bundle: TransactionBundle,
    msg: Message,
    orc_index: int | None,
    obr_index: int | None,
    opts: ConvertOptions,
    subject: str | None,
    encounter: str | None,
    *,
    supporting_info: list[str] | None = None,
    specimens: list[str] | None = None,
) -> str | None:
    """ORC/OBR (1-based occurrences; either may be None) -> ServiceRequest, a conditional
    update on the placer identifier (else the filler's; with ``&code=`` when several OBR of
    the message share the number [ours]); a plain POST without either. Returns the
    reference, or None when not emitted or without a subject (1..1 in R4)."""
    if not opts.emits("ServiceRequest") or not subject:
        return None
    orc_at, obr_at = seg_at(msg, "ORC", orc_index), seg_at(msg, "OBR", obr_index)
    if orc_at is None and obr_at is None:
        return None
    orc = orc_at[1] if orc_at else None
    obr = obr_at[1] if obr_at else None
    tz = opts.timezone
    placer, filler = order_identifiers(orc, obr, opts)
    code = cwe(obr.f(4), opts) if obr else None
    res: dict = {"resourceType": "ServiceRequest"}
    ids = [i for i in (placer, filler) if i]
    if ids:
        res["identifier"] = ids
    if orc:
        group = ei(orc.f(4), opts, "PGN")
        if group:
            res["requisition"] = group
    if obr and (parent := _parent(bundle, obr, opts, subject)):
        res["basedOn"] = [{"reference": parent}]
    res["status"] = _status(orc)
    res["intent"] = "order"
    priority = _priority(orc, obr)
    if priority:
        res["priority"] = priority
    if code:
        res["code"] = code
    res["subject"] = {"reference": subject}
    if encounter:
        res["encounter"] = {"reference": encounter}
    if obr:
        when = dtm(obr.f(6).c(1), tz) or dtm(obr.f(7).c(1), tz)
        if when:
            res["occurrenceDateTime"] = when
    if orc and (authored := dtm(orc.f(9).c(1), tz)):
        res["authoredOn"] = authored
    requester_field = orc.f(12) if orc and orc.f(12) else (obr.f(16) if obr else None)
    if requester_field:
        requester = add_practitioner(bundle, requester_field, opts)
        if requester:
            res["requester"] = requester
    if obr:
        reasons = [c for c in (concept(r, opts) for r in obr.reps(31)) if c]
        if reasons:
            res["reasonCode"] = reasons
    if supporting_info:
        res["supportingInfo"] = [{"reference": r} for r in supporting_info]
    if specimens:
        res["specimen"] = [{"reference": r} for r in specimens]
    if obr_at and (notes := notes_after(msg, obr_at[0], opts)):
        res["note"] = notes

    key_id = placer or filler
    search = identifier_search(key_id)
    if search and obr and shared_order_number(msg, 2 if placer else 3, key_id["value"]):
        search += code_search(code)
    if not search:
        return bundle.add(res, f"sr|obr{obr_index}|orc{orc_index}", method="POST")
    key = "sr|" + search
    existing = bundle.find("ServiceRequest", key)
    if existing:  # a parent stub added for an earlier OBR-29: this order replaces it
        for entry in bundle.entries:
            if entry["fullUrl"] == existing and entry["request"].get("ifNoneExist"):
                entry["resource"] = res
                entry["request"] = {"method": "PUT", "url": f"ServiceRequest?{search}"}
        return existing
    return bundle.add(res, key, search=search, method="PUT")


__all__ = [
    "OrderGroup",
    "Seg",
    "add_service_request",
    "code_search",
    "ei",
    "ei_sub",
    "formatted_text",
    "identifier_search",
    "notes_after",
    "order_groups",
    "order_identifiers",
    "seg_at",
    "shared_order_number",
]
