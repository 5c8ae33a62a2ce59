"""HL7 v2 on the hot path: a lazy header view, escaping, ACKs, charsets, batches."""
