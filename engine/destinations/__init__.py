"""Destination kinds: each declares its config spec once and how it renders a message.

Delivery itself (queues, retries, ACK tracking) is engine/delivery; a channel only renders:
ER7 bytes for MLLP and file destinations, ER7 or JSON for REST.
"""

from engine.destinations import fhir, file, mllp, rest  # noqa: F401  (registration on import)
from engine.destinations.base import DESTINATION_KINDS, Destination, Rendered

__all__ = ["DESTINATION_KINDS", "Destination", "Rendered"]
