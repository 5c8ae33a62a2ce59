"""A FHIR R4 transaction Bundle: urn:uuid fullUrls, references that resolve inside the
bundle, and a conditional create or update on every entry, so that posting the same message
twice (or a later message about the same things) updates instead of duplicating.

Conditional URLs are built here only: identifier systems made by this package contain no
character that needs escaping (see :func:`slug`), the FHIR token escapes (``\\,`` ``\\|``
``\\$`` ``\\\\``) are applied to the system and value, and the result is percent-encoded once,
so a server that decodes the query (``urllib.parse.parse_qsl`` does the same) gets back
exactly ``system|value`` of the resource's own identifier.
"""

from __future__ import annotations

import re
import uuid
from hashlib import sha1
from urllib.parse import quote

NAMESPACE = uuid.UUID("7c4ab9a2-5d0e-4f3b-9d63-2f2a3c1b5e01")
_NS = NAMESPACE.bytes
_UNSAFE = re.compile(r"[^A-Za-z0-9._~-]+")
_QUERY_SAFE = ":/|,\\$@!*'()"  # kept as written; everything else outside A-Za-z0-9_.-~ is %XX
_PLAIN = re.compile(r"^[A-Za-z0-9_.~:/|,\\$@!*'()-]*$")


def slug(text: str) -> str:
    """``text`` as a URI path segment that needs no escaping anywhere (URL, query, FHIR
    token): runs of characters outside ``A-Za-z0-9._~-`` become one ``-`` ("NIST MPI" ->
    "NIST-MPI")."""
    out = _UNSAFE.sub("-", text.strip()).strip("-")
    return out or "-"


def _escape_token(text: str) -> str:
    if "\\" in text or "|" in text or "," in text or "$" in text:
        text = text.replace("\\", "\\\\").replace("|", "\\|").replace(",", "\\,")
        text = text.replace("$", "\\$")
    return text


def token(system: str | None, value: str) -> str:
    """A FHIR token search value ``system|value`` (FHIR escapes applied, not URL-encoded)."""
    value = _escape_token(value)
    return f"{_escape_token(system)}|{value}" if system else value


def query(*params: tuple[str, str]) -> str:
    """``name=value&...`` with every value percent-encoded once."""
    parts = []
    for name, value in params:
        if not _PLAIN.match(value):
            value = quote(value, safe=_QUERY_SAFE)
        parts.append(f"{name}={value}")
    return "&".join(parts)


def identifier_query(identifier: dict | None) -> str | None:
    """``identifier=system|value`` for a conditional request, or None without a system or a
    value (a value alone would match any issuer's number)."""
    if not identifier or not identifier.get("value") or not identifier.get("system"):
        return None
    return query(("identifier", token(identifier["system"], identifier["value"])))


def sender_system(opts, kind: str = "") -> str:
    """The system of numbers the sending facility assigns without naming an authority
    (``<local_system>/id/sender/<MSH-4>``), or of identifiers this package derives for one
    resource kind (``.../<MSH-4>/<kind>``)."""
    base = f"{opts.local_system.rstrip('/')}/id/sender/{slug(opts.sender or 'unknown')}"
    return f"{base}/{kind}" if kind else base


def derived(opts, kind: str, *parts: str) -> dict:
    """A deterministic business identifier for a resource the message gives no identifier
    for: the sender's system for ``kind`` and the message keys joined by ``/`` (e.g. the
    patient's MRN and the NK1 set ID). The same message, or a later one about the same
    thing, gives the same identifier."""
    return {"system": sender_system(opts, kind), "value": "/".join(p for p in parts if p)}


class TransactionBundle:
    def __init__(self, message_key: str, timestamp: str | None = None, msh10: str = ""):
        self.message_key = message_key  # stable per message: same message -> same fullUrls
        self.timestamp = timestamp
        self.msh10 = msh10
        self.entries: list[dict] = []
        self.identifier_system = ""  # Bundle.identifier.system (MSH-10's issuer)
        self.subject_key = ""  # the patient's key (MRN@system), for derived identifiers
        self._by_key: dict[str, str] = {}

    def full_url(self, resource_type: str, key: str) -> str:
        """A name-based (version 5) UUID of the message, type and key: the same message
        gives the same fullUrls (``uuid.uuid5(NAMESPACE, ...)``, without its overhead)."""
        x = sha1(_NS + f"{self.message_key}|{resource_type}|{key}".encode()).hexdigest()
        variant = "89ab"[int(x[16], 16) & 3]  # RFC 4122 variant bits
        return f"urn:uuid:{x[:8]}-{x[8:12]}-5{x[13:16]}-{variant}{x[17:20]}-{x[20:32]}"

    def add(self, resource: dict, key: str, search: str, method: str = "PUT") -> str:
        """Add a resource; returns its reference (urn:uuid). ``search`` (an encoded query,
        e.g. from :func:`identifier_query`) makes the request a conditional update (PUT
        ``Type?search``: the message is the source of truth for the resource) or, with
        ``method="POST"``, a conditional create (``ifNoneExist``: a resource others may own,
        such as a Practitioner, is created only when missing). A second resource with the same
        type and key returns the first one's reference."""
        rtype = resource["resourceType"]
        full_key = f"{rtype}|{key}"
        found = self._by_key.get(full_key)
        if found:
            return found
        url = self.full_url(rtype, key)
        if method == "PUT":
            request = {"method": "PUT", "url": f"{rtype}?{search}"}
        else:
            request = {"method": "POST", "url": rtype, "ifNoneExist": search}
        self.entries.append({"fullUrl": url, "resource": resource, "request": request})
        self._by_key[full_key] = url
        return url

    def find(self, resource_type: str, key: str) -> str | None:
        return self._by_key.get(f"{resource_type}|{key}")

    def entry(self, full_url: str) -> dict | None:
        for entry in self.entries:
            if entry["fullUrl"] == full_url:
                return entry
        return None

    def to_json(self) -> dict:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}
        if self.msh10:
            bundle["identifier"] = {"value": self.msh10}
            if self.identifier_system:
                bundle["identifier"]["system"] = self.identifier_system
        if self.timestamp:
            bundle["timestamp"] = self.timestamp
        return bundle
