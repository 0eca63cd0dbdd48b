"""hush-collector: verifies signed batches, keeps tenants apart, meters, audits and reports."""
