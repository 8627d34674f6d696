"""Figures of the interpretation numbers: a layer x head grid, and quality against size."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def grid(values, row_labels, title: str, path: str, *, fmt: str = '{:.1f}',
         cmap: str = 'viridis_r') -> str:
  """A heat map of values [rows, heads], each cell written in; saved to `path`."""
  values = np.asarray(values, np.float64)
  # Wide enough for the row labels and the title, whatever the number of heads.
  fig, ax = plt.subplots(figsize=(max(6.0, 2.5 + 0.9 * values.shape[1]),
                                  1.2 + 0.5 * values.shape[0]))
  ax.imshow(values, cmap=cmap, aspect='auto')
  for (i, j), v in np.ndenumerate(values):
    ax.text(j, i, fmt.format(v), ha='center', va='center', fontsize=8, color='white'
            if v > np.nanmean(values) else 'black')
  ax.set_xticks(range(values.shape[1]), [f'head {h}' for h in range(values.shape[1])])
  ax.set_yticks(range(values.shape[0]), row_labels)
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def curves(series: dict, xlabel: str, ylabel: str, title: str, path: str) -> str:
  """Lines {label: (xs, ys)} on one axes; saved to `path`."""
  fig, ax = plt.subplots(figsize=(5.5, 3.6))
  for label, (xs, ys) in series.items():
    ax.plot(xs, ys, marker='o', label=label)
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
