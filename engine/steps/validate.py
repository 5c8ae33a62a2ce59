"""validate: HL7 v2 structure and data-type rules of the message's version, from hl7apy.

hl7apy's own validator stops at the first problem and does not say where it is, so this step
walks the message itself with hl7apy's reference tables (message structures, segment and
data-type definitions) and its data-type classes, and reports every failure as one ERR
(protocol.md cases 42 and 43) with its location and its HL7 table 0357 code:

* 100 segment sequence error: a segment that is not part of the message structure, comes out
  of order or repeats too often, or a required segment (group) that is missing;
* 101 required field missing;
* 102 data type error: a value that is not a valid NM, SI, DT, TM, DTM (also the first
  component of TS in versions before 2.5, where hl7apy types it ST), a value longer than its
  type allows (ST 199, IS 20, SI 4, NM 16), a field repeating more often than allowed;
  OBX-5 is checked as the type OBX-2 names;
* 103 table value not found (``tables: true``): an ID value missing from its HL7 table,
  or an MSH-9.3 message structure the version does not define;
* 200 no message structure for MSH-9 in the version (``structure: true``);
* 203 unsupported version (MSH-12.1, or ``version``).

The structure is MSH-9.3 when the version defines it, else derived from MSH-9.1/9.2 (the
type_trigger name, or HL7 table 0354 for events sharing a structure, e.g. ADT^A04 ->
ADT_A01), else MSH-9.1 alone (ACK). Fields beyond those the version defines, extra
components and subcomponents nested deeper than a component are not checked, nor are
``""`` (null) values and Z segments (they may be reported as unexpected segments with
``ignore_z_segments: false``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import hl7apy
from hl7apy import base_datatypes
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.exceptions import HL7apyException, MaxLengthReached
from hl7apy.factories import datatype_factory, datetime_factory

from engine.config import Field, Spec
from engine.config.scalars import Bool, Enum
from engine.hl7.ack import AckError
from engine.hl7.escape import unescape
from engine.steps.base import Step, StepError, step_kind

VERSIONS = tuple(sorted(hl7apy.SUPPORTED_LIBRARIES, key=lambda v: tuple(map(int, v.split(".")))))

VALIDATE = Spec(
    "validate",
    "Check the message against the HL7 v2 rules of its version (hl7apy's tables): every "
    "failure becomes one ERR with its location (AE in after_routing mode).",
    (
        Field("version", Enum(*VERSIONS), "Validate as this version instead of MSH-12.",
              example="2.5"),
        Field("structure", Bool(), "Check segment order and cardinality against the message "
              "structure (MSH-9.3, or derived from MSH-9 type and trigger).", default=True),
        Field("datatypes", Bool(), "Check fields: required ones present, repetitions, data "
              "types (NM, SI, DT, TM, DTM/TS...) and lengths.", default=True),
        Field("tables", Bool(), "Check ID values against their HL7 tables (error 103).",
              default=False),
        Field("ignore_z_segments", Bool(), "Accept Z segments anywhere.", default=True),
    ),
)  # fmt: skip

# HL7 table 0354: events whose message structure is another event's (first known one wins:
# versions before 2.4 lack some of the newer structures).
_SHARED = {
    **dict.fromkeys(("A01", "A04", "A08", "A13"), ("ADT_A01",)),
    **dict.fromkeys(("A05", "A14", "A28", "A31"), ("ADT_A05", "ADT_A01")),
    **dict.fromkeys(("A06", "A07"), ("ADT_A06",)),
    **dict.fromkeys(("A09", "A10", "A11"), ("ADT_A09",)),
    "A12": ("ADT_A12", "ADT_A09"),
    "A15": ("ADT_A15", "ADT_A09"),
    **dict.fromkeys(
        ("A21", "A22", "A23", "A25", "A26", "A27", "A29", "A32", "A33"), ("ADT_A21", "ADT_A09")
    ),
    **dict.fromkeys(("A34", "A35", "A36", "A46", "A47", "A48", "A49"), ("ADT_A30",)),
    **dict.fromkeys(("A40", "A41", "A42"), ("ADT_A39",)),
    "A44": ("ADT_A43",),
    "A51": ("ADT_A50",),
    **dict.fromkeys(("A53", "A55"), ("ADT_A52",)),
    "A62": ("ADT_A61",),
}
_SHARED_BY_TYPE = {
    "ADT": _SHARED,
    "SIU": {f"S{n}": ("SIU_S12",) for n in range(12, 27)},
    "MDM": {f"T{n:02d}": (f"MDM_T0{2 - n % 2}",) for n in range(1, 12)},
    "BAR": {"P05": ("BAR_P05", "BAR_P01")},
}

_NM = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")
_SI = re.compile(r"\d+")


# structure --------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Node:
    name: str  # segment id or group name
    min: int
    max: int  # -1: unbounded
    children: tuple[_Node, ...] | None  # None: a segment
    firsts: frozenset[str]  # segments that can start it
    lead: str  # the segment named when it is missing


def _node(name: str, ref: Any, card: tuple[int, int], kind: str) -> _Node:
    if kind != "GRP":
        return _Node(name, card[0], card[1], None, frozenset((name,)), name)
    choice = ref[0] == "choice"
    children = tuple(_node(c[0], c[1], (0, c[2][1]) if choice else c[2], c[3]) for c in ref[1])
    return _group(name, card, children)


def _group(name: str, card: tuple[int, int], children: tuple[_Node, ...]) -> _Node:
    firsts: set[str] = set()
    for child in children:
        firsts |= child.firsts
        if child.min > 0:
            break
    lead = next((c.lead for c in children if c.min > 0), children[0].lead if children else name)
    return _Node(name, card[0], card[1], children, frozenset(firsts), lead)


@lru_cache(maxsize=512)
def _structure(version: str, name: str) -> _Node | None:
    lib = hl7apy.load_library(version)
    ref = lib.MESSAGES.get(name)
    if ref is None:
        return None
    return _node(name, ref, (1, 1), "GRP")


class _Frame:
    __slots__ = ("count", "group", "idx")

    def __init__(self, group: _Node):
        self.group = group
        self.idx = 0
        self.count = 0  # occurrences of children[idx] so far


def _find(frame: _Frame, seg: str) -> int | None:
    children = frame.group.children or ()
    for j in range(frame.idx, len(children)):
        child = children[j]
        reps = frame.count if j == frame.idx else 0
        if child.max != -1 and reps >= child.max:
            continue
        if seg in child.firsts:
            return j
    return None


class _StructureWalk:
    """Places segments in the structure tree, greedily and in order (as HAPI does)."""

    def __init__(self, root: _Node, missing):
        self.stack = [_Frame(root)]
        self.missing = missing  # missing(node, group) for a required child left out

    def place(self, seg: str) -> bool:
        for level in range(len(self.stack) - 1, -1, -1):
            frame = self.stack[level]
            j = _find(frame, seg)
            if j is None:
                continue
            for deeper in reversed(self.stack[level + 1 :]):
                self._close(deeper)
            del self.stack[level + 1 :]
            self._advance(frame, j)
            child = (frame.group.children or ())[j]
            while child.children is not None:
                inner = _Frame(child)
                self.stack.append(inner)
                k = _find(inner, seg)
                if k is None:  # cannot happen: seg is in child.firsts
                    return False
                self._advance(inner, k)
                child = child.children[k]
            return True
        return False

    def _advance(self, frame: _Frame, j: int) -> None:
        if j == frame.idx:
            frame.count += 1
            return
        children = frame.group.children or ()
        for k in range(frame.idx, j):
            reps = frame.count if k == frame.idx else 0
            if reps < children[k].min:
                self.missing(children[k], frame.group)
        frame.idx, frame.count = j, 1

    def _close(self, frame: _Frame) -> None:
        children = frame.group.children or ()
        for k in range(frame.idx, len(children)):
            reps = frame.count if k == frame.idx else 0
            if reps < children[k].min:
                self.missing(children[k], frame.group)

    def finish(self) -> None:
        for frame in reversed(self.stack):
            self._close(frame)
        del self.stack[1:]


def _segments_in(node: _Node) -> set[str]:
    if node.children is None:
        return {node.name}
    out: set[str] = set()
    for child in node.children:
        out |= _segments_in(child)
    return out


# fields -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _FieldDef:
    number: int
    name: str  # long name, lower case
    min: int
    max: int
    ref: Any  # hl7apy reference: ('leaf'|'sequence', children, datatype, long name, table, len)


@lru_cache(maxsize=4096)
def _segment_fields(version: str, segment: str) -> tuple[_FieldDef, ...] | None:
    lib = hl7apy.load_library(version)
    ref = lib.SEGMENTS.get(segment)
    if ref is None:
        return None
    defs = []
    for name, fref, card, _ in ref[1]:
        number = int(name.rsplit("_", 1)[1])
        long_name = (fref[3] or "").replace("_", " ").lower()
        defs.append(_FieldDef(number, long_name, card[0], card[1], fref))
    return tuple(defs)


@dataclass
class _Loc:
    segment: str
    occurrence: int
    field: int
    repetition: int = 1
    component: int | None = None
    subcomponent: int | None = None

    def __str__(self) -> str:
        text = self.segment + (f"[{self.occurrence}]" if self.occurrence > 1 else "")
        text += f"-{self.field}" + (f"[{self.repetition}]" if self.repetition > 1 else "")
        if self.component is not None:
            text += f".{self.component}"
            if self.subcomponent is not None:
                text += f".{self.subcomponent}"
        return text

    def error(self, code: int, detail: str) -> AckError:
        return AckError(
            code,
            detail,
            self.segment,
            self.field,
            self.occurrence,
            self.component,
            repetition=self.repetition if self.repetition > 1 else None,
            subcomponent=self.subcomponent,
        )


class _Checker:
    """Checks one message's fields for one version; collects AckErrors."""

    def __init__(self, version: str, sep: str, enc: str, tables: bool):
        self.version = version
        self.lib = hl7apy.load_library(version)
        self.base = frozenset(self.lib.get_base_datatypes())
        self.structs = self.lib.DATATYPES_STRUCTS
        self.sep, self.enc = sep, enc
        self.comp, self.rep, self.sub = enc[0], enc[1], enc[3]
        self.tables = tables
        self.errors: list[AckError] = []

    def segment(self, fields: list[str], occurrence: int, defs: tuple[_FieldDef, ...]) -> None:
        name = fields[0]
        for d in defs:
            if name == "MSH" and d.number <= 2:
                continue
            raw = fields[d.number] if d.number < len(fields) else ""
            loc = _Loc(name, occurrence, d.number)
            if raw == "":
                if d.min > 0:
                    self.errors.append(loc.error(101, f"{loc} ({d.name}) is required"))
                continue
            reps = raw.split(self.rep)
            if d.max != -1 and len(reps) > d.max:
                allowed = "does not repeat" if d.max == 1 else f"repeats at most {d.max} times"
                self.errors.append(
                    loc.error(102, f"{loc} ({d.name}) {allowed}, got {len(reps)} repetitions")
                )
            ref = d.ref
            if name == "OBX" and d.number == 5:
                ref = self._obx5_ref(fields)
                if ref is None:
                    continue
            for r, text in enumerate(reps, 1):
                if text:
                    self.value(ref, text, _Loc(name, occurrence, d.number, r))

    def _obx5_ref(self, fields: list[str]) -> Any:
        value_type = fields[2].split(self.comp)[0].strip() if len(fields) > 2 else ""
        if value_type in self.base:
            return ("leaf", None, value_type, "observation value", None, -1)
        if value_type in self.structs:
            return ("sequence", self.structs[value_type], value_type, "observation value", None, -1)
        return None

    def value(self, ref: Any, text: str, loc: _Loc) -> None:
        """One repetition of a field."""
        has_components = self.comp in text
        parts = text.split(self.comp)
        if ref[0] == "leaf":
            first = parts[0].split(self.sub)[0]
            if has_components:
                loc.component = 1
            self.leaf(ref[2], ref[4], first, loc)
            return
        children = ref[1]
        for i, part in enumerate(parts[: len(children)], 1):
            if not part:
                continue
            cref = children[i - 1][1]
            cloc = _Loc(loc.segment, loc.occurrence, loc.field, loc.repetition,
                        i if has_components else None)  # fmt: skip
            if cref[0] == "leaf":
                datatype = "DTM" if ref[2] == "TS" and i == 1 else cref[2]
                self.leaf(datatype, cref[4], part.split(self.sub)[0], cloc)
                continue
            has_subs = self.sub in part
            if has_subs and cloc.component is None:
                cloc.component = i
            for s, subpart in enumerate(part.split(self.sub)[: len(cref[1])], 1):
                sref = cref[1][s - 1][1]
                if not subpart or sref[0] != "leaf":
                    continue
                sloc = _Loc(cloc.segment, cloc.occurrence, cloc.field, cloc.repetition,
                            cloc.component, s if has_subs else None)  # fmt: skip
                datatype = "DTM" if cref[2] == "TS" and s == 1 else sref[2]
                self.leaf(datatype, sref[4], subpart, sloc)

    def leaf(self, datatype: str, table: str | None, raw: str, loc: _Loc) -> None:
        if raw in ("", '""'):
            return
        value = unescape(raw, self.sep, self.enc)
        problem = self._check(datatype, value)
        if problem:
            self.errors.append(loc.error(102, f"{loc} {problem}"))
            return
        if self.tables and datatype == "ID" and table:
            entry = self.lib.TABLES.get(table)
            values = entry[1] if entry else ()
            if values and value not in values:
                number = table[3:] if table.startswith("HL7") else table
                self.errors.append(
                    loc.error(103, f"{loc} {_show(value)} is not in HL7 table {number}")
                )

    def _check(self, datatype: str, value: str) -> str | None:
        try:
            if datatype == "DTM":
                datetime_factory(value, base_datatypes.DTM)
            elif datatype in self.base:
                datatype_factory(datatype, value, self.version, VALIDATION_LEVEL.STRICT)
            else:
                return None  # varies, or a type hl7apy has no class for
        except MaxLengthReached as exc:
            if datatype == "WD":
                return f"is withdrawn in HL7 {self.version} and must be empty"
            return f"has {len(value)} characters; {datatype} allows {exc.limit}"
        except (ValueError, TypeError, HL7apyException):
            return f"{_show(value)} is not a valid {datatype}"
        if datatype == "NM" and not _NM.fullmatch(value):
            return f"{_show(value)} is not a valid NM"
        if datatype == "SI" and not _SI.fullmatch(value):
            return f"{_show(value)} is not a valid SI"
        return None


