"""Model presets: every field of config.model and the named sizes that set some of them.
`base` and `big` are the rows of Table 3 of Vaswani et al. 2017 (with the paper's
sinusoidal positions; the other presets default to RoPE). They live in the package so that
an installed `attention` builds them from any directory (`Transformer.from_preset`);
configs/models.py re-exports them for the experiment configs.

Field names follow Table 3: num_layers = N, d_model, d_ff, num_heads = h, d_k, d_v,
dropout_rate = P_drop. d_k = d_v = 0 means d_model / num_heads; num_kv_heads = 0 means
num_heads; vocab_size = 0 means "take it from the data".
"""

import ml_collections

PRESETS = {
    # Tests and quick runs: compiles in seconds on a CPU.
    'tiny': dict(num_layers=2, d_model=64, d_ff=256, num_heads=4, dropout_rate=0.1),
    # The default (`make train`): 1.45M parameters, trains `lang` on 2 CPU cores in minutes.
    'mini': dict(num_layers=3, d_model=128, d_ff=512, num_heads=4, dropout_rate=0.1),
    # The size of the Flax WMT comparison and the model benchmark in BENCHMARKS.md.
    'small': dict(num_layers=3, d_model=256, d_ff=1024, num_heads=4, dropout_rate=0.1),
    # Table 3, "base": N=6, d_model=512, d_ff=2048, h=8, d_k=d_v=64, P_drop=0.1.
    'base': dict(num_layers=6, d_model=512, d_ff=2048, num_heads=8, d_k=64, d_v=64,
                 dropout_rate=0.1, positional='sinusoidal'),
    # Table 3, "big": N=6, d_model=1024, d_ff=4096, h=16, d_k=d_v=64, P_drop=0.3.
    'big': dict(num_layers=6, d_model=1024, d_ff=4096, num_heads=16, d_k=64, d_v=64,
                dropout_rate=0.3, positional='sinusoidal'),
    # Long sequences (the long-range tasks, 256 to 16384 tokens): narrow enough that a
    # step at thousands of tokens fits 2 CPU cores, deep enough to compose two lookups.
    'long': dict(num_layers=2, d_model=128, d_ff=256, num_heads=4, dropout_rate=0.0),
    # The recurrent baseline: a 2-layer LSTM encoder-decoder with Luong attention.
    'lstm': dict(name='lstm', num_layers=2, d_model=256, dropout_rate=0.1,
                 rnn_attention='luong'),
}


def get_model_config(preset: str = 'mini') -> ml_collections.ConfigDict:
  """config.model of a preset: the defaults below, then what PRESETS[preset] sets."""
  if preset not in PRESETS:
    raise ValueError(f'unknown model preset {preset!r}; allowed: {", ".join(PRESETS)}')
  cfg = ml_collections.ConfigDict(dict(
      name='transformer',          # 'transformer' | 'lstm'
      preset=preset,
      num_layers=6,
      d_model=512,
      d_ff=2048,
      num_heads=8,
      d_k=0,
      d_v=0,
      num_kv_heads=0,
      dropout_rate=0.1,
      attention_dropout_rate=0.0,
      # sinusoidal (the paper's; presets base and big) | learned | rope | alibi | none.
      # RoPE by default: it learns `lang` several times faster (docs/experiments.md,
      # the positional study); the algorithmic tasks switch back (configs/default.py).
      positional='rope',
      norm='pre',                  # 'pre' (default) | 'post' (the paper's original)
      share_embeddings=True,       # source, target and output share one matrix (paper, 3.4)
      kernel='flash',              # any name in attention.kernels.names()
      local_window=32,             # kernel='local': keys within this many positions each side
      linear_chunk=64,             # kernel='linear': chunk length of the causal scan
      activation='relu',           # 'relu' (paper) | 'gelu'
      qk_norm=False,
      rnn_attention='luong',       # name='lstm' only: none | luong | bahdanau
      max_length=256,              # table size for learned positions
      vocab_size=0,
      dtype='float32',
      param_dtype='float32',
  ))
  cfg.update(PRESETS[preset])
  return cfg


def with_fields(preset: str, fields: dict) -> ml_collections.ConfigDict:
  """get_model_config(preset) with `fields` replaced; ValueError naming an unknown field,
  or a vocab_size that is not set (> 0), since only a run's data can choose it."""
  cfg = get_model_config(preset)
  unknown = sorted(set(fields) - set(cfg.keys()))
  if unknown:
    raise ValueError(f'unknown model field {unknown[0]!r}; allowed: {", ".join(sorted(cfg))}')
  cfg.update(fields)
  if cfg.vocab_size <= 0:
    raise ValueError('vocab_size must be given (> 0): the size of the token vocabulary')
  return cfg
