"""Tooling beside the model: what benchmarks and reproduction need and nothing else does
(the machine a number was measured on, per-operation profiles, random inputs). Nothing in
attention.kernels, models, data, evaluation or training imports it."""
