"""The server store: PostgreSQL for several replicas (``store``), its ingest transaction (``ingest``),
report reads (``reads``), the translated schema (``schema``) and URL handling (``url``)."""
