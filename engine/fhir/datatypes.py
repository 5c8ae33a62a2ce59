"""HL7 v2 data types to FHIR R4 data types (checklist in shared/fhir-mapping.md).

Every function takes a ``V2`` view of one field repetition (components decoded on access)
and returns a FHIR JSON fragment (dict) or None when there is nothing to map. Empty values
are left out, never emitted as "".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote
from zoneinfo import ZoneInfo

from engine.fhir import vocab
from engine.hl7.escape import unescape


class V2:
    """One field repetition: ``c(n)`` is component n decoded, ``s(n, m)`` subcomponent m."""

    __slots__ = ("_decoded", "_parts", "enc", "raw", "sep")

    def __init__(self, raw: str, sep: str = "|", enc: str = "^~\\&"):
        self.raw = raw or ""
        self.sep = sep
        self.enc = enc
        self._parts: list[str] | None = None  # split once, on first use
        self._decoded: dict[int, str] = {}

    def _comp(self, n: int) -> str:
        parts = self._parts
        if parts is None:
            parts = self._parts = self.raw.split(self.enc[0])
        return parts[n - 1] if n - 1 < len(parts) else ""

    def c(self, n: int) -> str:
        value = self._decoded.get(n)
        if value is None:
            comp = self._comp(n)
            if self.enc[3] in comp:  # a component with subcomponents: the first one
                comp = comp.split(self.enc[3])[0]
            value = self._decoded[n] = unescape(comp, self.sep, self.enc).strip()
        return value

    def s(self, n: int, m: int) -> str:
        subs = self._comp(n).split(self.enc[3])
        return unescape(subs[m - 1], self.sep, self.enc).strip() if m - 1 < len(subs) else ""

    def __bool__(self) -> bool:
        return bool(self.raw.strip(self.enc[0] + self.enc[3] + " "))

    @property
    def text(self) -> str:
        return unescape(self.raw, self.sep, self.enc).strip()


def compact(d: dict) -> dict:
    """Drop empty values (None, "", [], {}) at the top level."""
    return {k: v for k, v in d.items() if v not in (None, "", [], {})}


# dates and times ----------------------------------------------------------------------------
_DTM = re.compile(
    r"^(?P<Y>\d{4})(?P<M>\d{2})?(?P<D>\d{2})?(?P<h>\d{2})?(?P<m>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<f>\d{1,4}))?(?P<z>[+-]\d{4})?$"
)


def dtm(value: str, tz: ZoneInfo | timezone | None = None, date_only: bool = False) -> str | None:
    """DTM/TS to a FHIR date or dateTime at the source's precision.

    A time without an offset gets the channel's zone (FHIR requires an offset once there is
    a time; never emit one without), keeping the source offset when there is one. Returns
    None for a value that is not a date.
    """
    v = (value or "").strip()
    m = _DTM.match(v)
    if not m:
        return None
    g = m.groupdict()
    try:
        if g["M"] is not None and not 1 <= int(g["M"]) <= 12:
            return None
        date = g["Y"] + (f"-{g['M']}" if g["M"] else "") + (f"-{g['D']}" if g["D"] else "")
        if g["D"]:
            datetime(int(g["Y"]), int(g["M"]), int(g["D"]))  # a real calendar date
        if date_only or not g["h"]:
            return date
        if not g["D"]:
            return date  # a time without a day: keep the date part
        hh, mm, ss = int(g["h"]), int(g["m"] or 0), int(g["s"] or 0)
        local = datetime(int(g["Y"]), int(g["M"]), int(g["D"]), hh, mm, ss)
    except ValueError:
        return None
    frac = f".{g['f']}" if g["f"] else ""
    if g["z"]:
        sign, zh, zm = g["z"][0], g["z"][1:3], g["z"][3:5]
        offset = f"{sign}{zh}:{zm}"
    else:
        zone = tz or UTC
        delta = local.replace(tzinfo=zone).utcoffset() or timedelta(0)
        minutes = int(delta.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        offset = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return f"{local:%Y-%m-%dT%H:%M:%S}{frac}{offset}"


def period(start: str, end: str, tz) -> dict | None:
    return compact({"start": dtm(start, tz), "end": dtm(end, tz)}) or None


# names, addresses, telecoms, identifiers ----------------------------------------------------
def xpn(f: V2, tz=None) -> dict | None:
    """XPN -> HumanName: .1 family, .2/.3 given, .4 suffix, .5 prefix, .6 suffix (degree),
    .7 use (0200), .12/.13 period."""
    if not f:
        return None
    family = f.s(1, 1) or f.c(1)
    given = [g for g in (f.c(2), f.c(3)) if g]
    suffix = [s for s in (f.c(4), f.c(6)) if s]
    name = compact({
        "use": vocab.NAME_USE.get(f.c(7)),
        "family": family,
        "given": given,
        "prefix": [f.c(5)] if f.c(5) else [],
        "suffix": suffix,
        "period": period(f.c(12), f.c(13), tz),
    })  # fmt: skip
    return name if (name.get("family") or name.get("given")) else None


def xad(f: V2) -> dict | None:
    """XAD -> Address: .1 (SAD.1) and .2 lines, .3 city, .4 state, .5 postalCode, .6 country,
    .9 district, .7 use/type (0190)."""
    if not f:
        return None
    lines = [x for x in (f.s(1, 1) or f.c(1), f.c(2)) if x]
    kind = f.c(7)
    address = compact({
        "use": vocab.ADDRESS_USE.get(kind),
        "type": vocab.ADDRESS_TYPE.get(kind),
        "line": lines,
        "city": f.c(3),
        "district": f.c(9),
        "state": f.c(4),
        "postalCode": f.c(5),
        "country": f.c(6),
    })  # fmt: skip
    return address if set(address) - {"use", "type"} else None


def xtn(f: V2, default_use: str | None = None) -> dict | None:
    """XTN -> ContactPoint: .2 use (0201), .3 system (0202), email from .4, the number from
    .1, else .12 (unformatted), else +.5 .6 .7 [X.8]."""
    if not f:
        return None
    equipment = f.c(3)
    system = vocab.TELECOM_SYSTEM.get(equipment)
    use = vocab.TELECOM_USE.get(f.c(2)) or default_use
    if equipment == "CP":
        use = "mobile"
    if system == "email" or (f.c(4) and not f.c(1) and "@" in f.c(4)):
        value, system = f.c(4), "email"
    else:
        value = f.c(1) or f.c(12)
        if not value and (f.c(6) or f.c(7)):
            value = " ".join(x for x in (f"+{f.c(5)}" if f.c(5) else "", f.c(6), f.c(7)) if x)
            if f.c(8):
                value += f" X{f.c(8)}"
        system = system or ("phone" if value else None)
    if not value:
        return None
    return compact({"system": system, "value": value, "use": use})


def hd_system(namespace: str, universal: str, kind: str, opts) -> str | None:
    """The system of an assigning authority (HD parts): an OID/UUID/URI, a configured
    system for its namespace, else ``local_system/id/<namespace>`` (percent-encoded: a
    namespace like "GHH LAB" must still give a URI [ours])."""
    kind = kind.upper()
    if universal and kind == "ISO":
        return f"urn:oid:{universal}"
    if universal and kind == "UUID":
        return f"urn:uuid:{universal}"
    if universal and kind in ("URI", "URL"):
        return universal
    if namespace:
        systems = getattr(opts, "identifier_systems", None) or {}
        if namespace in systems:
            return systems[namespace]
        return f"{opts.local_system.rstrip('/')}/id/{quote(namespace, safe='')}"
    return None


def identifier_system(f: V2, opts) -> str | None:
    """The system of a CX from its assigning authority (CX.4), see :func:`hd_system`."""
    return hd_system(f.s(4, 1), f.s(4, 2), f.s(4, 3), opts)


def cx(f: V2, opts, tz=None) -> dict | None:
    """CX -> Identifier: .1 value, .4 system (assigner), .5 type (0203), .7/.8 period."""
    if not f or not f.c(1):
        return None
    type_code = f.c(5)
    return compact({
        "value": f.c(1),
        "system": identifier_system(f, opts),
        "type": {"coding": [{"system": vocab.V2 + "0203", "code": type_code}]} if type_code
        else None,
        "period": period(f.c(7), f.c(8), tz),
    })  # fmt: skip


def cwe(f: V2, opts=None, default_system: str | None = None) -> dict | None:
    """CWE/CE -> CodeableConcept: .1/.2/.3 the first coding, .4/.5/.6 the alternate (e.g. the
    local code kept by a translate step), .7 version, .9 text. Coding-system names become
    URIs (LN, SCT, UCUM, HL7nnnn...); an unknown (local) name uses the channel's local URI
    [gap]: the code is never dropped."""
    if not f:
        return None
    local = getattr(opts, "local_system", None)
    codings = []
    for code_i, disp_i, sys_i in ((1, 2, 3), (4, 5, 6)):
        code = f.c(code_i)
        if not code:
            continue
        name = f.c(sys_i)
        system = vocab.system_uri(name, local) if name else default_system
        coding = compact({"system": system, "code": code, "display": f.c(disp_i)})
        if code_i == 1 and f.c(7):
            coding["version"] = f.c(7)
        codings.append(coding)
    text = f.c(9) or (f.c(2) if not codings else None)
    concept = compact({"coding": codings, "text": text})
    return concept or None


def coded(system: str, code: str, display: str | None = None) -> dict:
    return {"coding": [compact({"system": system, "code": code, "display": display})]}
