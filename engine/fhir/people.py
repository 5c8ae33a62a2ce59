"""The resources other resources point at: XCN -> Practitioner, XON/HD/CWE -> Organization,
PL -> Location (a chain through Location.partOf), PRT/ROL -> PractitionerRole.

Each is a conditional create (``ifNoneExist``) on its identifier: these resources usually
belong to a master file elsewhere, so a message adds what is missing and overwrites nothing.
Without an identifier in the message, the identifier is derived from the sender and the name
(documented in bundle.derived) [ours: a name-only practitioner is created once per sender and
name; two people of the same name from one sender share it]."""

from __future__ import annotations

from engine.fhir import vocab
from engine.fhir.bundle import TransactionBundle, derived, identifier_query, sender_system
from engine.fhir.datatypes import V2, coded, compact, cwe, hd_system, period, xad, xtn
from engine.fhir.options import ConvertOptions

NPI = "http://hl7.org/fhir/sid/us-npi"
RFC3986 = "urn:ietf:rfc:3986"
PHYSICAL_TYPE = "http://terminology.hl7.org/CodeSystem/location-physical-type"
# PL components from the least to the most granular (the guide's PL[Location] map) and
# their Location.physicalType: facility si, building bu, floor lvl, point of care (no code
# in the guide), room ro, bed bd
PL_LEVELS = ((4, "si"), (7, "bu"), (8, "lvl"), (1, None), (2, "ro"), (3, "bd"))


def ref(reference: str | None, display: str | None = None) -> dict | None:
    return compact({"reference": reference, "display": display}) or None


# Practitioner -------------------------------------------------------------------------------
def xcn_name(f: V2, tz=None) -> dict | None:
    """XCN[Practitioner]: .2 family, .3 given, .4 second given, .5 suffix, .6 prefix, .10
    use, .19/.20 period, .21 professional suffix (.7 degree is a qualification)."""
    name = compact({
        "use": vocab.NAME_USE.get(f.c(10)),
        "family": f.s(2, 1) or f.c(2),
        "given": [g for g in (f.c(3), f.c(4)) if g],
        "prefix": [f.c(6)] if f.c(6) else [],
        "suffix": [s for s in (f.c(5), f.c(21)) if s],
        "period": period(f.c(19), f.c(20), tz),
    })  # fmt: skip
    return name if (name.get("family") or name.get("given")) else None


