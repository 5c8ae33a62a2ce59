"""A FHIR R4 transaction Bundle: urn:uuid fullUrls, references that resolve inside the
bundle, conditional create/update on business identifiers (posting the same message twice
updates instead of duplicating)."""

from __future__ import annotations

import uuid

NAMESPACE = uuid.UUID("7c4ab9a2-5d0e-4f3b-9d63-2f2a3c1b5e01")


class TransactionBundle:
    def __init__(self, message_key: str, timestamp: str | None = None, msh10: str = ""):
        self.message_key = message_key  # stable per message: same message -> same fullUrls
        self.timestamp = timestamp
        self.msh10 = msh10
        self.entries: list[dict] = []
        self._by_key: dict[str, str] = {}

    def full_url(self, resource_type: str, key: str) -> str:
        return "urn:uuid:" + str(uuid.uuid5(NAMESPACE, f"{self.message_key}|{resource_type}|{key}"))

    def add(self, resource: dict, key: str, search: str | None = None,
            method: str = "PUT") -> str:  # fmt: skip
        """Add a resource; returns its reference (urn:uuid). ``search`` (e.g.
        ``identifier=sys|value``) makes the request a conditional update (PUT Type?search) or
        a conditional create (POST with ifNoneExist); without it a plain POST."""
        rtype = resource["resourceType"]
        full_key = f"{rtype}|{key}"
        if full_key in self._by_key:
            return self._by_key[full_key]
        url = self.full_url(rtype, key)
        if search and method == "PUT":
            request = {"method": "PUT", "url": f"{rtype}?{search}"}
        elif search:
            request = {"method": "POST", "url": rtype, "ifNoneExist": search}
        else:
            request = {"method": "POST", "url": rtype}
        self.entries.append({"fullUrl": url, "resource": resource, "request": request})
        self._by_key[full_key] = url
        return url

    def find(self, resource_type: str, key: str) -> str | None:
        return self._by_key.get(f"{resource_type}|{key}")

    def to_json(self) -> dict:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}
        if self.msh10:
            bundle["identifier"] = {"value": self.msh10}
        if self.timestamp:
            bundle["timestamp"] = self.timestamp
        return bundle


def search_for(identifier: dict | None) -> str | None:
    """``identifier=system|value`` for a conditional request, or None without a value."""
    if not identifier or not identifier.get("value"):
        return None
    system = identifier.get("system", "")
    value = identifier["value"].replace(",", "\\,").replace("|", "\\|").replace("$", "\\$")
    return f"identifier={system}|{value}" if system else f"identifier={value}"
