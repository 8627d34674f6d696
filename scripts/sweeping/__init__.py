"""What scripts/sweep.py is made of.

points.py   the sweep's points: --sweep/--zip lists and sweep files, names, checked configs
local.py    running the points on this machine, each on its own CPUs, resumable
results.py  a row per point (results.csv/md, machine.json) and the mean over seeds
plots.py    results.png, results_by_length.png, curves.png
"""
