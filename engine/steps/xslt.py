"""xslt: transform the message as HL7 v2.xml with an XSLT 1.0 stylesheet (lxml/libxslt).

The message goes through ``engine.hl7.xml.to_xml`` (layout and naming in that module: flat
segments, ``<PID.5><PID.5.1>DOE</PID.5.1>...``, namespace ``urn:hl7-org:v2xml``), the
stylesheet, and ``from_xml``; the result replaces the message, which is marked changed only
when its text differs. The stylesheet is compiled once, when the channel is built; it may
read files (``document()``) but not write them or use the network. Parameters are passed
as strings (``$name`` in the stylesheet). ``<xsl:message terminate="yes">`` fails the
message with the message's text as the reason.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree
from yaml.nodes import MappingNode, Node, ScalarNode

from engine.config import Field, Spec
from engine.config.errors import display_path
from engine.config.fieldtypes import FilePath
from engine.config.validation import At, Ctx, FieldType, is_null, node_kind
from engine.hl7.xml import XmlError, from_xml, to_xml
from engine.steps.base import Step, StepBuildError, StepError, step_kind

_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


class XsltParams(FieldType):
    """`{name: value}`: each value is taken as the text written (`2.50` stays "2.50")."""

    name = "mapping of parameter name to text"

    def check(self, node: Node, ctx: Ctx, at: At) -> Any:
        if not isinstance(node, MappingNode):
            return self.wrong_type(node, ctx, at)
        out: dict[str, str] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode) or not _PARAM_NAME.fullmatch(key.value):
                shown = key.value if isinstance(key, ScalarNode) else node_kind(key)
                ctx.error(key, f"invalid XSLT parameter name '{shown}' in {at.key}")
                continue
            ctx.record((*at.path, key.value), value)
            if not isinstance(value, ScalarNode):
                ctx.error(value, f"expected text for '{key.value}' in {at.key}, "
                                 f"got {node_kind(value)}")  # fmt: skip
                continue
            out[key.value] = "" if is_null(value) else value.value
        return out

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_.\\-]*$"},
            "additionalProperties": {"type": ["string", "number", "boolean", "null"]},
        }


XSLT = Spec(
    "xslt",
    "Transform the message as HL7 v2.xml with an XSLT 1.0 stylesheet; the result, an HL7 "
    "v2.xml message, replaces it.",
    (
        Field("stylesheet", FilePath(), "The XSLT 1.0 stylesheet, compiled at build.",
              required=True, example="../transforms/xslt/example.xsl"),
        Field("params", XsltParams(), "Stylesheet parameters, passed as strings.", default={},
              example={"facility": "MAIN"}),
    ),
    shorthand="stylesheet",
)  # fmt: skip

_ACCESS = etree.XSLTAccessControl(
    read_file=True, write_file=False, create_dir=False, read_network=False, write_network=False
)


def compile_stylesheet(path) -> etree.XSLT:
    """Parse and compile ``path``; StepBuildError (key ``stylesheet``) with lxml's reason."""
    shown = display_path(path)
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        doc = etree.parse(str(path), parser)
    except etree.XMLSyntaxError as exc:
        reason = exc.msg  # libxml2's text ends with ", line L, column C"
        if ", line " not in reason:
            reason += ", line {}, column {}".format(*exc.position)
        raise StepBuildError(
            f"stylesheet {shown} is not well-formed XML: {reason}", "stylesheet"
        ) from None
    except OSError as exc:
        raise StepBuildError(f"cannot read stylesheet {shown}: {exc}", "stylesheet") from None
    try:
        return etree.XSLT(doc, access_control=_ACCESS)
    except etree.XSLTParseError as exc:
        raise StepBuildError(
            f"stylesheet {shown} is not a valid XSLT stylesheet: {_log(exc.error_log, exc)}",
            "stylesheet",
        ) from None


def _log(error_log, exc: Exception) -> str:
    """lxml's error log as `line 3: message; ...` (its own message when the log is empty)."""
    entries = []
    for entry in error_log:
        text = entry.message.strip()
        if text in ("", "error"):  # libxslt's bare "error" line says nothing
            continue
        entries.append(f"line {entry.line}: {text}" if entry.line > 0 else text)
    return "; ".join(dict.fromkeys(entries)) or str(exc)


@step_kind(
    "xslt",
    XSLT,
    example="xslt: ../transforms/xslt/example.xsl\n"
    "xslt: {stylesheet: ../transforms/xslt/example.xsl, params: {facility: MAIN}}",
)
class Xslt(Step):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.path = ctx.path(config.stylesheet)
        self.name = display_path(self.path)
        self.transform = compile_stylesheet(self.path)
        self.params = {k: etree.XSLT.strparam(v) for k, v in (config.params or {}).items()}

    def run(self, message, ctx):
        try:
            doc = to_xml(message)
        except XmlError as exc:
            raise StepError(f"the message cannot be written as XML: {exc}") from None
        try:
            result = self.transform(doc, **self.params)
        except etree.XSLTApplyError as exc:
            reason = _log(self.transform.error_log, exc)
            raise StepError(f"stylesheet {self.name} failed: {reason}") from None
        root = result.getroot()
        if root is None:
            raise StepError(f"stylesheet {self.name} produced no XML element (text output?)")
        try:
            new = from_xml(root)
        except XmlError as exc:
            raise StepError(
                f"stylesheet {self.name} did not produce an HL7 v2.xml message: {exc}"
            ) from None
        if new.to_text() != message.to_text():
            message.sep, message.enc = new.sep, new.enc
            message.replace_segments(new.segments)
        return None


__all__ = ["XSLT", "Xslt", "compile_stylesheet"]
