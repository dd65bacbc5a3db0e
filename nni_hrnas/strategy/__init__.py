"""The HR-NAS strategy: resource-aware fine-grained progressive shrinking (paper Sec. 3.3) for NNI.

The NNI adapter is :mod:`.progressive`, the Fabric training loop :mod:`.loop`, the pruning policy
:mod:`.policy` and the run state :mod:`.run_state`; :mod:`.prune` and :mod:`.units` hold the
mechanics they share.
"""

from nni_hrnas import compat

from .checkpoint import CheckpointError, load_weights, save_searched
from .ema import EMA
from .loop import DeviceSettings, SearchDiverged, evaluate
from .policy import PruningPolicy, minimum_macs
from .progressive import ProgressiveShrinking
from .prune import rebuild, recalibrate_bn, slice_optimizer_, slice_spec, slice_tensor, threshold_keep
from .units import UnitGroup, WidthCost, mean_unit_macs, penalty, unit_groups

compat.apply()  # NNI's one-shot strategies stay importable whatever imported NNI first

__all__ = [
    "EMA", "CheckpointError", "DeviceSettings", "ProgressiveShrinking", "PruningPolicy", "SearchDiverged",
    "UnitGroup", "WidthCost", "evaluate", "load_weights", "mean_unit_macs", "minimum_macs", "penalty", "rebuild",
    "recalibrate_bn", "save_searched", "slice_optimizer_", "slice_spec", "slice_tensor", "threshold_keep",
    "unit_groups",
]