def display(name: dict | None) -> str | None:
    if not name:
        return None
    return " ".join([*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
                    ).strip() or None  # fmt: skip


def xcn_identifier(f: V2, opts: ConvertOptions) -> dict | None:
    """XCN.1 in the system of the assigning authority XCN.9 (OID/UUID/URI, a configured
    namespace, else ``local_system/id/<namespace>``); NPI (XCN.13) without an authority has
    its canonical system; else the sender's own staff numbers (``.../id/sender/<MSH-4>``)."""
    if not f.c(1):
        return None
    system = hd_system(f.s(9, 1), f.s(9, 2), f.s(9, 3), opts)
    type_code = f.c(13)
    if system is None and type_code == "NPI":
        system = NPI
    out = {"system": system or sender_system(opts), "value": f.c(1)}
    if type_code:
        out["type"] = coded(vocab.V2 + "0203", type_code)
    return out


def add_practitioner(bundle: TransactionBundle, f: V2 | None, opts: ConvertOptions) -> dict | None:
    """XCN -> Practitioner (conditional create); returns the Reference (only a display when
    Practitioner is not emitted), or None for an empty XCN."""
    if not f:
        return None
    identifier = xcn_identifier(f, opts)
    name = xcn_name(f, opts.timezone)
    if not identifier and not name:
        return None
    if not opts.emits("Practitioner"):
        return ref(None, display(name) or f.c(1))
    key_id = identifier or derived(opts, "practitioner-name", _name_key(name))
    resource = compact({
        "resourceType": "Practitioner",
        "identifier": [key_id],
        "name": [name] if name else [],
        "qualification": [{"code": coded(vocab.V2 + "0360", f.c(7))}] if f.c(7) else [],
    })  # fmt: skip
    url = bundle.add(resource, f"{key_id['system']}|{key_id['value']}",
                     identifier_query(key_id), method="POST")  # fmt: skip
    return ref(url, display(name))


def _name_key(name: dict) -> str:
    parts = [name.get("family", ""), *name.get("given", []), *name.get("suffix", [])]
    return " ".join(p for p in parts if p)


def practitioners(bundle, reps: list[V2], opts) -> list[dict]:
    return [r for r in (add_practitioner(bundle, f, opts) for f in reps) if r]


# Organization ---------------------------------------------------------------------------------
def add_organization(bundle, opts, identifier: dict | None, name: str, **more) -> dict | None:
    if not identifier and not name:
        return None
    if not opts.emits("Organization"):
        return ref(None, name or identifier["value"])
    key_id = identifier or derived(opts, "organization", name)
    resource = compact({"resourceType": "Organization", "identifier": [key_id], "name": name,
                        **more})  # fmt: skip
    url = bundle.add(resource, f"{key_id['system']}|{key_id['value']}",
                     identifier_query(key_id), method="POST")  # fmt: skip
    return ref(url, name or None)


def xon_organization(bundle, f: V2, opts, addresses=(), telecoms=()) -> dict | None:
    """XON[Organization]: .1 name, .10 (else .3) identifier in the system of .6, .7 type;
    with the addresses (XAD) and telecoms (XTN) the segment gives beside it."""
    if not f:
        return None
    value = f.c(10) or f.c(3)
    identifier = None
    if value:
        system = hd_system(f.s(6, 1), f.s(6, 2), f.s(6, 3), opts)
        identifier = compact(
            {
                "system": system,
                "value": value,
                "type": coded(vocab.V2 + "0203", f.c(7)) if f.c(7) else None,
            }
        )
        identifier.setdefault("system", sender_system(opts, "organization-id"))
    address = [a for a in (xad(x, opts.timezone) for x in addresses) if a]
    telecom = [t for t in (xtn(x, "work", opts.timezone) for x in telecoms) if t]
    return add_organization(bundle, opts, identifier, f.c(1), address=address, telecom=telecom)


def hd_organization(bundle, f: V2, opts) -> dict | None:
    """HD[Organization]: .1 name, .2/.3 the universal id as an identifier (RFC 3986)."""
    if not f:
        return None
    identifier = None
    system = hd_system("", f.c(2), f.c(3), opts) if f.c(2) else None
    if system:
        identifier = {"system": RFC3986, "value": system}
    return add_organization(bundle, opts, identifier, f.c(1))


def cwe_organization(bundle, f: V2, opts) -> dict | None:
    """CWE[Organization] (e.g. RXA-17 manufacturer): the code as an identifier in the
    coding system, the display as the name."""
    concept = cwe(f, opts)
    if not concept:
        return None
    coding = (concept.get("coding") or [{}])[0]
    identifier = None
    if coding.get("code"):
        identifier = {
            "system": coding.get("system") or sender_system(opts, "organization-id"),
            "value": coding["code"],
        }
    return add_organization(bundle, opts, identifier, coding.get("display") or concept.get("text"))


# Location ------------------------------------------------------------------------------------
def add_location(bundle, f: V2, opts, address: dict | None = None) -> dict | None:
    """PL[Location]: a Location per valued level (facility, building, floor, point of care,
    room, bed), each ``partOf`` the one above, identified by its path within the sender
    (``EMERG/101/01``); PL.9 describes and PL.10 identifies the most granular one. Returns
    the Reference to the most granular Location (a display when Location is not emitted)."""
    if not f:
        return None
    levels = [(n, code, f.c(n)) for n, code in PL_LEVELS if f.c(n)]
    if not levels and not f.c(9):
        return None
    # the display: point of care, room, bed, facility, building, floor, description
    text = ", ".join(dict.fromkeys(v for n in (1, 2, 3, 4, 7, 8, 9) if (v := f.c(n))))
    if not opts.emits("Location"):
        return ref(None, text)
    if not levels:  # a description only (e.g. RXA-27 "^^^^^^^^Drive in ...")
        levels = [(9, None, f.c(9))]
    parent = None
    path: list[str] = []
    for i, (_n, code, value) in enumerate(levels):
        path.append(value)
        last = i == len(levels) - 1
        identifiers = [derived(opts, "location", *path)]
        if last and f.c(10):
            system = hd_system(f.s(10, 2), f.s(10, 3), f.s(10, 4), opts)
            identifiers.append({"system": system or sender_system(opts), "value": f.s(10, 1)})
        resource = compact({
            "resourceType": "Location",
            "identifier": identifiers,
            "name": value,
            "description": f.c(9) if last and f.c(9) != value else None,
            "mode": "instance",
            "physicalType": coded(PHYSICAL_TYPE, code) if code else None,
            "address": address if last else None,
            "partOf": parent,
        })  # fmt: skip
        key_id = identifiers[0]
        url = bundle.add(resource, key_id["value"], identifier_query(key_id), method="POST")
        parent = {"reference": url, "display": value}
    return ref(parent["reference"], text)


# PractitionerRole ------------------------------------------------------------------------------
def add_practitioner_role(
    bundle, opts, practitioner: dict | None, code: dict | None, organization: dict | None = None
) -> dict | None:
    """A PractitionerRole tying a Practitioner to a role code (and an Organization), keyed
    on the practitioner, the organization and the role [ours: the guide derives no key]."""
    if not opts.emits("PractitionerRole") or not (practitioner or organization):
        return practitioner or organization
    parts = [(practitioner or {}).get("reference", ""), (organization or {}).get("reference", "")]
    who = [bundle.entry(p)["resource"].get("identifier", [{}])[0] for p in parts if p]
    identifier = derived(opts, "practitioner-role", *(f"{i.get('value')}@{i.get('system')}"
                                                      for i in who),
                         (code or {}).get("coding", [{}])[0].get("code", ""))  # fmt: skip
    resource = compact({
        "resourceType": "PractitionerRole",
        "identifier": [identifier],
        "practitioner": practitioner if (practitioner or {}).get("reference") else None,
        "organization": organization if (organization or {}).get("reference") else None,
        "code": [code] if code else [],
    })  # fmt: skip
    url = bundle.add(resource, identifier["value"], identifier_query(identifier), method="POST")
    return ref(url, (practitioner or organization or {}).get("display"))
