"""MSH-18 character sets (HL7 table 0211) to Python codecs."""

from __future__ import annotations

# HL7 table 0211 names, upper-cased with spaces collapsed, to Python codec names.
_HL7_CHARSETS = {
    "ASCII": "ascii",
    "ISO IR6": "ascii",
    "8859/1": "iso-8859-1",
    "8859/2": "iso-8859-2",
    "8859/3": "iso-8859-3",
    "8859/4": "iso-8859-4",
    "8859/5": "iso-8859-5",
    "8859/6": "iso-8859-6",
    "8859/7": "iso-8859-7",
    "8859/8": "iso-8859-8",
    "8859/9": "iso-8859-9",
    "8859/15": "iso-8859-15",
    "ISO IR14": "shift_jis",
    "ISO IR87": "iso2022_jp",
    "ISO IR159": "iso2022_jp_2",
    "UNICODE": "utf-8",
    "UNICODE UTF-8": "utf-8",
    "UNICODE UTF-16": "utf-16",
    "UNICODE UTF-32": "utf-32",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc_kr",
    "CNS 11643-1992": "big5",
    "BIG-5": "big5",
    # Not in table 0211, but what senders write in practice.
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "ISO-8859-1": "iso-8859-1",
    "LATIN1": "iso-8859-1",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
}


def codec_for(msh18: str) -> str | None:
    """Return the Python codec for an MSH-18 value, or None when it is unknown.

    Only the first repetition counts (the others name alternate sets used with escapes).
    A few names senders use outside the table (``UTF-8``, ``ISO-8859-1``) are accepted too;
    anything else (``ISO_IR 100`` is DICOM's name) is unknown: the listener's default applies.
    """
    codec = _HL7_CHARSETS.get(msh18)  # written as in the table: the usual case
    if codec is not None:
        return codec
    name = " ".join(msh18.strip().upper().split())
    if not name:
        return None
    return _HL7_CHARSETS.get(name)
