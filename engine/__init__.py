"""Switchboard: an HL7 v2 interface engine on Twisted."""

__version__ = "0.1.0"
