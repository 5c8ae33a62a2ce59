"""HL7 v2 data types to FHIR R4 data types (checklist in shared/fhir-mapping.md).

Every function takes a ``V2`` view of one field repetition (components decoded on access)
and returns a FHIR JSON fragment (dict) or None when there is nothing to map. Empty values
are left out, never emitted as "".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from engine.fhir import vocab
from engine.fhir.bundle import sender_system, slug
from engine.hl7.escape import unescape

_EMPTY_CHARS: dict[str, str] = {}  # per encoding: what a field holding nothing is made of


class V2:
    """One field repetition: ``c(n)`` is component n decoded (its first subcomponent),
    ``s(n, m)`` subcomponent m. Components are split and decoded once, on first use."""

    __slots__ = ("_parts", "_vals", "enc", "raw", "sep")

    def __init__(self, raw: str, sep: str = "|", enc: str = "^~\\&"):
        self.raw = raw or ""
        self.sep = sep
        self.enc = enc
        self._parts: list[str] | None = None
        self._vals: list[str] | None = None

    def _comp(self, n: int) -> str:
        parts = self._parts
        if parts is None:
            parts = self._parts = self.raw.split(self.enc[0])
        return parts[n - 1] if n - 1 < len(parts) else ""

    def _values(self) -> list[str]:
        raw, enc = self.raw, self.enc
        parts = self._parts
        if parts is None:
            parts = self._parts = raw.split(enc[0])
        esc, sub = enc[2], enc[3]
        if esc not in raw and sub not in raw:  # the common case: plain components
            vals = [p.strip() for p in parts]
        else:
            vals = []
            for p in parts:
                if sub in p:
                    p = p.split(sub, 1)[0]
                if esc in p:
                    p = unescape(p, self.sep, enc)
                vals.append(p.strip())
        self._vals = vals
        return vals

    def c(self, n: int) -> str:
        vals = self._vals
        if vals is None:
            vals = self._values()
        return vals[n - 1] if n <= len(vals) else ""

    def s(self, n: int, m: int) -> str:
        subs = self._comp(n).split(self.enc[3])
        return unescape(subs[m - 1], self.sep, self.enc).strip() if m - 1 < len(subs) else ""

    def __bool__(self) -> bool:
        enc = self.enc
        strip = _EMPTY_CHARS.get(enc)
        if strip is None:
            strip = _EMPTY_CHARS[enc] = enc[0] + enc[3] + " "
        return bool(self.raw.strip(strip))

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


@lru_cache(maxsize=4096)  # results are strings; times repeat within and across messages
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
def _dr_period(f: V2, n: int, tz) -> dict | None:
    """A DR written into component ``n`` (``start&end`` subcomponents) -> Period."""
    return period(f.s(n, 1), f.s(n, 2), tz) if f.c(n) else None


def xpn(f: V2, tz=None) -> dict | None:
    """XPN -> HumanName per the guide's XPN[HumanName] map: .1 family, .2/.3 given, .4 suffix,
    .5 prefix, .6 suffix (degree), .7 use (0200), .12/.13 period (else .10 validity range),
    .14 professional suffix. (.15 "called by" is a second name: :func:`xpn_names`.)"""
    if not f:
        return None
    family = f.s(1, 1) or f.c(1)
    given = [g for g in (f.c(2), f.c(3)) if g]
    suffix = [s for s in (f.c(4), f.c(6), f.c(14)) if s]
    name = compact({
        "use": vocab.NAME_USE.get(f.c(7)),
        "family": family,
        "given": given,
        "prefix": [f.c(5)] if f.c(5) else [],
        "suffix": suffix,
        "period": period(f.c(12), f.c(13), tz) or _dr_period(f, 10, tz),
    })  # fmt: skip
    return name if (name.get("family") or name.get("given")) else None


def xpn_names(reps: list[V2], tz=None) -> list[dict]:
    """Every repetition as a HumanName, and XPN.15 (called by) as a further name with use
    "nickname" (XPN[HumanName] rows 15: "[2].given", "[2].use = nickname")."""
    out = []
    for f in reps:
        name = xpn(f, tz)
        if name:
            out.append(name)
        if f.c(15):
            out.append({"use": "nickname", "given": [f.c(15)]})
    return out


def xad(f: V2, tz=None) -> dict | None:
    """XAD -> Address per the guide's XAD[Address] map: .1 (SAD.1) and .2 lines, .3 city, .4
    state, .5 postalCode, .6 country, .7 use/type (0190), .9 district, .10 census tract
    (extension), .13/.14 period (else the .12 validity range), .19 addressee (a last line)."""
    if not f:
        return None
    lines = [x for x in (f.s(1, 1) or f.c(1), f.c(2), f.c(19)) if x]
    kind = f.c(7)
    address = compact({
        "extension": [{"url": CENSUS_TRACT, "valueString": f.c(10)}] if f.c(10) else [],
        "use": vocab.ADDRESS_USE.get(kind),
        "type": vocab.ADDRESS_TYPE.get(kind),
        "line": lines,
        "city": f.c(3),
        "district": f.c(9),
        "state": f.c(4),
        "postalCode": f.c(5),
        "country": f.c(6),
        "period": period(f.c(13), f.c(14), tz) or _dr_period(f, 12, tz),
    })  # fmt: skip
    return address if set(address) - {"use", "type", "period", "extension"} else None


CENSUS_TRACT = "http://hl7.org/fhir/StructureDefinition/iso21090-ADXP-censusTract"
_TEL_EXTENSIONS = ((5, "country"), (6, "area"), (7, "local"), (8, "extension"))


def xtn(f: V2, default_use: str | None = None, tz=None) -> dict | None:
    """XTN -> ContactPoint per the guide's XTN[ContactPoint] map.

    The number is XTN.12 (unformatted) when valued, else composed from .5/.6/.7 [X.8]
    ("+.5 .6 .7 X.8") when .7 is valued, and XTN.1 only when .7 and .12 are empty (XTN.1
    row: "IF XTN.3 NOT IN (Internet, X.400) AND XTN.7 NOT VALUED AND XTN.12 NOT VALUED").
    shared/fhir-mapping.md reads it as ".1, else .12": that is not what the guide says.
    .3 Internet/X.400 (or no .3 with .4 valued) -> email from .4; .2 use (0201), CP -> mobile;
    .5-.8 also as the contactpoint-country/-area/-local/-extension extensions; .13/.14
    period; .18 rank. A number without .3 is a phone [ours: system is required with a value].
    """
    if not f:
        return None
    equipment = f.c(3)
    system = vocab.TELECOM_SYSTEM.get(equipment)
    use = vocab.TELECOM_USE.get(f.c(2)) or default_use
    if equipment == "CP":
        use = "mobile"
    extensions = []
    if system == "email" or (not equipment and f.c(4)):
        value, system = f.c(4), "email"
    else:
        local = f.c(7)
        if f.c(12):
            value = f.c(12)
        elif local:
            value = " ".join(x for x in (f"+{f.c(5)}" if f.c(5) else "", f.c(6), local) if x)
            if f.c(8):
                value += f" X{f.c(8)}"
        else:
            value = f.c(1)
        system = system or ("phone" if value else None)
        for n, name in _TEL_EXTENSIONS:
            if f.c(n):
                extensions.append({"url": f"{_CONTACTPOINT}{name}", "valueString": f.c(n)})
    if not value:
        return None
    rank = f.c(18)
    return compact({
        "extension": extensions,
        "system": system,
        "value": value,
        "use": use,
        "rank": int(rank) if rank.isdigit() and int(rank) > 0 else None,
        "period": period(f.c(13), f.c(14), tz),
    })  # fmt: skip


_CONTACTPOINT = "http://hl7.org/fhir/StructureDefinition/contactpoint-"


def hd_system(namespace: str, universal: str, kind: str, opts) -> str | None:
    """The system of an assigning authority (HD parts): an OID/UUID/URI, a configured
    system for its namespace, else ``local_system/id/<namespace>`` with the namespace as a
    :func:`slug` ("GHH LAB" -> ``.../id/GHH-LAB``: nothing a search URL must escape)."""
    kind = kind.upper()
    if universal and kind == "ISO":
        return f"urn:oid:{universal.strip().rstrip('.')}"
    if universal and kind == "UUID":
        return f"urn:uuid:{universal}"
    if universal and kind in ("URI", "URL"):
        return universal
    namespace = namespace.strip()
    if namespace:
        systems = getattr(opts, "identifier_systems", None) or {}
        if namespace in systems:
            return systems[namespace]
        return f"{opts.local_system.rstrip('/')}/id/{slug(namespace)}"
    return None


def identifier_system(f: V2, opts) -> str | None:
    """The system of a CX from its assigning authority (CX.4), see :func:`hd_system`."""
    return hd_system(f.s(4, 1), f.s(4, 2), f.s(4, 3), opts)


def cx(f: V2, opts, tz=None) -> dict | None:
    """CX -> Identifier: .1 value, .4 system (assigner; without one, the sending facility's
    own system: an identifier is never left without a system), .5 type (0203), .7/.8
    period."""
    if not f or not f.c(1):
        return None
    type_code = f.c(5)
    return compact({
        "value": f.c(1),
        "system": identifier_system(f, opts) or sender_system(opts),
        "type": {"coding": [{"system": vocab.V2 + "0203", "code": type_code}]} if type_code
        else None,
        "period": period(f.c(7), f.c(8), tz),
    })  # fmt: skip


def ei(f: V2, opts, type_code: str | None = None) -> dict | None:
    """EI (.1 id, .2 namespace, .3 universal id, .4 its type) -> Identifier; without an
    authority, in the sending facility's system."""
    value = f.c(1)
    if not value:
        return None
    system = hd_system(f.c(2), f.c(3), f.c(4), opts) or sender_system(opts)
    return _identifier(value, system, type_code)


