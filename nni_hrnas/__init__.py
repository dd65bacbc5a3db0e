"""nni-hrnas: HR-NAS (CVPR 2021) for NNI.

Layers: :mod:`nni_hrnas.ops` (plain PyTorch), :mod:`nni_hrnas.costs` (exact analytic MACs and
params), :mod:`nni_hrnas.compat` (NNI 3.0 workarounds). The search spaces live in the top-level
package :mod:`search_spaces`.
"""

from . import compat  # noqa: F401  (silences NNI's import-time warnings about newer torch modules)

__version__ = "0.1.0"

__all__ = ["ProgressiveShrinking"]


def __getattr__(name: str):
    # Lazy: importing nni_hrnas (e.g. for nni_hrnas.ops or costs) does not import NNI's strategies.
    if name == "ProgressiveShrinking":
        from .strategy import ProgressiveShrinking

        return ProgressiveShrinking
    raise AttributeError(f"module 'nni_hrnas' has no attribute {name!r}")
