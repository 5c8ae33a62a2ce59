"""Code tables for the translate step: CSV files and FHIR ConceptMaps in transforms/tables/.

A table is read once per build (``TableCache``, held in ``Runtime.tables``) into an immutable
``CodeTable``; a missing or malformed table raises ``TableError`` naming the file (and the line
of a CSV row), which the step turns into a config error at its ``table`` option.

CSV: a header row naming at least ``source_code`` and ``target_code``; ``target_display``,
``target_system`` and ``source_system`` are optional columns, other columns are ignored. One
row per line; blank lines and lines starting with ``#`` are skipped; cells are stripped.
A row with a ``source_system`` only matches codes of that system (HL7 component 3); a row
without one matches the code in any system, the specific row winning. A source code (with
its source system) appears once.

ConceptMap: FHIR R4 (``target[].equivalence``) or R5 (``target[].relationship``) JSON. Each
``group[].element[].code`` maps to its first target that is not ``unmatched``/``disjoint``
(R4) or ``not-related-to`` (R5); elements without one stay unmapped. ``group[].target``
becomes HL7 component 3. ``group[].source`` is not matched against component 3 (local code
systems are URIs there but ``L``/``99xxx`` in HL7 v2): use the step's ``source_system``
option; a code appearing in two groups is an error.

Target systems: a well-known code system URI becomes its HL7 table 0396 name
(``http://loinc.org`` -> ``LN``, ``http://snomed.info/sct`` -> ``SCT``, see ``HL7_SYSTEMS``),
in CSV and ConceptMap alike; any other value is written as it is.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

TABLES_DIR = Path("transforms") / "tables"

HL7_SYSTEMS = MappingProxyType(
    {
        "http://loinc.org": "LN",
        "http://snomed.info/sct": "SCT",
        "http://unitsofmeasure.org": "UCUM",
        "http://www.nlm.nih.gov/research/umls/rxnorm": "RXNORM",
        "http://hl7.org/fhir/sid/cvx": "CVX",
        "http://hl7.org/fhir/sid/icd-10": "I10",
        "http://hl7.org/fhir/sid/icd-10-cm": "I10C",
        "http://www.ama-assn.org/go/cpt": "C4",
    }
)

_CSV_REQUIRED = ("source_code", "target_code")
_SKIP_R4 = frozenset({"unmatched", "disjoint"})
_SKIP_R5 = frozenset({"not-related-to"})


class TableError(Exception):
    """A table that cannot be used; the text names the file (and line)."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a code maps to: HL7 CWE components 1 (code), 2 (text) and 3 (coding system)."""

    code: str
    display: str = ""
    system: str = ""


def hl7_system(system: str) -> str:
    """The HL7 table 0396 name of a well-known code system URI; other values as they are."""
    return HL7_SYSTEMS.get(system.split("|", 1)[0].rstrip("/"), system)


class CodeTable:
    """An immutable code table: ``lookup(code, system)``."""

    __slots__ = ("_entries", "name", "path")

    def __init__(self, name: str, path: Path, entries: Mapping[tuple[str, str], Target]):
        self.name = name
        self.path = path
        self._entries = MappingProxyType(dict(entries))

    def lookup(self, code: str, system: str | None = None) -> Target | None:
        """The target of ``code``: the entry for its ``system`` when there is one, else the
        entry that holds for any system; None when the code is not mapped."""
        if system:
            found = self._entries.get((code, system))
            if found is not None:
                return found
        return self._entries.get((code, ""))

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<CodeTable {self.name} ({len(self)} codes)>"


