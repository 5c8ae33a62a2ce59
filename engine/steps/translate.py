"""translate: map the codes of a coded field (CWE/CE) through a code table.

Component 1 of the field is the code, 2 its text, 3 the coding system. A mapped code gets
the table's target code, text and system in components 1-3; with ``keep_original`` the
original code, text and system move to components 4-6 (the alternate identifier). A target
without text keeps the original text. Other components are left as they are.

Tables are ``transforms/tables/<name>.csv`` or ``<name>.json`` (a FHIR ConceptMap), see
``engine.steps.tables``. A missing or malformed table is a config error at ``table``.
"""

from __future__ import annotations

from typing import Any

from yaml.nodes import MappingNode, Node, ScalarNode

from engine.config import Field, Spec
from engine.config.routes_spec import NAME_HINT, NAME_PATTERN
from engine.config.scalars import Bool, Enum, String
from engine.config.validation import INVALID, Ctx
from engine.hl7.escape import escape, unescape
from engine.hl7.fieldtypes import FieldPath
from engine.hl7.path import ALL, Path, PathError, parse_path
from engine.steps.base import Step, StepBuildError, StepError, step_kind
from engine.steps.tables import TableError, Target, table_cache


def _key_node(node: Node, name: str) -> Node:
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == name:
                return key if name == "default" else value
    return node


def _finish(value: dict[str, Any], node: MappingNode, ctx: Ctx, where: str) -> None:
    path = value.get("field")
    if isinstance(path, str) and parse_path(path).component is not None:
        ctx.error(
            _key_node(node, "field"),
            f"'field' names the coded field itself (like OBX[*]-3), not a component: {path}",
        )
    mode = value.get("on_missing")
    if mode == "default" and value.get("default") is None:
        ctx.error(_key_node(node, "on_missing"), f"on_missing 'default' needs 'default' in {where}")
    elif mode not in ("default", INVALID) and value.get("default") is not None:
        ctx.error(
            _key_node(node, "default"),
            f"key 'default' only applies with on_missing: default (here: {mode}) in {where}",
        )


TRANSLATE = Spec(
    "translate",
    "Translate the codes of a coded field (CWE/CE: code^text^system) through a code table "
    "in transforms/tables/ (CSV or FHIR ConceptMap JSON). With [*] every occurrence is "
    "translated. Codes not in the table count in switchboard_unmapped_codes{table}.",
    (
        Field("field", FieldPath(), "The coded field; component 1 is the code, 2 the text, "
              "3 the coding system.", required=True, example="OBX[*]-3"),
        Field("table", String(NAME_PATTERN, NAME_HINT), "The table: "
              "transforms/tables/<table>.csv or <table>.json (a FHIR ConceptMap); name the "
              "extension when both exist.", required=True, example="lab-to-loinc"),
        Field("keep_original", Bool(), "Keep the original code, text and system as the "
              "alternate coding (components 4-6).", default=False),
        Field("on_missing", Enum("keep", "error", "default"), "A code not in the table: keep "
              "it, fail the message, or write `default`.", default="keep"),
        Field("default", String(), "With on_missing: default, what is written for unmapped "
              "codes: CODE or CODE^TEXT^SYSTEM.", example="UNK^Unknown^NULLFL"),
        Field("source_system", String(), "Only translate codes whose coding system "
              "(component 3) is this; other codes are left alone.", example="L"),
    ),
    finish=_finish,
)  # fmt: skip


def _places(message, path: Path):
    """Every repetition of the field that ``path`` names, as concrete paths."""
    occurrences = (
        range(1, len(message.segment_indexes(path.segment)) + 1)
        if path.occurrence == ALL
        else [path.occurrence]
    )
    for occ in occurrences:
        base = f"{path.segment}[{occ}]-{path.field}"
        if path.repetition == ALL:
            count = sum(1 for _ in message.iter_values(f"{base}[*]", decode=False))
            reps: list[int | None] = list(range(1, count + 1))
        else:
            reps = [path.repetition]
        for rep in reps:
            text = base if rep is None else f"{base}[{rep}]"
            yield Path(path.segment, occ, path.field, rep, text=text)


@step_kind(
    "translate",
    TRANSLATE,
    example="translate: {field: 'OBX[*]-3', table: lab-to-loinc, keep_original: true}\n"
    "translate: {field: 'OBX[*]-3', table: lab-to-loinc, on_missing: error, source_system: L}",
)
class Translate(Step):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.path = parse_path(config.field)
        self.table_name = config.table
        try:
            self.table = table_cache(ctx).get(self.table_name)
        except TableError as exc:
            raise StepBuildError(str(exc), key="table") from None
        self.keep_original = config.keep_original
        self.on_missing = config.on_missing
        self.source_system = config.source_system
        default = config.default
        self.default = None if default is None else Target(*[*default.split("^"), "", ""][:3])

    def run(self, message, ctx):
        sep, enc = message.sep, message.enc
        for path in _places(message, self.path):
            raw = message.get_raw(path)
            if not raw:
                continue
            comps = raw.split(enc[0])
            code = unescape(comps[0], sep, enc)
            if not code:
                continue
            system = unescape(comps[2], sep, enc) if len(comps) > 2 else ""
            if self.source_system is not None and system != self.source_system:
                continue
            target = self.table.lookup(code, system)
            if target is None:
                self._count_unmapped()
                if self.on_missing == "keep":
                    continue
                if self.on_missing == "error":
                    in_system = f" (system {system})" if system else ""
                    raise StepError(
                        f"code '{code}'{in_system} at {path} is not in table '{self.table_name}'"
                    )
                target = self.default
            try:
                message.set(path, self._coded(comps, target, sep, enc), raw=True)
            except PathError as exc:
                raise StepError(str(exc)) from None

    def _coded(self, comps: list[str], target: Target, sep: str, enc: str) -> str:
        out = list(comps)
        while len(out) < (6 if self.keep_original else 3):
            out.append("")
        if self.keep_original:
            out[3:6] = [*comps, "", ""][:3]
        out[0] = escape(target.code, sep, enc)
        if target.display:
            out[1] = escape(target.display, sep, enc)
        out[2] = escape(target.system, sep, enc)
        while len(out) > len(comps) and out[-1] == "":
            out.pop()
        return enc[0].join(out)

    def _count_unmapped(self) -> None:
        metrics = self.ctx.metrics
        if metrics is not None:
            metrics.unmapped_codes.labels(self.table_name).inc()


__all__ = ["TRANSLATE", "Translate"]
