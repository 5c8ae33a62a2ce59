"""FHIR sender: the transaction Bundle POSTed to the server's base URL, on the REST sender
(auth, TLS, rate limit, timeouts, Retry-After), with the transaction response checked entry
by entry and an OperationOutcome turned into the delivery's error text.

2xx with every entry 2xx: delivered. 4xx: dead letter with the OperationOutcome. 5xx,
timeouts, refusals: retried. A 2xx whose transaction-response holds a failed entry (servers
should answer 4xx then, not all do) is dead too, with that entry's outcome.
"""

from __future__ import annotations

import json

from engine.delivery.outcome import Outcome
from engine.destinations.rest.sender import RestSender

FHIR_JSON = "application/fhir+json"


def outcome_text(body) -> str | None:
    """The issues of an OperationOutcome as one line (severity, code, diagnostics, where)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    parts = []
    for issue in body.get("issue") or []:
        details = (issue.get("details") or {}).get("text")
        where = ", ".join(issue.get("expression") or issue.get("location") or [])
        text = issue.get("diagnostics") or details or ""
        parts.append(" ".join(x for x in (f"{issue.get('severity', '')}/{issue.get('code', '')}:",
                                           text, f"at {where}" if where else "") if x))  # fmt: skip
    return "; ".join(parts) or None


class FhirSender(RestSender):
    def __init__(self, config, ctx):
        super().__init__(config, ctx, url=str(config.fhir).rstrip("/"), method="POST",
                         headers={"Accept": FHIR_JSON, **config.headers})  # fmt: skip

    def _classify(self, status, phrase, headers, data) -> Outcome:
        outcome = super()._classify(status, phrase, headers, data)
        try:
            body = json.loads(data) if data else None
        except ValueError:
            body = None
        if outcome.kind != "ok":
            text = outcome_text(body)
            if text:
                return Outcome(outcome.kind, outcome.code, f"{outcome.error}: {text}",
                               outcome.response, outcome.retry_after)  # fmt: skip
            return outcome
        if isinstance(body, dict) and body.get("resourceType") == "Bundle":
            for i, entry in enumerate(body.get("entry") or []):
                response = entry.get("response") or {}
                entry_status = str(response.get("status", "")).split(" ")[0]
                if entry_status and not entry_status.startswith("2"):
                    why = outcome_text(response.get("outcome")) or response.get("status")
                    return Outcome.dead(f"transaction entry {i + 1} failed: {why}",
                                        outcome.code, outcome.response)  # fmt: skip
        return outcome
