"""NNI model spaces: the HR-NAS multi-branch space and its presets."""

from .config import (
    ConfigError,
    HRNASConfig,
    StageConfig,
    TransformerConfig,
    check_input_size,
    parse_space_overrides,
)
from .hrnas import (
    HRNASNetwork,
    HRNASSpace,
    choice_maxima,
    load_arch,
    plan_blocks,
    validate_sample,
    width_choices,
)
from .presets import PRESETS, get_preset

__all__ = [
    "PRESETS",
    "ConfigError",
    "HRNASConfig",
    "HRNASNetwork",
    "HRNASSpace",
    "StageConfig",
    "TransformerConfig",
    "check_input_size",
    "choice_maxima",
    "get_preset",
    "plan_blocks",
    "load_arch",
    "parse_space_overrides",
    "validate_sample",
    "width_choices",
]
