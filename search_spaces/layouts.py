"""How the parallel modules are laid out: HR-NAS's multi-branch space or the single-branch space of
the paper's Table 6 (``HRNASConfig.layout``).

* ``multi_branch`` (default, paper Fig. 3): module ``s`` runs ``stages[s].branches`` parallel
  branches at 1/4, 1/8, 1/16, 1/32, joined by fusion modules; the head gets the last module's branches.
* ``single_branch`` (Table 6's baseline): one branch that downsamples through the same
  resolutions. In module ``s`` it runs at the coarsest resolution the multi-branch module reaches
  (branch ``stages[s].branches - 1``), with that branch's width, through as many searching blocks
  as the multi-branch module has in all its branches (``sum(stages[s].blocks)``): each block costs
  about the same at every resolution (channels double where the area quarters), so the two spaces'
  supernets stay in the same MAC range. Between modules one transition block (stride 2 where the
  resolution halves, stride 1 where it stays) replaces the fusion module. The head is the same
  head, fed the way a single-branch backbone feeds a multi-scale head (as an FPN or U-Net decoder
  reads a ResNet's C2..C5): for each resolution, the last feature the branch produced there. Giving
  the head only the final 1/32 feature, upsampled, would change two things at once (the topology
  and what the head sees, at a 270 -> 144 channel head input in the official space), so Table 6
  would no longer isolate the multi-branch design.

Labels are the multi-branch space's (:mod:`search_spaces.labels`): the branch index of a block is the
resolution it runs at (``b``: 1/(4 * 2**b)), so ``p3_b3_n5`` is the sixth block of module 3 at
1/32 and ``f2_o2_i1`` the transition into module 2 from 1/8 to 1/16; the analysis's per-branch
views read them as resolutions in both layouts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # annotations only: config.py imports this module to validate the layout
    from .config import HRNASConfig, StageConfig

MULTI_BRANCH = "multi_branch"
SINGLE_BRANCH = "single_branch"
#: the allowed values of ``HRNASConfig.layout``
LAYOUTS = (MULTI_BRANCH, SINGLE_BRANCH)


class BranchStep(NamedTuple):
    """Module ``stage`` of the single branch: at resolution index ``branch`` with ``channels``, ``blocks`` blocks."""

    stage: int
    branch: int
    channels: int
    blocks: int


def single_branch_steps(stages: Sequence[StageConfig]) -> list[BranchStep]:
    """The single branch's module of every stage (see the module docstring)."""
    return [
        BranchStep(s, stage.branches - 1, stage.channels[stage.branches - 1], sum(stage.blocks))
        for s, stage in enumerate(stages)
    ]


def head_input_channels(config: HRNASConfig) -> tuple[int, ...]:
    """Channels of the features the task head receives, finest first.

    Multi-branch: the last module's branches. Single-branch: at each resolution, the width of the
    last module that ran there.
    """
    if config.layout != SINGLE_BRANCH:
        return config.stages[-1].channels
    last: dict[int, int] = {}
    for step in single_branch_steps(config.stages):
        last[step.branch] = step.channels
    return tuple(last[b] for b in sorted(last))
