"""nni-hrnas: HR-NAS (CVPR 2021) for NNI.

Layers: :mod:`search_spaces.ops` (plain PyTorch), :mod:`search_spaces.costs` (exact analytic MACs and
params), :mod:`nni_hrnas.compat` (NNI 3.0 workarounds). The search spaces live in the top-level
package :mod:`search_spaces`.
"""

import os

# oneDNN (torch's CPU convolutions) JIT-compiles a kernel per convolution shape and keeps 1024 of them.
# A searched network has hundreds of distinct widths (forward, backward-data and backward-weight kernels
# for each), so with the default cache every training step recompiled most of its kernels: 461 vs 162
# ms per step of the default digits_seg search's network (benchmarks/bench_train_step.py). Read by
# oneDNN at its first convolution; a value the user set wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16384")

from . import compat  # noqa: E402, F401  (silences NNI's import-time warnings about newer torch modules)

__version__ = "0.1.0"

__all__ = ["ProgressiveShrinking"]


def __getattr__(name: str):
    # Lazy: importing nni_hrnas (e.g. for search_spaces.ops or costs) does not import NNI's strategies.
    if name == "ProgressiveShrinking":
        from .strategy import ProgressiveShrinking

        return ProgressiveShrinking
    raise AttributeError(f"module 'nni_hrnas' has no attribute {name!r}")
