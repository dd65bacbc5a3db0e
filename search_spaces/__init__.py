"""NNI model spaces: the HR-NAS multi-branch space and its presets, and what they are built of.

Exported here is what users call: the space and the network it freezes to, its typed config and
presets, and reading or checking an architecture. The building plan (``plan_blocks``, the width grid
``width_choices``) and the command-line helpers (``parse_space_overrides``, ``check_input_size``)
stay in :mod:`.hrnas` and :mod:`.config`. The building blocks are modules of their own, below the
network: :mod:`.ops` (plain PyTorch), :mod:`.costs` (exact MACs and params), :mod:`.labels` (choice
labels); the strategy and ``analysis`` import those without the network.

The exports are loaded on first use (PEP 562): importing ``search_spaces.labels`` (the strategy,
``analysis``) does not import the network and NNI's model-space machinery.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ConfigError, HRNASConfig, StageConfig, TransformerConfig
    from .hrnas import HRNASNetwork, HRNASSpace, choice_maxima, load_arch, validate_sample
    from .presets import PRESETS, get_preset

#: Each exported name and the module that defines it.
_EXPORTS = {
    "ConfigError": ".config",
    "HRNASConfig": ".config",
    "StageConfig": ".config",
    "TransformerConfig": ".config",
    "HRNASNetwork": ".hrnas",
    "HRNASSpace": ".hrnas",
    "choice_maxima": ".hrnas",
    "load_arch": ".hrnas",
    "validate_sample": ".hrnas",
    "PRESETS": ".presets",
    "get_preset": ".presets",
}

__all__ = [  # the keys of _EXPORTS (tests/test_public_api.py checks each resolves)
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


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value  # once: later lookups are plain attribute reads
        return value
    raise AttributeError(f"module 'search_spaces' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
