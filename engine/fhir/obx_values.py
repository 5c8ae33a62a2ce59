"""OBX-5/-6/-8 -> Observation values, units and interpretations (the guide's OBX[Observation]
OBX-5 rows, SN[Quantity]/SN[Range]/SN[Ratio], ED[Attachment]).

Choices where the guide is silent are marked [ours]:
- NM that is not a number (``<0.10``, ``POS``): a comparator Quantity when it reads as one,
  else valueString (the value is never dropped);
- unknown OBX-2 types: valueString of the non-empty components joined by blanks.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache

from engine.fhir import vocab
from engine.fhir.datatypes import V2, cwe, dtm, period

COMPARATORS = frozenset({"<", "<=", ">=", ">"})
CODED_TYPES = frozenset({"CWE", "CE", "CNE", "CF", "IS"})
DATE_TYPES = frozenset({"DT", "DTM", "TS"})
_ASCII_DIGITS = frozenset("0123456789")
_BASE64 = re.compile(r"^[A-Za-z0-9+/\s]*={0,2}\s*$")
# ED.2 type of data -> the MIME top-level type for ED.3 subtypes that are not MIME types
MIME_TYPE = {"AP": "application", "IM": "image", "AU": "audio", "TEXT": "text",
             "TX": "text", "VI": "video", "MULTIPART": "multipart"}  # fmt: skip


def number(text: str) -> int | float | None:
    """A v2 NM as a JSON number (int when it has no decimal point), or None."""
    s = text.strip()
    body = s[1:] if s[:1] in ("+", "-") else s
    if not body:
        return None
    if _ASCII_DIGITS.issuperset(body):
        return int(s)
    whole, dot, frac = body.partition(".")
    if dot and (whole or frac) and _ASCII_DIGITS.issuperset(whole + frac):
        return float(s)
    return None


def quantity(amount: str, code: str, text: str, system_name: str, local_system: str):
    """A number with its unit (code, text, coding system name) -> Quantity: ``unit`` the text
    (else the code), ``system``/``code`` only when the unit is coded in a named system; None
    when the amount is not a number."""
    value = number(amount)
    if value is None:
        return None
    out: dict = {"value": value}
    if text or code:
        out["unit"] = text or code
    if code and system_name:
        system = vocab.system_uri(system_name, local_system)
        if system:
            out |= {"system": system, "code": code}
    return out


def _split_comparator(text: str) -> tuple[str, str]:
    s = text.strip()
    n = 2 if s[:2] in ("<=", ">=", "<>") else 1 if s[:1] in ("<", ">", "=") else 0
    return s[:n], s[n:].strip()


def _quantity(value, unit: dict, comparator: str = "") -> dict:
    q = {"value": value}
    if comparator:
        q["comparator"] = comparator
    q.update(unit)
    return q


def time_of_day(text: str) -> str | None:
    """TM HH[MM[SS[.S+]]][+/-ZZZZ] -> FHIR time HH:MM:SS[.S] (FHIR time has no offset)."""
    s = text.strip()
    for sign in ("+", "-"):
        cut = s.find(sign)
        if cut >= 0:
            s = s[:cut]
    digits, _, frac = s.partition(".")
    if len(digits) not in (2, 4, 6) or not _ASCII_DIGITS.issuperset(digits):
        return None
    hh, mm, ss = digits[0:2], digits[2:4] or "00", digits[4:6] or "00"
    if int(hh) > 23 or int(mm) > 59 or int(ss) > 59:
        return None
    out = f"{hh}:{mm}:{ss}"
    if frac and _ASCII_DIGITS.issuperset(frac):
        out += "." + frac
    return out


def _sn(f: V2, unit: dict) -> tuple[str, object] | None:
    """SN: comparator + number -> Quantity; "-" -> Range; ":" or "/" -> Ratio; otherwise
    (``2^+``, ``<>``) valueString. A comparator written into .1 (``<0.10``) is read too."""
    comp, n1, sep, n2 = f.c(1), f.c(2), f.c(3), f.c(4)
    if comp and not n1 and not sep and not n2:
        comp, n1 = _split_comparator(comp)
    a, b = number(n1), number(n2)
    if sep == "-" and (a is not None or b is not None) and not comp:
        rng = {}
        if a is not None:
            rng["low"] = _quantity(a, unit)
        if b is not None:
            rng["high"] = _quantity(b, unit)
        return "valueRange", rng
    if sep in (":", "/") and a is not None and b is not None and not comp:
        return "valueRatio", {"numerator": {"value": a}, "denominator": {"value": b}}
    if not sep and not n2 and a is not None:
        if comp in COMPARATORS:
            return "valueQuantity", _quantity(a, unit, comp)
        if comp in ("", "="):
            return "valueQuantity", _quantity(a, unit)
    text = "".join((comp, n1, sep, n2)).strip()
    return ("valueString", text) if text else None


def value(vtype: str, f: V2, unit: dict, opts) -> tuple[str, object] | None:
    """One OBX-5 repetition (not a text type) -> (value[x] name, value)."""
    if vtype == "NM":
        text = f.c(1)
        n = number(text)
        if n is not None:
            return "valueQuantity", _quantity(n, unit)
        comp, rest = _split_comparator(text)
        n = number(rest)
        if n is not None and comp in COMPARATORS:
            return "valueQuantity", _quantity(n, unit, comp)
        return ("valueString", text) if text else None
    if vtype in CODED_TYPES:
        concept = cwe(f, opts)
        return ("valueCodeableConcept", concept) if concept else None
    if vtype == "SN":
        return _sn(f, unit)
    if vtype in DATE_TYPES:
        when = dtm(f.c(1), opts.timezone)
        return ("valueDateTime", when) if when else None
    if vtype == "TM":
        t = time_of_day(f.c(1))
        return ("valueTime", t) if t else None
    if vtype == "NR":
        low, high = number(f.c(1)), number(f.c(2))
        rng = {}
        if low is not None:
            rng["low"] = _quantity(low, unit)
        if high is not None:
            rng["high"] = _quantity(high, unit)
        return ("valueRange", rng) if rng else None
    if vtype == "DR":  # OBX-5 DR row: valuePeriod
        when = period(f.c(1), f.c(2), opts.timezone)
        return ("valuePeriod", when) if when else None
    if vtype == "VR":  # OBX-5 VR row: "OBX-5.1-OBX-5.2"
        text = "-".join(x for x in (f.c(1), f.c(2)) if x)
        return ("valueString", text) if text else None
    parts = [p for p in (f.c(i) for i in range(1, f.raw.count(f.enc[0]) + 2)) if p]
    return ("valueString", " ".join(parts)) if parts else None


@lru_cache(maxsize=1024)
def unit(raw: str, sep: str, enc: str, local_system: str) -> tuple[tuple[str, str], ...]:
    """OBX-6 -> Quantity unit (.2, else .1); code (.1) and system only when .3 names one
    (UCUM -> http://unitsofmeasure.org, other names via the vocabulary, local ones under the
    channel's URI), since a Quantity.system needs a code. Cached: units repeat."""
    f = V2(raw, sep, enc)
    code, text, name = f.c(1), f.c(2), f.c(3)
    out = []
    if text or code:
        out.append(("unit", text or code))
    if code and name:
        system = vocab.system_uri(name, local_system)
        if system:
            out += [("system", system), ("code", code)]
    return tuple(out)


def _content_type(kind: str, subtype: str) -> str | None:
    """ED.2/ED.3 (RP.3/RP.4) -> a MIME type: ED.3 as written when it is one (``text/html``),
    else ``<type>/<subtype>`` from the type of data (AP + PDF -> application/pdf) [ours: the
    guide maps ED.3 to contentType, and senders write bare subtypes]."""
    if "/" in subtype:
        return subtype.lower()
    top = MIME_TYPE.get(kind.upper())
    if top and subtype:
        return f"{top}/{subtype.lower()}"
    return None


def attachment(vtype: str, f: V2) -> dict | None:
    """ED -> Attachment (ED[Attachment]: .3 contentType, .5 data converted from the .4
    encoding to base64: Base64 as given, Hex decoded, A(SCII) encoded); RP -> Attachment
    (.1 pointer as the url, .3/.4 contentType). Data that claims Base64 but is not is encoded
    as the text it is [ours: nothing is dropped and the bundle stays valid]."""
    if vtype == "RP":
        url = f.c(1)
        if not url:
            return None
        out = {"url": url}
        ctype = _content_type(f.c(3), f.c(4))
        if ctype:
            out["contentType"] = ctype
        return out
    data = f.c(5)
    if not data:
        return None
    encoding = f.c(4).upper()
    payload = None
    if encoding == "BASE64" and _BASE64.match(data):
        try:
            base64.b64decode(data, validate=False)
            payload = "".join(data.split())
        except (binascii.Error, ValueError):
            payload = None
    elif encoding == "HEX":
        try:
            payload = base64.b64encode(bytes.fromhex(data)).decode("ascii")
        except ValueError:
            payload = None
    if payload is None:
        payload = base64.b64encode(data.encode("utf-8")).decode("ascii")
    out = {"data": payload}
    ctype = _content_type(f.c(2), f.c(3))
    if ctype:
        out["contentType"] = ctype
    return out


def interpretation(reps: list[V2]) -> list[dict]:
    """OBX-8 (0078) -> v3-ObservationInterpretation (same codes); an unknown code is kept
    in v2-0078."""
    out = []
    for r in reps:
        code = r.c(1)
        if not code:
            continue
        v3 = vocab.INTERPRETATION.get(code) or vocab.INTERPRETATION.get(code.upper())
        coding = {"system": vocab.V3_INTERPRETATION if v3 else vocab.V2 + "0078",
                  "code": v3 or code}  # fmt: skip
        if r.c(2):
            coding["display"] = r.c(2)
        out.append({"coding": [coding]})
    return out
