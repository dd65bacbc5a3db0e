"""The HR-NAS strategy: resource-aware fine-grained progressive shrinking (paper Sec. 3.3) for NNI.

What users call is exported here: :class:`ProgressiveShrinking` (the NNI strategy), the
:class:`DeviceSettings` it trains with, the errors a search raises (:class:`CheckpointError`,
:class:`SearchDiverged`), :func:`minimum_macs` (the smallest budget a space can reach),
:func:`shrink_end` (where a schedule's shrinking ends) and
:class:`ShrinkableSpace`, what a space must offer to be searched (``search_spaces.HRNASSpace``
does; the strategy imports no space package, see :mod:`.interface`). The internals stay in their
modules: the NNI adapter is :mod:`.progressive`, the Fabric training loop :mod:`.loop`, the pruning
policy :mod:`.policy` and the run state :mod:`.run_state`; :mod:`.prune` (slicing and rebuilding),
:mod:`.units` (prunable units and their costs), :mod:`.ema` and :mod:`.checkpoint` hold the
mechanics they share.
"""

from nni_hrnas import compat

from .checkpoint import CheckpointError
from .interface import ShrinkableSpace
from .loop import DeviceSettings, SearchDiverged
from .policy import minimum_macs, shrink_end
from .progressive import ProgressiveShrinking

compat.apply()  # NNI's one-shot strategies stay importable whatever imported NNI first

__all__ = [
    "CheckpointError",
    "DeviceSettings",
    "ProgressiveShrinking",
    "SearchDiverged",
    "ShrinkableSpace",
    "minimum_macs",
    "shrink_end",
]
