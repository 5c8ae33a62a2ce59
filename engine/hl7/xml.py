"""HL7 v2 messages as HL7 v2.xml (namespace ``urn:hl7-org:v2xml``), both ways, exactly.

Layout (generic names: no data-type tables are consulted, so ``PID-3.1`` is ``<PID.3.1>``
where the standard would write ``<CX.1>``)::

    <ORU_R01 xmlns="urn:hl7-org:v2xml">      root: MSH-9.3, else MSH-9.1_MSH-9.2, else MSH-9.1
      <MSH>                                   segments, flat under the root (no groups)
        <MSH.1>|</MSH.1>                      MSH-1 and MSH-2 as written, never unescaped
        <MSH.2>^~\\&amp;</MSH.2>
        <MSH.9><MSH.9.1>ORU</MSH.9.1><MSH.9.2>R01</MSH.9.2></MSH.9>
      </MSH>
      <PID>
        <PID.3><PID.3.1>123</PID.3.1><PID.3.4><PID.3.4.1>A</PID.3.4.1>
                 <PID.3.4.2>B</PID.3.4.2></PID.3.4></PID.3>    123^^^A&B
        <PID.3>456</PID.3>                    a repetition is the field element again
        <PID.8>F</PID.8>                      no component separator: text directly
      </PID>
    </ORU_R01>

Rules that make ``from_xml(to_xml(m)).to_text() == m.to_text()`` hold for every message:

* A repetition with a component or subcomponent separator has component children
  ``<SEG.n.c>``; a component with a subcomponent separator has ``<SEG.n.c.s>`` children;
  otherwise the value is the element's text.
* Empty fields, components and subcomponents are left out, except the last one of their
  parent, written as an empty element so that trailing separators survive (``PID|1||``
  gives ``<PID.1>1</PID.1><PID.3/>``). Empty repetitions are always written (``~X`` gives
  ``<PID.3/><PID.3>X</PID.3>``). A segment with no field is an empty element.
* Text is unescaped: ``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\`` become the characters they stand for.
  Every other escape sequence (``\\.br\\``, ``\\H\\``, ``\\Xhh\\``, ``\\Zxx\\``...) becomes
  ``<escape V=".br"/>`` inside the text, as v2.xml does; an escape character without its
  closing one (invalid HL7, seen in the wild as ``C:\\temp``) becomes
  ``<escape V="temp" unclosed="true"/>``. On the way back text is escaped with the
  delimiters of the result's MSH-1/MSH-2 (a carriage return as ``\\X0D\\``).

``from_xml`` also reads what a stylesheet may produce: groups (any non-segment element
holding segments, as in ``<ORU_R01.PATIENT_RESULT>``) are flattened in document order,
component elements may carry data-type names (``<CX.1>``: only the number after the last dot
counts), whitespace between elements is ignored, and comments are skipped. Characters XML
cannot hold (C0 controls other than tab, LF, CR) make ``to_xml`` fail with ``XmlError``.
"""

from __future__ import annotations

import re

from lxml import etree

from engine.hl7.escape import escape
from engine.hl7.message import Message, MessageError

NS = "urn:hl7-org:v2xml"
_Q = "{" + NS + "}"
_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_INDEX = re.compile(r".*\.([1-9][0-9]*)")
_DELIMITER_ESCAPES = frozenset("FSTRE")


class XmlError(ValueError):
    """The message cannot be written as XML, or the XML is not an HL7 v2.xml message."""


# message -> XML ---------------------------------------------------------------------------
def root_name(message: Message) -> str:
    """The v2.xml root element name: MSH-9.3, else MSH-9.1_MSH-9.2, else MSH-9.1, else HL7."""
    structure = (message.get("MSH-9.3") or "").strip()
    code = (message.get("MSH-9.1") or "").strip()
    trigger = (message.get("MSH-9.2") or "").strip()
    for name in (structure, f"{code}_{trigger}" if code and trigger else "", code):
        if name and _XML_NAME.fullmatch(name):
            return name
    return "HL7"


def to_xml(message: Message) -> etree._Element:
    """The message as an HL7 v2.xml element tree (see the module docstring)."""
    writer = _Writer(message.sep, message.enc)
    root = etree.Element(_Q + root_name(message), nsmap={None: NS})
    for number, text in enumerate(message.segments, 1):
        try:
            writer.segment(root, text)
        except ValueError as exc:  # lxml refuses control characters
            raise XmlError(f"segment {number} ({text[:3]!r}): {exc}") from None
    return root


