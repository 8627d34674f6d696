"""Training: the optimizer, the one train step, checkpoints, metrics and the loop."""
