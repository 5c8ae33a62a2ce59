"""A small FHIR R4 server for the tests: transactions with conditional create
(``ifNoneExist``) and conditional update (``PUT Type?search``) matched the way a real server
matches them: the query is decoded (``urllib.parse.parse_qsl``), the FHIR token escapes are
undone, and ``identifier``/``code``/``_tag`` are compared with the stored resources' own
values. References to ``urn:uuid:`` fullUrls are rewritten to ``Type/id``; a reference that
resolves to nothing fails the transaction (400 with an OperationOutcome), as does a search
matching more than one resource (412) or a search parameter it does not know (400).

``FhirStore`` holds the resources; ``FhirResource`` serves it with twisted.web (start it on
127.0.0.1, port 0)."""

from __future__ import annotations

import copy
import json
import re
from urllib.parse import parse_qsl

from twisted.web.resource import Resource

_SPLIT = re.compile(r"(?<!\\)\|")


class TransactionError(Exception):
    def __init__(self, status: int, text: str):
        super().__init__(text)
        self.status = status


def _unescape(text: str) -> str:
    return re.sub(r"\\([\\|,$])", r"\1", text)


def token(value: str) -> tuple[str | None, str]:
    """A decoded token search value -> (system or None, code/value)."""
    parts = _SPLIT.split(value, maxsplit=1)
    if len(parts) == 1:
        return None, _unescape(parts[0])
    return _unescape(parts[0]), _unescape(parts[1])


def _identifiers(resource: dict) -> list[dict]:
    out = list(resource.get("identifier") or [])
    if isinstance(out, dict):  # Bundle-like single identifier
        out = [out]
    if resource.get("masterIdentifier"):  # DocumentReference's identifier search covers it
        out.append(resource["masterIdentifier"])
    return out


def _codings(resource: dict) -> list[dict]:
    code = resource.get("code") or {}
    return code.get("coding") or [] if isinstance(code, dict) else []


def _matches(resource: dict, params: list[tuple[str, str]]) -> bool:
    for name, value in params:
        system, code = token(value)
        if name == "identifier":
            items = [(i.get("system"), i.get("value")) for i in _identifiers(resource)]
        elif name == "code":
            items = [(c.get("system"), c.get("code")) for c in _codings(resource)]
        elif name == "_tag":
            items = [(t.get("system"), t.get("code")) for t in (resource.get("meta") or {}
                                                                 ).get("tag", [])]  # fmt: skip
        else:
            raise TransactionError(400, f"unknown search parameter {name!r}")
        if not any(v == code and (system is None or s == system) for s, v in items):
            return False
    return True


class FhirStore:
    def __init__(self):
        self.resources: dict[str, dict[str, dict]] = {}  # type -> id -> resource
        self.next_id = 0
        self.transactions: list[dict] = []  # the bundles received, as sent

    def search(self, rtype: str, query: str, resources: dict | None = None) -> list[str]:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        if not params:
            raise TransactionError(400, f"empty search for {rtype}")
        pool = (self.resources if resources is None else resources).get(rtype, {})
        return [rid for rid, res in pool.items() if _matches(res, params)]

    def count(self, rtype: str | None = None) -> int:
        if rtype:
            return len(self.resources.get(rtype, {}))
        return sum(len(v) for v in self.resources.values())

    def all(self, rtype: str) -> list[dict]:
        return list(self.resources.get(rtype, {}).values())

    def _new_id(self) -> str:
        self.next_id += 1
        return str(self.next_id)

    def transaction(self, bundle: dict) -> dict:
        """Process a transaction Bundle all-or-nothing; returns the transaction-response."""
        if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
            raise TransactionError(400, "not a transaction Bundle")
        self.transactions.append(copy.deepcopy(bundle))
        plan = []  # (entry, type, id, status)
        local: dict[str, str] = {}
        for i, entry in enumerate(bundle.get("entry") or []):
            request = entry.get("request") or {}
            resource = entry.get("resource") or {}
            rtype = resource.get("resourceType")
            method, url = request.get("method"), request.get("url", "")
            if method == "PUT" and url.startswith(f"{rtype}?"):
                found = self.search(rtype, url.split("?", 1)[1])
                if len(found) > 1:
                    raise TransactionError(412, f"entry {i + 1}: {url} matches {len(found)}")
                rid, status = (found[0], "200 OK") if found else (self._new_id(), "201 Created")
            elif method == "POST" and url == rtype and request.get("ifNoneExist"):
                found = self.search(rtype, request["ifNoneExist"])
                if len(found) > 1:
                    raise TransactionError(412, f"entry {i + 1}: ifNoneExist matches {len(found)}")
                rid, status = (found[0], "200 OK") if found else (self._new_id(), "201 Created")
                if found:
                    resource = None  # exists: nothing is written
            elif method == "POST" and url == rtype:
                rid, status = self._new_id(), "201 Created"
            else:
                raise TransactionError(400, f"entry {i + 1}: unsupported request {method} {url}")
            if entry.get("fullUrl"):
                local[entry["fullUrl"]] = f"{rtype}/{rid}"
            query = url.split("?", 1)[1] if "?" in url else request.get("ifNoneExist")
            plan.append((resource, rtype, rid, status, query))
        staged = copy.deepcopy(self.resources)
        for resource, rtype, rid, _, _ in plan:
            if resource is None:
                continue
            stored = self._resolve(copy.deepcopy(resource), local, staged)
            stored["id"] = rid
            staged.setdefault(rtype, {})[rid] = stored
        for i, (_, rtype, _, _, query) in enumerate(plan):  # one thing, one resource
            if query and len(self.search(rtype, query, staged)) != 1:
                raise TransactionError(
                    412,
                    f"entry {i + 1}: {rtype}?{query} would match "
                    f"{len(self.search(rtype, query, staged))}",
                )
        self.resources = staged
        return {"resourceType": "Bundle", "type": "transaction-response", "entry": [
            {"response": {"status": status, "location": f"{rtype}/{rid}/_history/1"}}
            for _, rtype, rid, status, _ in plan]}  # fmt: skip

    def _resolve(self, node, local: dict[str, str], staged: dict):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "reference" and isinstance(value, str):
                    node[key] = self._target(value, local, staged)
                else:
                    self._resolve(value, local, staged)
        elif isinstance(node, list):
            for item in node:
                self._resolve(item, local, staged)
        return node

    @staticmethod
    def _target(reference: str, local: dict[str, str], staged: dict) -> str:
        if reference in local:
            return local[reference]
        if reference.startswith("urn:"):
            raise TransactionError(400, f"reference {reference} resolves to no entry")
        rtype, _, rid = reference.partition("/")
        if rid not in staged.get(rtype, {}):
            raise TransactionError(400, f"reference {reference} resolves to nothing")
        return reference


def outcome(text: str) -> dict:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "processing", "diagnostics": text}],
    }


class FhirResource(Resource):
    """POST <base> with a transaction Bundle (the FHIR sender's request)."""

    isLeaf = True

    def __init__(self, store: FhirStore | None = None):
        super().__init__()
        self.store = store or FhirStore()

    def render_POST(self, request):
        request.setHeader(b"content-type", b"application/fhir+json")
        try:
            body = json.loads(request.content.read())
            answer = self.store.transaction(body)
        except TransactionError as exc:
            request.setResponseCode(exc.status)
            return json.dumps(outcome(str(exc))).encode()
        except ValueError as exc:
            request.setResponseCode(400)
            return json.dumps(outcome(f"bad request: {exc}")).encode()
        return json.dumps(answer).encode()