class _Writer:
    def __init__(self, sep: str, enc: str):
        self.sep = sep
        self.comp, self.rep, self.esc, self.sub = enc[0], enc[1], enc[2], enc[3]

    def segment(self, root: etree._Element, text: str) -> None:
        name = text[:3]
        if not _SEGMENT_ID.fullmatch(name) or text[3:4] not in ("", self.sep):
            raise XmlError(f"{text[:12]!r} does not start with a segment id")
        seg = etree.SubElement(root, _Q + name)
        fields = text.split(self.sep)
        first = 1
        if name == "MSH" and len(fields) > 1:
            etree.SubElement(seg, _Q + "MSH.1").text = self.sep
            etree.SubElement(seg, _Q + "MSH.2").text = fields[1]
            fields = ["MSH", self.sep, *fields[1:]]
            first = 3
        last = len(fields) - 1
        for number in range(first, last + 1):
            raw = fields[number]
            if raw == "" and number != last:
                continue
            tag = f"{_Q}{name}.{number}"
            for rep in raw.split(self.rep):
                self.repetition(etree.SubElement(seg, tag), rep, tag)

    def repetition(self, el: etree._Element, text: str, tag: str) -> None:
        if self.comp not in text and self.sub not in text:
            self.leaf(el, text)
            return
        parts = text.split(self.comp)
        for number, part in enumerate(parts, 1):
            if part == "" and number != len(parts):
                continue
            ctag = f"{tag}.{number}"
            child = etree.SubElement(el, ctag)
            if self.sub not in part:
                self.leaf(child, part)
                continue
            subs = part.split(self.sub)
            for snum, sub in enumerate(subs, 1):
                if sub == "" and snum != len(subs):
                    continue
                self.leaf(etree.SubElement(child, f"{ctag}.{snum}"), sub)

    def leaf(self, el: etree._Element, raw: str) -> None:
        esc = self.esc
        if esc not in raw:
            if raw:
                el.text = raw
            return
        table = {
            "F": self.sep, "S": self.comp, "T": self.sub, "R": self.rep, "E": esc,
        }  # fmt: skip
        chunks: list[str] = []
        last: etree._Element | None = None

        def flush() -> None:
            if not chunks:
                return
            text = "".join(chunks)
            chunks.clear()
            if last is None:
                el.text = (el.text or "") + text
            else:
                last.tail = (last.tail or "") + text

        pos = 0
        while pos < len(raw):
            start = raw.find(esc, pos)
            if start < 0:
                chunks.append(raw[pos:])
                break
            chunks.append(raw[pos:start])
            end = raw.find(esc, start + 1)
            code = raw[start + 1 :] if end < 0 else raw[start + 1 : end]
            if end >= 0 and code in table:
                chunks.append(table[code])
            else:
                flush()
                last = etree.SubElement(el, _Q + "escape", V=code)
                if end < 0:
                    last.set("unclosed", "true")
                    break
            pos = end + 1
        flush()


# XML -> message ---------------------------------------------------------------------------
def from_xml(root: etree._Element | etree._ElementTree) -> Message:
    """The message an HL7 v2.xml tree describes; raises XmlError when it is not one."""
    if isinstance(root, etree._ElementTree):
        root = root.getroot()
    if root is None or not isinstance(root.tag, str):
        raise XmlError("no root element")
    if not root.tag.startswith(_Q):
        raise XmlError(f"the root element <{_name(root)}> is not in the namespace {NS}")
    segments = list(_segments(root))
    if not segments or _local(segments[0]) != "MSH":
        raise XmlError("the first segment is not MSH")
    sep, enc_raw = _delimiters(segments[0])
    # the encoding characters as Message reads them (missing ones take their defaults)
    enc = enc_raw[:4] if len(enc_raw) >= 4 else enc_raw + "^~\\&"[len(enc_raw) :]
    reader = _Reader(sep, enc)
    texts = [reader.segment(el, enc_raw) for el in segments]
    try:
        return Message("\r".join(texts) + "\r")
    except MessageError as exc:
        raise XmlError(str(exc)) from None


def _local(el: etree._Element) -> str:
    return el.tag[len(_Q) :] if el.tag.startswith(_Q) else el.tag


def _name(el: etree._Element) -> str:
    """`PID`, or `PID xmlns='other'` for an element of another namespace."""
    qname = etree.QName(el)
    other = qname.namespace and qname.namespace != NS
    return qname.localname + (f" xmlns='{qname.namespace}'" if other else "")


