"""Reading the message for the mappings: segments split once into V2 views, field paths,
the ORC/OBR/OBX/SPM grouping of order messages, and NTE notes."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

from engine.fhir.datatypes import V2, dtm
from engine.fhir.people import add_practitioner
from engine.hl7.message import Message

NULL = '""'  # HL7 "explicit null": treated as empty (a PUT replaces the resource anyway)
NOTE_SKIP = frozenset({"PRT", "TQ1", "TQ2", "TCD", "CTD", "RXR", "RXC"})  # before an NTE


EMPTY = V2("")


class Seg:
    """One segment split once into fields (MSH too: ``f(n)`` is MSH-n). ``f(n)`` is the first
    repetition of field n as a V2 view, ``reps(n)`` the non-empty ones; ``""`` is empty."""

    __slots__ = ("enc", "fields", "pos", "sep")

    def __init__(self, msg: Message, pos: int):
        self.sep, self.enc, self.pos = msg.sep, msg.enc, pos
        fields = msg.segments[pos].split(msg.sep)
        if fields[0] == "MSH":
            fields.insert(1, msg.sep)
        self.fields = fields

    def raw(self, n: int) -> str:
        fields = self.fields
        return fields[n] if n < len(fields) else ""

    def f(self, n: int) -> V2:
        fields = self.fields
        raw = fields[n] if n < len(fields) else ""
        if not raw or raw == NULL:
            return EMPTY
        cut = raw.find(self.enc[1])
        if cut >= 0:
            raw = raw[:cut]
        return V2(_drop_nulls(raw, self.enc), self.sep, self.enc)

    def reps(self, n: int) -> list[V2]:
        raw = self.raw(n)
        if not raw or raw == NULL:
            return []
        sep, enc = self.sep, self.enc
        if enc[1] not in raw:  # one repetition: the common case
            v = V2(_drop_nulls(raw, enc), sep, enc)
            return [v] if v else []
        out = [V2(_drop_nulls(r, enc), sep, enc) for r in raw.split(enc[1]) if r and r != NULL]
        return [v for v in out if v]

    def code(self, n: int) -> str:
        """Component 1 of field n, upper-cased (an ID/IS code; no escapes expected)."""
        raw = self.raw(n)
        if not raw:
            return ""
        code = raw.split(self.enc[0], 1)[0].split(self.enc[1], 1)[0].strip().upper()
        return "" if code == NULL else code

    def valued(self) -> list[int]:
        """The numbers of the fields that hold something (for the coverage checklist)."""
        strip = self.enc[0] + self.enc[1] + self.enc[3] + " "
        start = 3 if self.fields[0] == "MSH" else 1
        return [n for n in range(start, len(self.fields))
                if self.fields[n].strip(strip) and self.fields[n] != NULL]  # fmt: skip


def _drop_nulls(raw: str, enc: str) -> str:
    if NULL not in raw:
        return raw
    comps = []
    for comp in raw.split(enc[0]):
        subs = ["" if s.strip() == NULL else s for s in comp.split(enc[3])]
        comps.append(enc[3].join(subs))
    return enc[0].join(comps)


def segs(msg: Message, name: str) -> list[Seg]:
    return [Seg(msg, pos) for pos in msg.segment_indexes(name)]


def first(msg: Message, name: str) -> Seg | None:
    idx = msg.segment_indexes(name)
    return Seg(msg, idx[0]) if idx else None


def seg_at(msg: Message, name: str, occurrence: int | None) -> tuple[int, Seg] | None:
    """(position, view) of the ``occurrence``-th (1-based) segment ``name``, or None."""
    if not occurrence:
        return None
    idx = msg.segment_indexes(name)
    if not 1 <= occurrence <= len(idx):
        return None
    pos = idx[occurrence - 1]
    return pos, Seg(msg, pos)


def following(msg: Message, pos: int, names: tuple[str, ...], stop: tuple[str, ...]) -> list[Seg]:
    """The segments named ``names`` after ``pos``, until one named ``stop`` (or the end)."""
    out = []
    for i in range(pos + 1, len(msg.segments)):
        sid = msg.segments[i][:3]
        if sid in stop:
            break
        if sid in names:
            out.append(Seg(msg, i))
    return out


@dataclass(slots=True)
class OrderGroup:
    """An OBR with its ORC (occurrence, or None), its OBX (occurrence and the index into
    ``spm`` of the SPM it follows, -1 for result OBX) and its SPM segments (positions)."""

    orc: int | None
    obr: int
    obr_pos: int
    obx: list[tuple[int, int]] = dc_field(default_factory=list)
    spm: list[int] = dc_field(default_factory=list)


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


# notes -----------------------------------------------------------------------------------------
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


def notes_after(msg: Message, pos: int, opts, bundle=None) -> list[dict]:
    """The NTE segments following the segment at ``pos`` -> Annotations (NTE[Observation]
    map): NTE-3 (repeats joined by new lines) text, NTE-5 authorReference (a Practitioner;
    authorString when no bundle is given), NTE-6 time."""
    notes = []
    segments, esc = msg.segments, msg.enc[2]
    for i in range(pos + 1, len(segments)):
        sid = segments[i][:3]
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
            if bundle is not None:
                who = add_practitioner(bundle, author, opts)
                if who and who.get("reference"):
                    note["authorReference"] = who
                elif who:
                    note["authorString"] = who.get("display", "")
            else:
                name = " ".join(x for x in (author.c(3), author.s(2, 1) or author.c(2)) if x)
                if name:
                    note["authorString"] = name
        when = dtm(nte.f(6).c(1), opts.timezone)
        if when and "T" in when:
            note["time"] = when
        notes.append(note)
    return notes