def ei_sub(f: V2, component: int, opts, type_code: str | None = None) -> dict | None:
    """An EI written as subcomponents of one component (EIP in OBR-29, SPM-2)."""
    value = f.s(component, 1)
    if not value:
        return None
    system = hd_system(f.s(component, 2), f.s(component, 3), f.s(component, 4), opts)
    return _identifier(value, system or sender_system(opts), type_code)


def _identifier(value: str, system: str, type_code: str | None) -> dict:
    out = {"value": value, "system": system}
    if type_code:
        out["type"] = {"coding": [{"system": vocab.V2 + "0203", "code": type_code}]}
    return out


def cwe(f: V2, opts=None, default_system: str | None = None) -> dict | None:
    """CWE/CE -> CodeableConcept: .1/.2/.3 the first coding, .4/.5/.6 the alternate (e.g. the
    local code kept by a translate step), .7 version, .9 text. Coding-system names become
    URIs (LN, SCT, UCUM, HL7nnnn...); an unknown (local) name uses the channel's local URI
    [gap]: the code is never dropped."""
    if not f:
        return None
    vals = f._vals
    if vals is None:
        vals = f._values()
    vals = vals + [""] * (9 - len(vals)) if len(vals) < 9 else vals
    local = getattr(opts, "local_system", None)
    codings = []
    code, display, name = vals[0], vals[1], vals[2]
    if code:
        coding = {"system": vocab.system_uri(name, local) if name else default_system,
                  "code": code, "display": display, "version": vals[6]}  # fmt: skip
        codings.append({k: v for k, v in coding.items() if v})
    code = vals[3]
    if code:
        name = vals[5]
        coding = {"system": vocab.system_uri(name, local) if name else default_system,
                  "code": code, "display": vals[4]}  # fmt: skip
        codings.append({k: v for k, v in coding.items() if v})
    text = vals[8] or (display if not codings else None)
    if codings:
        return {"coding": codings, "text": text} if text else {"coding": codings}
    return {"text": text} if text else None


def coded(system: str, code: str, display: str | None = None) -> dict:
    return {"coding": [compact({"system": system, "code": code, "display": display})]}