def _segments(parent: etree._Element):
    """Segment elements under the root, groups flattened."""
    _no_text(parent, f"<{_local(parent)}>")
    for child in parent:
        if not isinstance(child.tag, str):
            continue  # comment or processing instruction
        if not child.tag.startswith(_Q):
            raise XmlError(f"element <{_name(child)}> is not in the namespace {NS}")
        name = _local(child)
        if _SEGMENT_ID.fullmatch(name):
            yield child
        elif len(child):
            yield from _segments(child)
        else:
            raise XmlError(f"<{name}> is neither a segment nor a group of segments")


def _no_text(el: etree._Element, where: str) -> None:
    if el.text and el.text.strip():
        raise XmlError(f"unexpected text {el.text.strip()[:20]!r} in {where}")
    for child in el:
        if child.tail and child.tail.strip():
            raise XmlError(f"unexpected text {child.tail.strip()[:20]!r} in {where}")


def _delimiters(msh: etree._Element) -> tuple[str, str]:
    values: dict[str, str] = {}
    for child in msh:
        if isinstance(child.tag, str) and _local(child) in ("MSH.1", "MSH.2"):
            if len(child):
                raise XmlError(f"<{_local(child)}> must hold plain text")
            values[_local(child)] = child.text or ""
    sep = values.get("MSH.1", "")
    if len(sep) != 1:
        raise XmlError(f"MSH.1 must be one character, got {sep!r}")
    return sep, values.get("MSH.2", "")


class _Reader:
    def __init__(self, sep: str, enc: str):
        self.sep, self.enc = sep, enc
        self.comp, self.rep, self.esc, self.sub = enc[0], enc[1], enc[2], enc[3]

    def segment(self, seg: etree._Element, enc_raw: str) -> str:
        name = _local(seg)
        where = f"<{name}>"
        _no_text(seg, where)
        fields: dict[int, list[str]] = {}
        prefix = name + "."
        for child in seg:
            if not isinstance(child.tag, str):
                continue
            local = _local(child)
            if not child.tag.startswith(_Q) or not local.startswith(prefix):
                raise XmlError(f"element <{_name(child)}> in {where} is not one of its fields")
            number = local[len(prefix) :]
            if not number.isdigit() or number.startswith("0"):
                raise XmlError(f"element <{local}> in {where} is not one of its fields")
            fields.setdefault(int(number), []).append(self.repetition(child, local))
        if name == "MSH":
            fields.pop(1, None)
            fields[2] = [enc_raw]
            count = max(fields)
            parts = [self.rep.join(fields.get(n, [""])) for n in range(2, count + 1)]
            return "MSH" + self.sep + self.sep.join(parts)
        if not fields:
            return name
        parts = [name] + [self.rep.join(fields.get(n, [""])) for n in range(1, max(fields) + 1)]
        return self.sep.join(parts)

    def repetition(self, el: etree._Element, where: str) -> str:
        return self._composite(el, where, self.comp, depth=1)

    def _composite(self, el: etree._Element, where: str, joiner: str, depth: int) -> str:
        parts = [c for c in el if isinstance(c.tag, str) and _local(c) != "escape"]
        if not parts:
            return self.leaf(el, where)
        if depth > 2:
            raise XmlError(f"<{where}> nests deeper than subcomponents")
        _no_text(el, f"<{where}>")
        if any(isinstance(c.tag, str) and _local(c) == "escape" for c in el):
            raise XmlError(f"<{where}> mixes components and escapes")
        values: dict[int, str] = {}
        for child in parts:
            local = _local(child)
            m = _INDEX.fullmatch(local)
            if not child.tag.startswith(_Q) or m is None:
                raise XmlError(f"element <{_name(child)}> in <{where}> is not numbered (X.n)")
            number = int(m.group(1))
            if number in values:
                raise XmlError(f"<{local}> appears twice in <{where}>")
            if depth == 1:
                values[number] = self._composite(child, local, self.sub, depth=2)
            else:
                values[number] = self._composite(child, local, "", depth=3)
        return joiner.join(values.get(n, "") for n in range(1, max(values) + 1))

    def leaf(self, el: etree._Element, where: str) -> str:
        out = [self._text(el.text)]
        for child in el:
            if isinstance(child.tag, str):  # an escape element (others were ruled out)
                code = child.get("V")
                if code is None:
                    raise XmlError(f"<escape> without V in <{where}>")
                out.append(self.esc + code)
                if child.get("unclosed") not in ("true", "1"):
                    out.append(self.esc)
            out.append(self._text(child.tail))
        return "".join(out)

    def _text(self, text: str | None) -> str:
        if not text:
            return ""
        out = escape(text, self.sep, self.enc)
        if "\r" in out:
            out = out.replace("\r", f"{self.esc}X0D{self.esc}")
        return out


__all__ = ["NS", "XmlError", "from_xml", "root_name", "to_xml"]
