"""What a trained model's attention does, and how much of the model is needed, as numbers.

  maps.py       attention maps of a forward pass; entropy per head; encoder rollout
  alignment.py  word alignments from cross-attention, scored against a gold alignment
                (alignment error rate, accuracy) per layer and head and averaged
  heads.py      head gates: ablation importance and gradient importance (Michel et al.)
  pruning.py    removing heads for real (smaller W_Q, W_K, W_V, W_O), in importance order
  quantize.py   int8 weights per output channel and bfloat16 inference; parameter bytes

Usable from a notebook on a loaded run (attention.load_run) and by eval.py's
--alignment, --head_importance, --prune_heads and --quantize. It sits above the models,
the data and the evaluation it uses, and below training (whose Run draws attention maps).
"""
