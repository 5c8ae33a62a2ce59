"""HL7 v2 to FHIR R4 transaction Bundles, per the HL7 V2-to-FHIR implementation guide."""
