"""Sweep files for scripts/sweep.py, and the helpers they build their points with.

A sweep file defines get_sweep(), returning a list of points, each a dict of config
overrides ({'train.learning_rate': 1e-3, 'model.num_layers': 2}):

  from configs.sweeps import product, sweep, zip_

  def get_sweep():
    return product(sweep('model.num_layers', [1, 2]),
                   zip_(sweep('train.learning_rate', [1e-3, 3e-3]),
                        sweep('train.warmup_steps', [50, 100])))   # 2 x 2 points
"""


def sweep(key: str, values) -> list[dict]:
  """One key over its values: sweep('a', [1, 2]) == [{'a': 1}, {'a': 2}]."""
  return [{key: value} for value in values]


def product(*point_lists: list[dict]) -> list[dict]:
  """Every combination of one point from each list, merged (the first list varies slowest)."""
  points = [{}]
  for point_list in point_lists:
    points = [_merge(a, b) for a in points for b in point_list]
  return points


def zip_(*point_lists: list[dict]) -> list[dict]:
  """The i-th points of all lists merged; the lists must be of one length."""
  lengths = sorted({len(point_list) for point_list in point_lists})
  if len(lengths) > 1:
    raise ValueError(f'zip_ of lists of different lengths {lengths}')
  points = []
  for parts in zip(*point_lists):
    point = {}
    for part in parts:
      point = _merge(point, part)
    points.append(point)
  return points


def _merge(a: dict, b: dict) -> dict:
  # A key in two parts would leave one of its values silently unused.
  shared = sorted(a.keys() & b.keys())
  if shared:
    raise ValueError(f'{shared[0]} is swept twice')
  return {**a, **b}
