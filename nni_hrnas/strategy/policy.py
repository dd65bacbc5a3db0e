"""The pruning policy of the search: what the penalty weighs, which units go, and the budget path.

Pure decisions on a built network, without training or devices: the loop calls
:meth:`PruningPolicy.lambda_at` at every step, and at a prune step :meth:`PruningPolicy.keep` (which
units stay, given the BN-recalibrated gammas) and :meth:`PruningPolicy.next_lambda_scale` (budget
mode: how the penalty is scaled to follow a path to ``target_macs``). Every rank of a data-parallel
search calls them with the same gammas and gets the same answer.

A search has two phases: **shrinking** (the first ``shrink_epochs``, all epochs by default, as in
the paper: penalty and prune steps) and **training** (the epochs after, if any: the final
architecture trained with the task loss alone, evaluated every ``prune_every`` epochs and at the
end).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .interface import ShrinkableNetwork, ShrinkableSpace
from .prune import Keep, budget_keep, ranked_units, threshold_keep, widths_after
from .units import UnitGroup, WidthCost, unit_groups


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is a finite number in the given range."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} {' and '.join(x for x in (lo, hi) if x)}, got {value!r}")


def minimum_macs(space: ShrinkableSpace, input_size: tuple[int, int, int]) -> int:
    """The fewest MACs a search of ``space`` can reach: every unit removed (stem, shortcuts and head)."""
    with torch.device("meta"):
        empty = space.build_network({k: 0 for k in space.max_sample()})
    return int(empty.cost(tuple(input_size)).macs)


def shrink_end(shrink_epochs: int | None, epochs: int) -> int:
    """The epoch a search of ``epochs`` that shrinks for ``shrink_epochs`` (``None``: all of them, the
    paper's schedule) stops shrinking; the epochs after it train the final architecture."""
    return epochs if shrink_epochs is None else min(shrink_epochs, epochs)


@dataclass(frozen=True)
class PruningPolicy:
    """Units, penalty, threshold and budget of one search (see :class:`ProgressiveShrinking` for the args).

    ``round_up(label, count)`` is the space's granularity (None: every count is allowed);
    ``min_path_width`` the fewest units a label keeps, if any (1: no minimum). Both act through
    :meth:`width_rule`.
    """

    lambda_: float
    eps: float
    prune_every: int
    warmup_epochs: float
    input_size: tuple[int, int, int]
    target_macs: int | None = None
    target_tolerance: float = 0.05
    path_overhead: float = 0.0
    round_up: Callable[[str, int], int] | None = None
    shrink_epochs: int | None = None
    unit_cost: str = "exact"
    elementwise_weight: float = 0.0
    min_path_width: int = 1

    def unit_groups(self, model: ShrinkableNetwork) -> list[UnitGroup]:
        """The search units of ``model`` with the penalty weights of this search (input size, path
        overhead, unit cost, element-wise weight)."""
        return unit_groups(
            model, self.input_size, self.path_overhead, self.unit_cost, self.elementwise_weight
        )

    def width_rule(self, label: str, count: int) -> int:
        """The units ``label`` keeps of the ``count`` a prune step would leave it: rounded up to the
        space's granularity, then none if fewer than ``min_path_width``."""
        if self.round_up is not None:
            count = self.round_up(label, count)
        return count if count >= self.min_path_width else 0

    def shrink_end(self, epochs: int) -> int:
        """The epoch the shrinking phase ends at (``epochs`` when the whole search shrinks)."""
        return shrink_end(self.shrink_epochs, epochs)

    def in_training_phase(self, epoch: int, epochs: int) -> bool:
        """Whether epoch ``epoch`` (0-based) trains the final architecture (after shrinking)."""
        return epoch >= self.shrink_end(epochs)

    def lambda_at(self, t: float, scale: float, epochs: int) -> float:
        """The penalty weight at fractional epoch ``t``: a linear ramp from 0 over ``warmup_epochs``;
        0 in the training phase."""
        if self.in_training_phase(int(t), epochs):
            return 0.0
        ramp = 1.0 if self.warmup_epochs <= 0 else min(1.0, t / self.warmup_epochs)
        return self.lambda_ * scale * ramp

    def prunes_after(self, epoch: int, epochs: int) -> bool:
        """Whether epoch ``epoch`` (0-based) ends with a prune step: every ``prune_every`` epochs of the
        shrinking phase, and its last."""
        end = self.shrink_end(epochs)
        return epoch < end and ((epoch + 1) % self.prune_every == 0 or epoch + 1 == end)

    def evaluates_after(self, epoch: int, epochs: int) -> bool:
        """Whether a training-phase epoch ends with an evaluation: every ``prune_every``, and the last."""
        return self.in_training_phase(epoch, epochs) and (
            (epoch + 1) % self.prune_every == 0 or epoch + 1 == epochs
        )

    def phase_epochs(self, epoch: int, epochs: int) -> int:
        """The epochs of the phase ``epoch`` is in: each phase has an optimizer and schedule of its own."""
        end = self.shrink_end(epochs)
        return epochs - end if self.in_training_phase(epoch, epochs) else end

    def keep(self, groups: list[UnitGroup], model: ShrinkableNetwork, last: bool) -> Keep:
        """The units that stay: |gamma| >= eps, bounded by the budget (never below it; at the last step
        at or just under it, or above it within ``target_tolerance``)."""
        keep = threshold_keep(groups, self.eps, self.width_rule)
        if self.target_macs is None:
            return keep
        width_cost = WidthCost(model, self.input_size)
        after = width_cost.macs(widths_after(model.arch, keep))
        if after < self.target_macs:  # never prune below the budget: drop fewer of the units below eps
            below = [u for u in ranked_units(groups) if u[0] < self.eps]
            floor = budget_keep(
                groups, model.arch, width_cost, self.target_macs, below, "floor", self.width_rule
            )
            # At the last step the floor can stay far above the budget when the next unit below eps
            # would remove a whole path (min_path_width: digits_kp seed 3 ended 15% above); the user
            # asked for a budget, so the last step then lands at or under it instead.
            after = width_cost.macs(widths_after(model.arch, floor))
            if not last or self._target_error(after) <= self.target_tolerance:
                return floor
        if last and after > self.target_macs:  # the final step lands at or just under the budget
            return budget_keep(
                groups,
                model.arch,
                width_cost,
                self.target_macs,
                ranked_units(groups),
                "ceiling",
                self.width_rule,
            )
        return keep

    def next_lambda_scale(self, scale: float, macs: int, start_macs: int, epoch: int, epochs: int) -> float:
        """Budget mode: scale the penalty up when behind the path to the target, down when ahead of it.

        The path runs from ``start_macs`` at the end of the penalty's warm-up (before it no gamma can
        reach eps, so no search is behind) to the target at 80% of the ``epochs``."""
        if self.target_macs is None:
            return scale
        reach = max(epochs * 0.8, 1.0)
        begin = min(self.warmup_epochs, reach - 1.0)  # at least one epoch of path after the warm-up
        progress = min(1.0, max(0.0, (epoch + 1 - begin) / (reach - begin)))
        desired = start_macs + (self.target_macs - start_macs) * progress
        if macs > desired * 1.02:
            return min(scale * 1.5, 1e4)
        if macs < desired:
            return max(scale / 1.5, 1e-4)
        return scale

    def _target_error(self, macs: int) -> float:
        """How far ``macs`` is from ``target_macs``, relative to it (positive: above)."""
        return (macs - self.target_macs) / self.target_macs

    def target_report(self, macs: int, scale: float) -> dict[str, Any] | None:
        """Where the result landed relative to ``target_macs`` (None without a budget)."""
        if self.target_macs is None:
            return None
        error = self._target_error(macs)
        return {
            "macs": self.target_macs,
            "relative_error": error,
            "side": "below" if error < 0 else ("above" if error > 0 else "exact"),
            "within_tolerance": abs(error) <= self.target_tolerance,
            "final_lambda_scale": scale,
        }
