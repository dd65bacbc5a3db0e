"""NNI model spaces: the HR-NAS multi-branch space and its presets.

Exported here is what users call: the space and the network it freezes to, its typed config and
presets, and reading or checking an architecture. The building plan (``plan_blocks``, the width grid
``width_choices``) and the command-line helpers (``parse_space_overrides``, ``check_input_size``)
stay in :mod:`.hrnas` and :mod:`.config`.
"""

from .config import ConfigError, HRNASConfig, StageConfig, TransformerConfig
from .hrnas import HRNASNetwork, HRNASSpace, choice_maxima, load_arch, validate_sample
from .presets import PRESETS, get_preset

__all__ = [
    "PRESETS",
    "ConfigError",
    "HRNASConfig",
    "HRNASNetwork",
    "HRNASSpace",
    "StageConfig",
    "TransformerConfig",
    "choice_maxima",
    "get_preset",
    "load_arch",
    "validate_sample",
]
