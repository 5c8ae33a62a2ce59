"""Per-channel conversion options (the FHIR destination's settings), and the sender of the
message being converted (set per message by ``convert``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

DEFAULT_LOCAL_SYSTEM = "http://switchboard.local/fhir"
ALL_RESOURCES = frozenset({
    "Patient", "Encounter", "Practitioner", "PractitionerRole", "RelatedPerson",
    "AllergyIntolerance", "Condition", "Procedure", "Coverage", "Organization", "Location",
    "Observation", "DiagnosticReport", "ServiceRequest", "Specimen", "Immunization",
    "DocumentReference", "Appointment", "MedicationRequest", "Medication", "Provenance",
    "MessageHeader",
})  # fmt: skip
DEFAULT_RESOURCES = ALL_RESOURCES - {"MessageHeader"}


@dataclass(frozen=True)
class ConvertOptions:
    """How one channel converts: the zone for times without an offset, URIs for local code
    systems and identifier namespaces, and which resources to emit. ``sender`` is the sending
    facility of the message at hand (MSH-4, else MSH-3): identifiers that name no assigning
    authority are scoped to it."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    local_system: str = DEFAULT_LOCAL_SYSTEM  # base URI for local code systems and ids
    identifier_systems: dict[str, str] = field(default_factory=dict)  # CX.4 namespace -> URI
    resources: frozenset[str] = DEFAULT_RESOURCES
    sender: str = ""

    def emits(self, resource_type: str) -> bool:
        return resource_type in self.resources
