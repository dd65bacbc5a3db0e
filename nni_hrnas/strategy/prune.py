"""Removing search units physically: which units go, and the smaller network, optimizer state and EMA.

HR-NAS keeps arbitrary units (not a prefix), so every tensor sized by a choice is sliced by index:

* kernel path ``blocks.{b}.paths.k{K}``: ``expand``, ``expand_bn``, ``dw``, ``dw_bn`` along dim 0,
  ``project`` along dim 1;
* transformer ``blocks.{b}.transformer``: ``proj``, ``proj_bn``, ``queries``, ``pos_decoder``,
  ``token_bn`` along dim 0, ``inverse`` along dim 1.

A removed depthwise channel whose gamma is below eps outputs the constant ``relu(beta)``; its share
of the projection (``W_proj[:, c] relu(beta_c)``) is folded into the running mean of the block's
``mix_bn`` (in training mode the batch mean absorbs it anyway), so the rebuilt network computes
exactly what the *masked* network does (gamma of removed channels set to 0). Likewise a removed
token (gamma of ``token_bn`` below eps) outputs its beta, whose share of the inverse projection
is folded into the running mean of ``inverse_bn``; removed tokens also leave the attention. A MixConv with no
channel left is removed with its ``mix_bn`` (the block is then shortcut + transformer), a
transformer with no token left is removed, and a block with neither is its shortcut.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces import labels

from .units import UnitGroup, WidthCost

Keep = dict[str, torch.Tensor]  # choice label -> sorted indices of the units kept

_DIM0_PATH = ("expand", "expand_bn", "dw", "dw_bn")
_DIM0_TRANSFORMER = ("proj", "proj_bn", "queries", "pos_decoder", "token_bn")


def slice_spec(name: str) -> tuple[str, int] | None:
    """``(choice label, dim)`` a state-dict entry of a :class:`~.interface.ShrinkableNetwork` is sliced along, or None."""
    parts = name.split(".")
    if len(parts) < 5 or parts[0] != "blocks":
        return None
    block, owner = parts[1], parts[2]
    if owner == "paths" and len(parts) >= 6:
        module = parts[4]
        if module in _DIM0_PATH:
            return labels.choice_label(block, parts[3]), 0
        if module == "project":
            return labels.choice_label(block, parts[3]), 1
    if owner == "transformer":
        module = parts[3]
        if module in _DIM0_TRANSFORMER:
            return labels.choice_label(block, labels.TOKENS), 0
        if module == "inverse":
            return labels.choice_label(block, labels.TOKENS), 1
    return None


def slice_tensor(name: str, tensor: torch.Tensor, keep: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """``tensor`` (state entry ``name``) restricted to the kept units; unchanged if not unit-sized."""
    spec = slice_spec(name)
    if spec is None or tensor.ndim == 0:
        return tensor
    label, dim = spec
    if label not in keep:
        return tensor
    return tensor.index_select(dim, keep[label].to(tensor.device)).contiguous()


# ---- which units go -------------------------------------------------------------------------


#: ``(label, count) -> units the label keeps`` of the ``count`` units a prune step would leave it
#: (the space's granularity may raise the count, a minimum path width drop it to 0:
#: ``PruningPolicy.width_rule``)
WidthRule = Callable[[str, int], int]


def threshold_keep(groups: Iterable[UnitGroup], eps: float, width_rule: WidthRule | None = None) -> Keep:
    """Units with |gamma| >= ``eps`` are kept, the others removed.

    ``width_rule`` may change how many a label keeps: raised, the extra units kept are the most
    important of those below eps; lowered, the least important of those above go (to 0: the whole
    kernel path or transformer).
    """
    keep: Keep = {}
    for g in groups:
        importance = g.importance()
        idx = torch.nonzero(importance >= eps).flatten()
        keep[g.label] = _ruled(g.label, idx, importance, width_rule)
    return keep


def _ruled_count(label: str, units: int, total: int, width_rule: WidthRule | None) -> int:
    """The units ``label`` (``total`` in all) keeps when a prune step would leave it ``units``."""
    return units if width_rule is None else min(width_rule(label, units), total)


def _ruled(
    label: str, idx: torch.Tensor, importance: torch.Tensor, width_rule: WidthRule | None
) -> torch.Tensor:
    if width_rule is not None:
        count = _ruled_count(label, int(idx.numel()), int(importance.numel()), width_rule)
        if count > idx.numel():
            idx = torch.topk(importance, count).indices
        elif count < idx.numel():
            idx = idx[torch.topk(importance[idx], count).indices]
    return torch.sort(idx).values


def ranked_units(groups: Iterable[UnitGroup]) -> list[tuple[float, str, int]]:
    """Every unit as ``(|gamma|, label, index)``, least important first (ties broken by label, index)."""
    units = []
    for g in groups:
        for i, v in enumerate(g.importance().tolist()):
            units.append((float(v), g.label, i))
    units.sort()
    return units


def keep_without(
    groups: Iterable[UnitGroup],
    removed: Iterable[tuple[str, int]],
    width_rule: WidthRule | None = None,
) -> Keep:
    """The kept indices per label when the ``(label, index)`` units in ``removed`` go (``width_rule``:
    as :func:`threshold_keep`)."""
    gone: dict[str, set[int]] = {}
    for label, i in removed:
        gone.setdefault(label, set()).add(i)
    keep: Keep = {}
    for g in groups:
        drop = gone.get(g.label, set())
        idx = torch.tensor([i for i in range(g.count) if i not in drop], dtype=torch.long)
        keep[g.label] = _ruled(g.label, idx, g.importance(), width_rule)
    return keep


def widths_after(arch: Mapping[str, int], keep: Keep) -> dict[str, int]:
    """The architecture ``arch`` once each label in ``keep`` keeps only its kept units."""
    widths = dict(arch)
    for label, idx in keep.items():
        widths[label] = int(idx.numel())
    return widths


def budget_keep(
    groups: list[UnitGroup],
    arch: Mapping[str, int],
    width_cost: WidthCost,
    limit: int,
    candidates: list[tuple[float, str, int]],
    mode: str,
    width_rule: WidthRule | None = None,
) -> Keep:
    """Remove a prefix of ``candidates`` (least important first) so MACs meet ``limit``.

    ``mode='floor'``: the longest prefix keeping MACs >= ``limit`` (never prune below a budget);
    ``mode='ceiling'``: the shortest prefix giving MACs <= ``limit`` (land at or under a budget),
    then the most important of its units put back while MACs stay <= ``limit``
    (:func:`_put_back`).
    """

    def macs_of(k: int) -> tuple[int, Keep]:
        keep = keep_without(groups, [(label, i) for _, label, i in candidates[:k]], width_rule)
        return width_cost.macs(widths_after(arch, keep)), keep

    lo, hi = 0, len(candidates)
    if mode == "floor":  # largest k with macs(k) >= limit; macs decreases with k
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if macs_of(mid)[0] >= limit:
                lo = mid
            else:
                hi = mid - 1
        return macs_of(lo)[1]
    if mode == "ceiling":  # smallest k with macs(k) <= limit
        while lo < hi:
            mid = (lo + hi) // 2
            if macs_of(mid)[0] <= limit:
                hi = mid
            else:
                lo = mid + 1
        removed = _put_back(groups, arch, width_cost, limit, candidates[:lo], width_rule)
        return keep_without(groups, [(label, i) for _, label, i in removed], width_rule)
    raise ValueError(f"mode must be 'floor' or 'ceiling', got {mode!r}")


def _put_back(
    groups: list[UnitGroup],
    arch: Mapping[str, int],
    width_cost: WidthCost,
    limit: int,
    removed: list[tuple[float, str, int]],
    width_rule: WidthRule | None,
) -> list[tuple[float, str, int]]:
    """The units of ``removed`` (least important first) still removed once each of them, most
    important first, is put back if MACs stay <= ``limit``.

    The shortest prefix can overshoot the budget by a lot: its last unit may take a path below
    ``min_path_width`` and with it the whole path (the demo's search landed up to 15% under its
    budget). A unit put back into such a path changes nothing until the path reaches the minimum
    again; the unit that brings it back there goes back only if the whole path fits the budget.
    """
    count = {g.label: g.count for g in groups}
    left = dict(count)  # units per label before the width rule
    for _, label, _ in removed:
        left[label] -= 1
    # MACs depend on widths alone, and these are the widths keep_without gives the units left
    widths = {
        **arch,
        **{label: _ruled_count(label, n, count[label], width_rule) for label, n in left.items()},
    }
    still: list[tuple[float, str, int]] = []
    for unit in reversed(removed):
        label = unit[1]
        grown = _ruled_count(label, left[label] + 1, count[label], width_rule)
        if grown != widths[label]:
            trial = {**widths, label: grown}
            if width_cost.macs(trial) > limit:
                still.append(unit)
                continue
            widths = trial
        left[label] += 1
    return still[::-1]


def units_removed(groups: Iterable[UnitGroup], keep: Keep) -> int:
    """How many units of ``groups`` a prune step with ``keep`` removes."""
    return sum(g.count - int(keep[g.label].numel()) for g in groups if g.label in keep)


# ---- the smaller network --------------------------------------------------------------------


def _removed_offsets(net: nn.Module, keep: Keep) -> dict[str, torch.Tensor]:
    """Per BN running mean: the constant the removed units fed it.

    ``mix_bn``: the sum over removed depthwise channels of ``W_proj[:, c] * relu(beta_c)``;
    ``inverse_bn``: the sum over removed tokens of ``W_inv[:, t] * beta_t``.
    """
    offsets: dict[str, torch.Tensor] = {}
    for label, block in net.blocks.items():
        total = None
        for name, path in block.paths.items():
            idx = keep.get(labels.choice_label(label, name))
            if idx is None:
                continue
            mask = torch.ones(path.dw_bn.weight.shape[0], dtype=torch.bool)
            mask[idx] = False
            if not mask.any():
                continue
            beta = F.relu(path.dw_bn.bias.detach()[mask])
            contribution = path.project.weight.detach()[:, mask, 0, 0] @ beta
            total = contribution if total is None else total + contribution
        if total is not None:
            offsets[f"blocks.{label}.mix_bn.running_mean"] = total
        t = block.transformer
        idx = keep.get(labels.choice_label(label, labels.TOKENS))
        if t is not None and idx is not None:
            mask = torch.ones(t.token_bn.weight.shape[0], dtype=torch.bool)
            mask[idx] = False
            if mask.any():
                beta = t.token_bn.bias.detach()[mask]
                offsets[f"blocks.{label}.transformer.inverse_bn.running_mean"] = (
                    t.inverse.weight.detach()[:, mask, 0, 0] @ beta
                )
    return offsets


def rebuild(net: nn.Module, keep: Keep) -> nn.Module:
    """A new network (``net.with_widths``) with only the kept units, its weights copied by index.

    Its outputs equal those of ``net`` with the removed units masked (gamma 0, emptied MixConvs
    and transformers dropped, removed tokens left out of attention), in train and eval mode.
    """
    widths = widths_after(net.arch, keep)
    offsets = _removed_offsets(net, keep)
    device = next(net.parameters()).device
    new = net.with_widths(widths).to(device)
    old_state = net.state_dict()
    state = {}
    for name, target in new.state_dict().items():
        value = slice_tensor(name, old_state[name], keep)
        if value.shape != target.shape:
            raise RuntimeError(
                f"rebuild: {name} is {tuple(value.shape)} after slicing, expected {tuple(target.shape)}"
            )
        state[name] = value.clone()
    for key, offset in offsets.items():
        if key in state:
            state[key] = state[key] - offset.to(state[key].dtype)
    new.load_state_dict(state)
    new.train(net.training)
    return new


def slice_optimizer_(optimizer: torch.optim.Optimizer, old: nn.Module, new: nn.Module, keep: Keep) -> None:
    """Point ``optimizer`` at ``new``'s parameters, slicing every per-parameter state tensor in place.

    The param groups (and so any LR scheduler bound to the optimizer) are kept; a parameter that
    no longer exists leaves its group.
    """
    old_names = {id(p): n for n, p in old.named_parameters()}
    new_params = dict(new.named_parameters())
    for group in optimizer.param_groups:
        params = []
        for p in group["params"]:
            name = old_names.get(id(p))
            if name is None:
                raise RuntimeError(
                    "slice_optimizer_: the optimizer holds a parameter that is not the model's"
                )
            state = optimizer.state.pop(p, None)
            if name not in new_params:
                continue
            q = new_params[name]
            params.append(q)
            if state:
                optimizer.state[q] = {
                    k: (
                        slice_tensor(name, v, keep).clone()
                        if torch.is_tensor(v) and v.shape == p.shape
                        else v
                    )
                    for k, v in state.items()
                }
        group["params"] = params


@torch.no_grad()
def recalibrate_bn(model: nn.Module, inputs: Iterable[torch.Tensor]) -> int:
    """Reset every BatchNorm's running statistics and re-estimate them (cumulative average) on ``inputs``."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was_training = model.training
    model.train()
    seen = 0
    try:
        for x in inputs:
            model(x)
            seen += 1
    finally:
        for m, momentum in zip(bns, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return seen
