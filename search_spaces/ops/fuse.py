"""Inference form of a searched network: BatchNorms folded, a block's kernel paths merged.

A searching block's MixConv runs, per kernel path, 1x1 expand + BN + ReLU, depthwise + BN + ReLU
and 1x1 project, then sums the paths and applies one more BN: 7 ops a path. On a CPU at batch
1 each op costs tens of microseconds whatever its size, which swamps the arithmetic of a pruned
network. :class:`FusedMixConv` computes the same function with one expand conv over all paths'
channels, one depthwise conv per kernel size and one project conv, every BN folded into a conv's
weight and bias. The MACs are exactly the same (convs are only concatenated); the outputs equal
the unfused block's in eval mode to float tolerance.

Example:
    >>> net = fuse_for_inference(load_searched_model("runs/demo"))  # doctest: +SKIP
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .searching_block import SearchingBlock


def _fold(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``conv`` followed by ``bn`` (eval statistics), for a bias-free conv."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), bn.bias - bn.running_mean * scale


class FusedMixConv(nn.Module):
    """The kernel paths of one :class:`SearchingBlock` (and its ``mix_bn``) as one expand, one
    depthwise conv per kernel size and one project conv, BNs folded. Build with :meth:`from_block`."""

    def __init__(self, expand: nn.Conv2d, depthwise: nn.ModuleList, project: nn.Conv2d) -> None:
        super().__init__()
        self.expand, self.depthwise, self.project = expand, depthwise, project
        self.splits = [int(conv.in_channels) for conv in depthwise]

    @classmethod
    @torch.no_grad()
    def from_block(cls, block: SearchingBlock) -> FusedMixConv:
        """The fused form of ``block``'s kernel paths, with the weights and BNs they hold now."""
        paths = list(block.paths.values())
        expand_w, expand_b, dws, project_w = [], [], nn.ModuleList(), []
        for path in paths:
            w, b = _fold(path.expand.weight, path.expand_bn)
            expand_w.append(w)
            expand_b.append(b)
            dw_w, dw_b = _fold(path.dw.weight, path.dw_bn)
            dw = nn.Conv2d(
                dw_w.shape[0],
                dw_w.shape[0],
                path.kernel_size,
                stride=path.stride,
                padding=path.kernel_size // 2,
                groups=dw_w.shape[0],
                bias=True,
            )
            dw.weight.copy_(dw_w)
            dw.bias.copy_(dw_b)
            dws.append(dw)
            project_w.append(path.project.weight)
        width = sum(w.shape[0] for w in expand_w)
        expand = nn.Conv2d(block.in_channels, width, 1, bias=True)
        expand.weight.copy_(torch.cat(expand_w))
        expand.bias.copy_(torch.cat(expand_b))
        # mix_bn acts on the sum of the projections: fold it into the concatenated project conv
        w, b = _fold(torch.cat(project_w, dim=1), block.mix_bn)
        project = nn.Conv2d(width, block.out_channels, 1, bias=True)
        project.weight.copy_(w)
        project.bias.copy_(b)
        return cls(expand, dws, project)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu_(self.expand(x))
        if len(self.depthwise) == 1:
            return self.project(torch.relu_(self.depthwise[0](x)))
        parts = torch.split(x, self.splits, dim=1)
        x = torch.cat([conv(part) for conv, part in zip(self.depthwise, parts, strict=True)], dim=1)
        return self.project(torch.relu_(x))


class FusedSearchingBlock(nn.Module):
    """A :class:`SearchingBlock` for inference: shortcut + fused MixConv + transformer."""

    def __init__(self, block: SearchingBlock) -> None:
        super().__init__()
        self.shortcut, self.transformer = block.shortcut, block.transformer
        self.mix = FusedMixConv.from_block(block) if len(block.paths) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shortcut(x)
        if self.mix is not None:
            out = out + self.mix(x)
        if self.transformer is not None:
            out = out + self.transformer(x)
        return out


def fuse_for_inference(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every :class:`SearchingBlock` replaced by its fused form.

    The copy is for inference only: its BN statistics are frozen into conv weights, and the
    network's own ``cost()`` no longer applies to it (its MACs are those of ``model``).
    """
    fused = copy.deepcopy(model).eval()
    if isinstance(fused, SearchingBlock):
        return FusedSearchingBlock(fused).eval()
    for parent in list(fused.modules()):
        for attr, child in list(parent.named_children()):
            if isinstance(child, SearchingBlock):
                setattr(parent, attr, FusedSearchingBlock(child).eval())
    return fused
