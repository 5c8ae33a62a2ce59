"""A lazy view of MSH read straight from the frame's bytes: no full parse on the hot path.

python-hl7 and hl7apy build hundreds of objects per message (0.5-60 ms); intake needs a dozen
header fields, which this reads in a few microseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.hl7.charset import codec_for

UTF8_BOM = b"\xef\xbb\xbf"
DEFAULT_ENCODING_CHARS = "^~\\&"


class NoUsableHeader(Exception):
    """The payload has no MSH an ACK could be built from (no HL7 ACK is possible)."""


@dataclass(frozen=True, slots=True)
class HeaderProblem:
    """A header field that makes the message unacceptable (answered with an ERR)."""

    field: int  # MSH field number
    code: int  # HL7 table 0357
    text: str  # table 0357 text
    detail: str


def normalize_segments(payload: bytes) -> bytes:
    """Return the message with CR-only segment separators and no leading BOM or blank lines.

    LF and CRLF separators (case 23/24) become CR; a UTF-8 BOM (case 35) is dropped.
    """
    if payload.startswith(UTF8_BOM):
        payload = payload[3:]
    if payload.find(b"\n") >= 0:  # not `in`: bytes.__contains__ raises and clears a
        # TypeError inside (it tries the operand as an int first) on every call
        payload = payload.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    if payload[:1] == b"\r":
        payload = payload.lstrip(b"\r")
    return payload


def _is_utf16(payload: bytes) -> bool:
    head = payload[:6]
    return head[:2] in (b"\xff\xfe", b"\xfe\xff") or head in (
        b"M\x00S\x00H\x00",
        b"\x00M\x00S\x00H",
    )


class Header:
    """MSH fields of one message. ``field(n)`` is MSH-n as raw (still escaped) text.

    The fields intake reads for every message (sender, type, control id, version...) are
    plain attributes, split out once when the header is read: this runs per message on the
    reactor thread, where a property call per use cost more than reading the header.
    """

    __slots__ = (
        "_fields",
        "accept_ack_type",
        "application_ack_type",
        "charset",
        "charset_known",
        "control_id",
        "encoding_chars",
        "encoding_ok",
        "message_type",
        "processing_id",
        "receiving_application",
        "receiving_facility",
        "sending_application",
        "sending_facility",
        "sep",
        "structure",
        "trigger",
        "version",
    )

    def __init__(self, fields: list[str], sep: str, encoding_chars: str, encoding_ok: bool):
        self.sep = sep
        self.encoding_chars = encoding_chars
        self.encoding_ok = encoding_ok
        self.charset = "iso-8859-1"
        self.charset_known = True
        self.set_fields(fields)

    def set_fields(self, fields: list[str]) -> None:
        """Take MSH's fields (``fields[0]`` is MSH-1) and split out the common ones."""
        self._fields = fields
        f = fields + [""] * (16 - len(fields)) if len(fields) < 16 else fields
        self.sending_application = f[2]
        self.sending_facility = f[3]
        self.receiving_application = f[4]
        self.receiving_facility = f[5]
        self.control_id = f[9]
        self.accept_ack_type = f[14]
        self.application_ack_type = f[15]
        comp, rep = self.encoding_chars[0], self.encoding_chars[1]
        msh9 = f[8].split(rep, 1)[0].split(comp, 3)
        msh9 += [""] * (3 - len(msh9))
        self.message_type, self.trigger, self.structure = msh9[0], msh9[1], msh9[2]
        self.processing_id = f[10].split(rep, 1)[0].split(comp, 1)[0]
        self.version = f[11].split(rep, 1)[0].split(comp, 1)[0]

    def field(self, n: int) -> str:
        """MSH-n (1-based, HL7 numbering: MSH-1 is the field separator)."""
        f = self._fields
        return f[n - 1] if n - 1 < len(f) else ""

    def component(self, n: int, c: int = 1) -> str:
        value = self.field(n)
        comp = self.encoding_chars[0]
        rep = self.encoding_chars[1]
        if rep in value:
            value = value.split(rep, 1)[0]
        if comp not in value:
            return value if c == 1 else ""
        parts = value.split(comp)
        return parts[c - 1] if c - 1 < len(parts) else ""

    @property
    def enhanced(self) -> bool:
        """True when MSH-15 or MSH-16 is valued (enhanced acknowledgement mode)."""
        return bool(self.accept_ack_type or self.application_ack_type)


def _decode_utf16(payload: bytes) -> str:
    if payload[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return payload.decode("utf-16", errors="replace")
    codec = "utf-16-le" if payload[:1] == b"M" else "utf-16-be"
    return payload.decode(codec, errors="replace")


def read_header(payload: bytes, default_charset: str = "iso-8859-1") -> Header:
    """Read MSH from a normalised payload (see :func:`normalize_segments`).

    Raises NoUsableHeader when no ACK can be built: the first segment is not MSH, the field
    separator is unusable, or MSH stops before MSH-12.
    """
    if _is_utf16(payload):
        text = _decode_utf16(payload).lstrip("\ufeff\r\n")
        utf16 = True
        end = text.find("\r")
        msh = text if end < 0 else text[:end]
    else:  # only the MSH line is decoded (latin-1 maps bytes 1:1; a message is ~1-100 KB)
        utf16 = False
        end = payload.find(b"\r")
        msh = (payload if end < 0 else payload[:end]).decode("latin-1")
    if not msh.startswith("MSH"):
        first = msh[:3]
        if not first.isascii() or not first.isprintable():
            raise NoUsableHeader("payload is not HL7 v2: it does not start with a segment id")
        raise NoUsableHeader(f"first segment is {first!r}, not MSH")
    if len(msh) < 4:
        raise NoUsableHeader("MSH has no field separator")
    sep = msh[3]
    if sep.isalnum() or sep in " \r\n\x0b\x1c" or not sep.isprintable():
        raise NoUsableHeader(f"MSH-1 field separator {sep!r} is not usable")
    parts = msh[4:].split(sep)
    enc = parts[0]
    fields = [sep, *parts]
    encoding_ok = enc == DEFAULT_ENCODING_CHARS or (
        len(enc) in (4, 5)
        and len(set(enc)) == len(enc)
        and sep not in enc
        and not any(c.isalnum() or c.isspace() for c in enc)
    )
    if len(fields) < 12:
        raise NoUsableHeader(
            f"MSH has {len(fields)} fields; an ACK needs MSH-9 to MSH-12 (segments not "
            "separated by CR?)"
            if end < 0 and len(msh) > 200
            else f"MSH has {len(fields)} fields; an ACK needs MSH-9 to MSH-12"
        )
    header = Header(fields, sep, enc if encoding_ok else DEFAULT_ENCODING_CHARS, encoding_ok)
    if utf16:
        header.charset = "utf-16"
    else:
        msh18 = header.field(18)
        if msh18:
            rep = header.encoding_chars[1]
            codec = codec_for(msh18.split(rep, 1)[0])
            if codec is None:
                header.charset_known = False
                header.charset = default_charset
            else:
                header.charset = codec
        else:
            header.charset = default_charset
        if not msh.isascii() and header.charset not in ("iso-8859-1", "latin-1"):
            # Header values with non-ASCII text: decode the MSH line with its own charset.
            line = payload[: len(msh)].decode(header.charset, errors="replace")
            header.set_fields([sep, *line[4:].split(sep)])
    return header
