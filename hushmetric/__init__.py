"""hushmetric wire contract shared by agent and collector."""
