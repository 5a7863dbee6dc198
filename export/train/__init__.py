"""Training what goes into bundles: the linear head, the natural-trace head, fusion weights."""
