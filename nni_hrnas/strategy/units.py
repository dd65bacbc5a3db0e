"""Search units (paper Sec. 3.3): their importance factors, their costs (Eq. 6) and the penalty (Eq. 7).

A *unit* is one channel of a depthwise convolution (importance: the gamma of the BN after it)
or one token of a transformer (importance: the gamma of the BN over the decoded tokens, see
:mod:`search_spaces.ops.transformer` for why not the projector's). Units come in groups,
one group per choice label of the space (``{block}_k3``, ``{block}_tok``, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from search_spaces import costs, labels

from .interface import ShrinkableNetwork

HW = tuple[int, int]


@dataclass
class UnitGroup:
    """The units behind one choice label of a built network."""

    label: str  # choice label, e.g. 'p1_b0_n0_k3' or 'p1_b0_n0_tok'
    block: str  # block label, e.g. 'p1_b0_n0'
    kind: str  # 'k3', 'k5', 'k7' or 'tok'
    bn: nn.BatchNorm2d  # whose gamma (weight) holds one importance factor per unit
    unit_macs: int  # MACs one unit costs (Eq. 6); for tokens O_T(n') - O_T(n' - 1)
    in_hw: HW
    path_overhead: float = 0.0  # fixed cost of the whole path in MAC-equivalents (latency mode)
    unit_norm_act: int = 0  # BN and activation elements one unit carries (costs.norm_act)
    elementwise_weight: float = 0.0  # MAC-equivalents of one of those elements (latency mode)

    @property
    def count(self) -> int:
        """The number of units (channels or tokens) the group has now."""
        return int(self.bn.weight.shape[0])

    @property
    def unit_work(self) -> float:
        """What one unit costs by itself in MAC-equivalents: its MACs plus its BN and activation
        elements at ``elementwise_weight`` each."""
        return self.unit_macs + self.elementwise_weight * self.unit_norm_act

    def unit_cost(self) -> torch.Tensor | float:
        """The penalty weight of one unit: its work (:attr:`unit_work`) plus its share of the path's
        fixed overhead.

        The overhead is shared by the units still alive (a nonzero gamma: the truncated gradient
        makes removed units exact zeros), counted afresh at every step: as a path thins, its last
        units carry all of its overhead, so removing whole paths (not thinning them) is what pays.
        """
        if not self.path_overhead:
            return float(self.unit_work)
        alive = self.bn.weight.detach().ne(0).sum().clamp(min=1)
        return self.unit_work + self.path_overhead / alive

    def importance(self) -> torch.Tensor:
        """|gamma| of every unit (detached)."""
        return self.bn.weight.detach().abs()


def block_input_hw(input_size: tuple[int, int, int], input_stride: int) -> HW:
    """Spatial size of a block's input, as the network's ``cost`` computes it (``search_spaces.HRNASNetwork``)."""
    _, height, width = input_size
    return height // input_stride, width // input_stride


def unit_groups(
    net: ShrinkableNetwork,
    input_size: tuple[int, int, int],
    path_overhead: float = 0.0,
    unit_cost: str = "exact",
    elementwise_weight: float = 0.0,
) -> list[UnitGroup]:
    """Every group of search units of ``net``, costed at ``input_size`` (C, H, W).

    Costs come from the cost model at the given (training) input size: the same network searched
    at 64x64 and at 512x1024 weighs its branches differently. ``path_overhead`` (MAC-equivalents,
    see :func:`nni_hrnas.latency.measure_path_overhead`) adds each kernel path's and transformer's
    fixed cost, Eq. 7 adapted to latency. ``unit_cost`` (:data:`search_spaces.costs.UNIT_COSTS`) is what a
    depthwise channel counts: ``exact`` the MACs its removal saves, ``paper`` its depthwise conv alone.
    ``elementwise_weight`` (MAC-equivalents, fitted by ``benchmarks/bench_elementwise_weight.py``)
    adds each unit's BN and activation elements: memory-bound work that MACs do not count.
    """
    groups: list[UnitGroup] = []
    for slot, block in net.searching_blocks():
        hw = block_input_hw(input_size, slot.input_stride)
        unit = costs.block_unit_macs(block, hw, unit_cost)
        elements = costs.block_unit_norm_act(block, hw)
        for name, path in block.paths.items():
            groups.append(
                UnitGroup(
                    labels.choice_label(slot.label, name),
                    slot.label,
                    name,
                    path.dw_bn,
                    unit[name],
                    hw,
                    path_overhead,
                    elements[name],
                    elementwise_weight,
                )
            )
        if block.transformer is not None:
            groups.append(
                UnitGroup(
                    labels.choice_label(slot.label, labels.TOKENS),
                    slot.label,
                    labels.TOKENS,
                    block.transformer.token_bn,
                    unit[labels.TOKENS],
                    hw,
                    path_overhead,
                    elements[labels.TOKENS],
                    elementwise_weight,
                )
            )
    return groups


def mean_unit_work(groups: Iterable[UnitGroup]) -> float:
    """The mean work over all units (:attr:`UnitGroup.unit_work`): the normaliser that makes the mean
    unit cost 1.

    Path overheads are left out on purpose: they add to the pressure in the same units instead of
    diluting it. Element-wise work is counted in: it reprices units against each other (a channel at
    a high resolution between few channels costs more than its MACs say), and lambda keeps its
    strength.
    """
    total, count = 0.0, 0
    for g in groups:
        total += g.unit_work * g.count
        count += g.count
    if count == 0:
        return 1.0
    return max(total / count, 1e-12)


def penalty(groups: Iterable[UnitGroup], normaliser: float) -> torch.Tensor:
    """sum_i cost_i * |gamma_i| with costs divided by ``normaliser`` (Eq. 7 without lambda)."""
    terms = [g.bn.weight.abs().sum() * (g.unit_cost() / normaliser) for g in groups]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


class WidthCost:
    """Exact MACs of any widths reachable from a built network by removing units, without building it.

    A kernel path's MACs are linear in its width (no per-path constant), a transformer's are
    ``O_T(n)`` (0 at n = 0); everything else (stem, shortcuts, head, interpolations) is fixed.
    """

    def __init__(self, net: ShrinkableNetwork, input_size: tuple[int, int, int]) -> None:
        self.input_size = tuple(input_size)
        self.kernel_unit: dict[str, int] = {}
        self.transformers: dict[str, tuple[nn.Module, HW]] = {}
        variable = 0
        for slot, block in net.searching_blocks():
            hw = block_input_hw(self.input_size, slot.input_stride)
            for name, path in block.paths.items():
                label = labels.choice_label(slot.label, name)
                self.kernel_unit[label] = costs.kernel_unit_macs(
                    block.in_channels, block.out_channels, path.kernel_size, hw, block.stride
                )
                variable += self.kernel_unit[label] * costs.path_width(path)
            if block.transformer is not None:
                self.transformers[labels.choice_label(slot.label, labels.TOKENS)] = (block.transformer, hw)
                variable += costs.transformer_module_cost(block.transformer, hw).macs
        self.total = int(net.cost(self.input_size).macs)
        self.fixed = self.total - variable

    def macs(self, widths: Mapping[str, int]) -> int:
        """MACs with ``widths`` (labels missing from ``widths`` keep their built width)."""
        total = self.fixed
        for label, unit in self.kernel_unit.items():
            total += unit * int(widths[label])
        for label, (module, hw) in self.transformers.items():
            n = int(widths[label])
            if n:
                total += costs.transformer_module_cost(module, hw, n).macs
        return int(total)


@torch.no_grad()
def clip_zero_crossings_(
    groups: Iterable[UnitGroup], before: list[torch.Tensor], lam: float, normaliser: float
) -> int:
    """Make the L1 penalty give exact zeros (truncated gradient, Langford et al. 2009).

    A gradient step on ``|gamma|`` overshoots zero and then dithers around it with the step size,
    so thresholding at a small eps would be a lottery. After each optimizer step, an importance
    factor whose sign flipped is set to 0, and one that was 0 stays 0 unless its task gradient
    is larger than its penalty weight ``lam * cost`` (the optimality condition of L1 at 0).
    Returns the number of factors at 0.
    """
    zeros = 0
    for g, old in zip(groups, before, strict=True):
        w = g.bn.weight
        crossed = (old * w) < 0
        grad = w.grad if w.grad is not None else torch.zeros_like(w)
        stuck = (old == 0) & (grad.abs() <= lam * g.unit_cost() / normaliser)
        w.masked_fill_(crossed | stuck, 0.0)
        zeros += int((w == 0).sum())
    return zeros
