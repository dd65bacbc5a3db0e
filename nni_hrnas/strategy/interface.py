"""What the strategy needs of a search space and of the networks it builds: its one interface to them.

The strategy imports no space package. :class:`ProgressiveShrinking` is handed a space with the
members of :class:`ShrinkableSpace` (``search_spaces.HRNASSpace`` has them), and everything it
trains, costs, prunes and rebuilds is a :class:`ShrinkableNetwork` that the space built. Searching
blocks themselves are :class:`search_spaces.ops.SearchingBlock` (the ops layer, below both).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

from torch import nn

from search_spaces.costs import Cost
from search_spaces.ops import SearchingBlock


class SearchSlot(Protocol):
    """Where a searching block sits: what unit costs need of it."""

    @property
    def label(self) -> str:
        """The block label (``p1_b0_n0``, ...): choice labels are ``{label}_{choice}``."""

    @property
    def input_stride(self) -> int:
        """The stride of the block's input w.r.t. the network's input."""


class ShrinkableNetwork(Protocol):
    """A network the strategy can train, cost, prune and rebuild (also an ``nn.Module``).

    Its state-dict entries of block ``label`` are ``blocks.{label}.…`` (pruning slices them by name).
    """

    arch: dict[str, int]  # the width of every choice label
    blocks: nn.ModuleDict  # block label -> SearchingBlock

    def searching_blocks(self) -> Iterable[tuple[SearchSlot, SearchingBlock]]:
        """Every searching block with its slot."""

    def cost(self, input_size: tuple[int, int, int] | None = None) -> Cost:
        """The exact per-image cost at ``input_size`` (C, H, W)."""

    def with_widths(self, widths: Mapping[str, int]) -> ShrinkableNetwork:
        """A network of the same layout with ``widths`` (fresh weights)."""


@runtime_checkable
class ShrinkableSpace(Protocol):
    """A search space the strategy can shrink."""

    config: Any  # its configuration: repr() identifies the space in the resume fingerprint

    @property
    def granular(self) -> bool:
        """Whether some widths move in steps coarser than 1, so pruned counts go through :meth:`round_up`."""

    def max_sample(self) -> dict[str, int]:
        """The supernet's architecture (the largest width of every choice label)."""

    def round_up(self, widths: Mapping[str, int]) -> dict[str, int]:
        """The smallest allowed widths >= ``widths``."""

    def build_network(self, arch: Mapping[str, int]) -> ShrinkableNetwork:
        """A plain network with widths ``arch`` (not validated: the strategy's own pruned widths)."""
