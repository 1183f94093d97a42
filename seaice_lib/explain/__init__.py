"""What the models looked at: attention maps, rollout, relevance, attributions, ablations and their
sanity checks (docs/explain.md)."""
