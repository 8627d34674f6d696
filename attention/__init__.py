"""Self-attention and the Transformer in JAX/Flax NNX."""
