"""Destination kinds: a folder per kind (mllp, rest, file, fhir) holding its spec and render
(``__init__.py``) and its sender (``sender.py``); what they share is in ``base.py``.
engine.components registers the built-in kinds; engine.delivery drives the senders (queues,
retries, outcomes)."""

from engine.destinations.base import Destination, Rendered

__all__ = ["Destination", "Rendered"]
