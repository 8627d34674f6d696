"""Model presets for the experiment configs: every field of config.model and the named
sizes (tiny, mini, small, long, base, big, lstm). They live in the package,
attention/models/presets.py, so that an installed `attention` reaches them from anywhere.
"""

from attention.models.presets import PRESETS, get_model_config  # noqa: F401