def _show(value: str) -> str:
    return repr(value if len(value) <= 30 else value[:27] + "...")


# the step ---------------------------------------------------------------------------------
@step_kind(
    "validate",
    VALIDATE,
    example="validate: {}\nvalidate: {version: '2.5', structure: false}",
)
class Validate(Step):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.version = config.version
        self.structure = config.structure
        self.datatypes = config.datatypes
        self.tables = config.tables
        self.ignore_z = config.ignore_z_segments
        if self.version:  # load hl7apy's tables now rather than on the first message
            hl7apy.load_library(self.version)

    def run(self, message, ctx):
        try:
            errors = self.check(message)
        except StepError:
            raise
        except Exception as exc:  # hl7apy or an odd message: never anything but a StepError
            raise StepError(f"validation could not run: {type(exc).__name__}: {exc}") from None
        if errors:
            what = "validation error" if len(errors) == 1 else "validation errors"
            raise StepError(f"{len(errors)} {what}: {errors[0].detail}", errors=errors,
                            code=errors[0].code)  # fmt: skip
        return None

    def check(self, message) -> list[AckError]:
        sep, enc = message.sep, message.enc
        segments = [_split(s, sep) for s in message.segments]
        msh = segments[0]
        version = self.version or _component(msh, 12, enc)
        if version not in hl7apy.SUPPORTED_LIBRARIES:
            detail = "MSH-12 (version id) is empty"
            if version:
                known = ", ".join(VERSIONS)
                detail = f"HL7 version {version!r} is not supported (hl7apy knows {known})"
            raise StepError(detail, errors=[AckError(203, detail, "MSH", 12)], code=203)
        errors: list[AckError] = []
        if self.structure:
            errors += self._check_structure(segments, version, enc)
        if self.datatypes:
            checker = _Checker(version, sep, enc, self.tables)
            seen: dict[str, int] = {}
            for fields in segments:
                name = fields[0]
                seen[name] = seen.get(name, 0) + 1
                defs = _segment_fields(version, name)
                if defs is not None:
                    checker.segment(fields, seen[name], defs)
            errors += checker.errors
        return errors

    def _check_structure(self, segments, version, enc) -> list[AckError]:
        errors: list[AckError] = []
        msh = segments[0]
        code, trigger = _component(msh, 9, enc, 1), _component(msh, 9, enc, 2)
        declared = _component(msh, 9, enc, 3)
        lib = hl7apy.load_library(version)
        candidates = [
            f"{code}_{trigger}",
            *_SHARED_BY_TYPE.get(code, {}).get(trigger, ()),
            code,
        ]
        if declared:
            if declared in lib.MESSAGES:
                candidates.insert(0, declared)
            else:
                errors.append(AckError(103, f"MSH-9.3 message structure {declared!r} is not "
                                       f"defined in HL7 {version}", "MSH", 9, 1, 3))  # fmt: skip
        name = next((c for c in candidates if c in lib.MESSAGES), None)
        root = _structure(version, name) if name else None
        if root is None:
            shown = "^".join(x for x in (code, trigger) if x) or "(empty)"
            errors.append(AckError(200, f"HL7 {version} defines no message structure for "
                                   f"MSH-9 {shown}", "MSH", 9))  # fmt: skip
            return errors
        known = _segments_in(root)

        def missing(node: _Node, group: _Node) -> None:
            if node.children is None:
                detail = f"required segment {node.name} is missing ({name})"
            else:
                detail = f"required group {_short(node.name, name)} (starting with {node.lead})"
                detail += f" is missing ({name})"
            errors.append(AckError(100, detail, node.lead))

        walk = _StructureWalk(root, missing)
        seen: dict[str, int] = {}
        for fields in segments:
            seg = fields[0]
            seen[seg] = seen.get(seg, 0) + 1
            if seg.startswith("Z") and self.ignore_z:
                continue
            if walk.place(seg):
                continue
            if seg in known:
                detail = f"segment {seg} is not allowed at this position in {name}"
            elif _segment_fields(version, seg) is None and not seg.startswith("Z"):
                detail = f"segment {seg} is not defined in HL7 {version}"
            else:
                detail = f"segment {seg} is not part of {name}"
            errors.append(AckError(100, detail, seg, None, seen[seg]))
        walk.finish()
        return errors


def _short(group: str, structure: str) -> str:
    """ORU_R01_ORDER_OBSERVATION -> ORU_R01.ORDER_OBSERVATION"""
    prefix = structure + "_"
    return structure + "." + group[len(prefix) :] if group.startswith(prefix) else group


def _split(segment: str, sep: str) -> list[str]:
    """Fields by their HL7 number: MSH-1 is the field separator."""
    parts = segment.split(sep)
    if parts[0] == "MSH":
        return ["MSH", sep, *parts[1:]]
    return parts


def _component(fields: list[str], number: int, enc: str, component: int = 1) -> str:
    if number >= len(fields):
        return ""
    first = fields[number].split(enc[1])[0]
    parts = first.split(enc[0])
    return parts[component - 1].strip() if component <= len(parts) else ""


__all__ = ["VALIDATE", "Validate"]
