"""Heat maps of attention weights: one PNG per example and attention kind, a grid of
layers (rows) by heads (columns), source/target tokens on the axes."""

from __future__ import annotations

import collections
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _kind(name: str) -> str:
  """'encoder/0/self_attention' -> 'encoder_self_attention'."""
  parts = name.split('/')
  return f'{parts[0]}_{parts[-1]}'


def plot_example(maps: dict[str, np.ndarray], src_labels: list[str], tgt_labels: list[str],
                 path_prefix: str) -> list[str]:
  """maps: name -> [heads, T, S] for one example, trimmed to its real tokens. Writes
  `<path_prefix>_<kind>.png` for each kind; returns the paths."""
  groups = collections.defaultdict(list)
  for name, w in maps.items():
    groups[_kind(name)].append((name, w))
  paths = []
  for kind, layers in sorted(groups.items()):
    heads = max(w.shape[0] for _, w in layers)
    fig, axes = plt.subplots(len(layers), heads, squeeze=False,
                             figsize=(2.6 * heads + 1, 2.6 * len(layers) + 0.6))
    queries = src_labels if kind.startswith('encoder') else tgt_labels
    keys = tgt_labels if kind.endswith('self_attention') and kind.startswith('decoder') else src_labels
    for row, (name, w) in enumerate(layers):
      for head in range(heads):
        ax = axes[row, head]
        if head >= w.shape[0]:
          ax.axis('off')
          continue
        ax.imshow(w[head], vmin=0.0, vmax=1.0, cmap='viridis', aspect='auto')
        layer = f'layer {name.split("/")[1]}, ' if name.count('/') == 2 else ''
        ax.set_title(f'{layer}head {head}',
                     fontsize=8)
        small = len(keys) <= 40 and len(queries) <= 40
        ax.set_xticks(range(len(keys)) if small else [])
        ax.set_yticks(range(len(queries)) if small else [])
        if small:
          ax.set_xticklabels(keys, rotation=90, fontsize=5)
          ax.set_yticklabels(queries, fontsize=5)
    fig.suptitle(f'{kind.replace("_", " ")} (rows: layers, columns: heads; y: queries, x: keys)',
                 fontsize=9)
    fig.tight_layout()
    path = f'{path_prefix}_{kind}.png'
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
  return paths
