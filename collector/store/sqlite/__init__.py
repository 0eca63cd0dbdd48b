"""The embedded store: SQLite in WAL mode (``store``), its ingest transaction (``ingest``) and
report reads (``reads``)."""