class TableCache:
    """Tables by name, each read once per build. ``get`` raises TableError (again, for each
    step that names a broken table, so every use is reported)."""

    def __init__(self, base_dir: Path):
        self.base_dir = Path(base_dir)
        self._loaded: dict[str, CodeTable | TableError] = {}

    def get(self, name: str) -> CodeTable:
        if name not in self._loaded:
            try:
                self._loaded[name] = self._load(name)
            except TableError as exc:
                self._loaded[name] = exc
        found = self._loaded[name]
        if isinstance(found, TableError):
            raise TableError(str(found))
        return found

    def candidates(self, name: str) -> list[Path]:
        """The files a table name stands for, relative to the base directory."""
        if name.endswith((".csv", ".json")):
            return [TABLES_DIR / name]
        return [TABLES_DIR / f"{name}.csv", TABLES_DIR / f"{name}.json"]

    def _load(self, name: str) -> CodeTable:
        tried = self.candidates(name)
        found = [p for p in tried if (self.base_dir / p).is_file()]
        if not found:
            raise TableError(f"table '{name}' not found: tried {' and '.join(map(str, tried))}")
        if len(found) > 1:
            raise TableError(
                f"table '{name}' is ambiguous: both {found[0]} and {found[1]} exist; "
                f"write '{found[0].name}' or '{found[1].name}'"
            )
        shown = found[0]
        try:
            text = (self.base_dir / shown).read_bytes().decode("utf-8-sig")
        except OSError as exc:
            raise TableError(f"{shown}: cannot read: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise TableError(f"{shown}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None
        if shown.suffix == ".csv":
            entries = parse_csv(text, str(shown))
        else:
            entries = parse_conceptmap(text, str(shown))
        if not entries:
            raise TableError(f"{shown}: the table has no mappings")
        return CodeTable(name, self.base_dir / shown, entries)


def table_cache(ctx: Any) -> TableCache:
    """The build's table cache (a new one when the context has none)."""
    return ctx.tables if ctx.tables is not None else TableCache(ctx.base_dir)


# CSV ----------------------------------------------------------------------------------------
def parse_csv(text: str, shown: str) -> dict[tuple[str, str], Target]:
    header: dict[str, int] | None = None
    width = 0
    entries: dict[tuple[str, str], Target] = {}
    lines: dict[tuple[str, str], int] = {}
    # split on line ends only (str.splitlines also breaks at \x0b, \x1c, \u2028...)
    for number, line in enumerate(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            cells = [cell.strip() for cell in next(csv.reader([line], strict=True))]
        except csv.Error as exc:
            raise TableError(f"{shown}:{number}: {exc}") from None
        if header is None:
            header = {name.lower(): i for i, name in enumerate(cells) if name}
            missing = [name for name in _CSV_REQUIRED if name not in header]
            if missing:
                raise TableError(
                    f"{shown}:{number}: the header must name "
                    f"source_code,target_code,target_display,target_system "
                    f"(missing {', '.join(missing)}; got {','.join(cells)})"
                )
            width = len(cells)
            continue
        if len(cells) != width:
            raise TableError(
                f"{shown}:{number}: {len(cells)} values, the header has {width} columns "
                "(quote values that contain commas)"
            )
        row = {name: cells[i] for name, i in header.items()}
        source, target = row["source_code"], row["target_code"]
        if not source:
            raise TableError(f"{shown}:{number}: empty source_code")
        if not target:
            raise TableError(f"{shown}:{number}: empty target_code for source code '{source}'")
        key = (source, row.get("source_system", ""))
        if key in entries:
            raise TableError(
                f"{shown}:{number}: source code {_describe(key)} is already mapped "
                f"on line {lines[key]}"
            )
        lines[key] = number
        display, system = row.get("target_display", ""), row.get("target_system", "")
        entries[key] = Target(target, display, hl7_system(system))
    if header is None:
        raise TableError(
            f"{shown}: no header row (source_code,target_code,target_display,target_system)"
        )
    return entries


def _describe(key: tuple[str, str]) -> str:
    code, system = key
    return f"'{code}' (system {system})" if system else f"'{code}'"


# ConceptMap ---------------------------------------------------------------------------------
def parse_conceptmap(text: str, shown: str) -> dict[tuple[str, str], Target]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TableError(f"{shown}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(doc, dict):
        raise TableError(f"{shown}: expected a FHIR ConceptMap (a JSON object)")
    kind = doc.get("resourceType")
    if kind != "ConceptMap":
        raise TableError(f'{shown}: resourceType is {json.dumps(kind)}, expected "ConceptMap"')
    groups = doc.get("group", [])
    if not isinstance(groups, list):
        raise TableError(f"{shown}: group must be a list")
    entries: dict[tuple[str, str], Target] = {}
    where: dict[tuple[str, str], str] = {}
    for g, group in enumerate(groups):
        at = f"group[{g}]"
        if not isinstance(group, dict):
            raise TableError(f"{shown}: {at} must be an object")
        system = _text(group.get("target"), shown, f"{at}.target")
        elements = group.get("element", [])
        if not isinstance(elements, list):
            raise TableError(f"{shown}: {at}.element must be a list")
        for e, element in enumerate(elements):
            eat = f"{at}.element[{e}]"
            if not isinstance(element, dict):
                raise TableError(f"{shown}: {eat} must be an object")
            code = _text(element.get("code"), shown, f"{eat}.code")
            if not code:
                raise TableError(f"{shown}: {eat} has no code")
            target = _first_target(element, shown, eat, hl7_system(system))
            if target is None:
                continue
            key = (code, "")
            if key in entries:
                raise TableError(
                    f"{shown}: {eat}: source code '{code}' is already mapped at {where[key]}"
                )
            where[key] = eat
            entries[key] = target
    return entries


def _first_target(element: dict, shown: str, eat: str, system: str) -> Target | None:
    targets = element.get("target", [])
    if not isinstance(targets, list):
        raise TableError(f"{shown}: {eat}.target must be a list")
    for t, target in enumerate(targets):
        tat = f"{eat}.target[{t}]"
        if not isinstance(target, dict):
            raise TableError(f"{shown}: {tat} must be an object")
        equivalence = _text(target.get("equivalence"), shown, f"{tat}.equivalence")
        relationship = _text(target.get("relationship"), shown, f"{tat}.relationship")
        if equivalence in _SKIP_R4 or relationship in _SKIP_R5:
            continue
        code = _text(target.get("code"), shown, f"{tat}.code")
        if not code:
            raise TableError(f"{shown}: {tat} has no code")
        display = _text(target.get("display"), shown, f"{tat}.display")
        return Target(code, display, system)
    return None


def _text(value: Any, shown: str, at: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TableError(f"{shown}: {at} must be a string, got {json.dumps(value)}")
    return value.strip()


__all__ = [
    "HL7_SYSTEMS",
    "CodeTable",
    "TableCache",
    "TableError",
    "Target",
    "hl7_system",
    "parse_conceptmap",
    "parse_csv",
    "table_cache",
]
