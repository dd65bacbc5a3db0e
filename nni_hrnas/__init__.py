"""nni-hrnas: HR-NAS (CVPR 2021) for NNI.

The strategy (:mod:`nni_hrnas.strategy`), the tasks, the data sets, the run folder and the ``hrnas``
command. The search spaces and what they are built of (ops, costs, labels) live in the top-level
package :mod:`search_spaces`, which imports nothing of this one.
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
    # Lazy: importing nni_hrnas (e.g. for nni_hrnas.run_folder) does not import NNI's strategies.
    if name == "ProgressiveShrinking":
        from .strategy import ProgressiveShrinking

        return ProgressiveShrinking
    raise AttributeError(f"module 'nni_hrnas' has no attribute {name!r}")
