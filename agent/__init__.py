"""hush-agent: the edge daemon (sources → redact → bound → aggregate → DP release → sign → deliver)."""
