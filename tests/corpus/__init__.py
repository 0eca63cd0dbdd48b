"""Seeded corpora of log lines in real public formats with PII planted at known positions.

``tuning`` is what detectors are tuned on; ``heldout`` (other systems, other variants, other value
writers, written before tuning) is what redaction figures are reported on. No fetched log data is
stored here: every line comes from templates and generators in these modules.
"""
