"""Delivery: persistent per-destination queues, senders, retries, dead letters."""
