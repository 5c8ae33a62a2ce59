"""Field paths analysts read and write: ``PID-3``, ``PID-3.1``, ``PID-3[2].1``, ``OBX[3]-5``,
``OBX[*]-3``, ``PID-5.1.2``, ``PID-3[*].1`` and whole segments ``OBX[2]``.

Numbers are 1-based as in the HL7 standard. Without ``[n]`` a segment path means the first
occurrence and a field path the first repetition; ``[*]`` means every one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import lru_cache

ALL = -1  # "[*]"

_PATH = re.compile(
    r"""^(?P<seg>[A-Z][A-Z0-9]{2})
        (?:\[(?P<occ>\*|[1-9][0-9]*)\])?
        (?:-(?P<field>[1-9][0-9]*)
            (?:\[(?P<rep>\*|[1-9][0-9]*)\])?
            (?:\.(?P<comp>[1-9][0-9]*)
                (?:\.(?P<sub>[1-9][0-9]*))?
            )?
        )?$""",
    re.X,
)


class PathError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Path:
    segment: str
    occurrence: int = 1  # ALL for [*]
    field: int | None = None
    repetition: int | None = None  # None: not written (the first); ALL for [*]
    component: int | None = None
    subcomponent: int | None = None
    text: str = ""

    @property
    def is_segment(self) -> bool:
        return self.field is None

    @property
    def many(self) -> bool:
        return self.occurrence == ALL or self.repetition == ALL

    def __str__(self) -> str:
        return self.text

    def at(self, occurrence: int) -> Path:
        """The same path for one occurrence of its segment (``OBX[*]-3`` -> ``OBX[2]-3``)."""
        rest = self.text[self.text.index("-") :] if self.field is not None else ""
        return replace(self, occurrence=occurrence, text=f"{self.segment}[{occurrence}]{rest}")


def _num(s: str | None, default: int | None) -> int | None:
    if s is None:
        return default
    return ALL if s == "*" else int(s)


@lru_cache(maxsize=4096)
def parse_path(text: str) -> Path:
    """Parse a path, or raise PathError saying what a path looks like (cached: paths repeat)."""
    m = _PATH.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise PathError(
            f"{text!r} is not a field path; write SEG[-field[.component[.subcomponent]]] with "
            "optional [n] or [*] after the segment or field, like PID-3.1, OBX[2]-5, PID-3[2].1"
        )
    seg = m.group("seg")
    field = _num(m.group("field"), None)
    if seg == "MSH" and field in (1, 2) and (m.group("comp") or m.group("rep")):
        raise PathError(f"{text!r}: MSH-1 and MSH-2 are the delimiters, they have no parts")
    return Path(
        segment=seg,
        occurrence=_num(m.group("occ"), 1),
        field=field,
        repetition=_num(m.group("rep"), None),
        component=_num(m.group("comp"), None),
        subcomponent=_num(m.group("sub"), None),
        text=text.strip(),
    )
