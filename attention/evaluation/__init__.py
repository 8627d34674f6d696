"""Evaluation: decoding a split, scoring it with sacrebleu, plotting attention."""
