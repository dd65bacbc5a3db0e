"""Inference form of a searched network: BatchNorms folded, a block's kernel paths merged.

A searching block's MixConv runs, per kernel path, 1x1 expand + BN + ReLU, depthwise + BN + ReLU
and 1x1 project, then sums the paths and applies one more BN: 7 ops a path. On a CPU at batch
1 each op costs tens of microseconds whatever its size, which swamps the arithmetic of a pruned
network. :class:`FusedMixConv` computes the same function with one expand conv over all paths'
channels, one depthwise conv per kernel size and one project conv, every BN folded into a conv's
weight and bias. The MACs are exactly the same (convs are only concatenated); the outputs equal
the unfused block's in eval mode to float tolerance.

``channel_multiple`` pads each kernel path's depthwise channels with zeros up to a multiple (zero
expand rows and bias, zero depthwise filter and bias, zero project columns: ReLU(0) = 0, so the
outputs are unchanged). Pruning leaves widths such as 13 or 27; onnxruntime's CPU convolutions run
a blocked channel layout (8 or 16 channels a block) and fall back to a far slower path for other
widths: a MAC-only search's network at 19% of the supernet's MACs ran in onnxruntime as slowly as
the supernet (7.2 vs 8.1 ms at batch 1), and 3.4 ms with every path rounded up to a multiple of 4.

Example:
    >>> net = fuse_for_inference(load_searched_model("runs/demo"))  # doctest: +SKIP
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .searching_block import SearchingBlock

#: The width multiple that ``hrnas export --fuse`` and ``hrnas bench --fuse`` pad kernel paths to by
#: default: onnxruntime's blocked CPU layout takes 8 channels a block (AVX2; 16 on AVX-512, where 8
#: measured as fast here). Measured on digits_seg networks at batch 1 / 32, one thread: a MAC-only
#: search's network 4.8 / 90.9 ms unpadded, 3.2 / 44.5 ms padded to 8.
DEPLOY_CHANNEL_MULTIPLE = 8


def _fold(weight: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``conv`` followed by ``bn`` (eval statistics), for a bias-free conv."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return weight * scale.reshape(-1, *([1] * (weight.dim() - 1))), bn.bias - bn.running_mean * scale


def _pad_rows(weight: torch.Tensor, bias: torch.Tensor, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``weight`` and ``bias`` with ``rows`` zero output channels appended."""
    return (
        torch.cat([weight, weight.new_zeros(rows, *weight.shape[1:])]),
        torch.cat([bias, bias.new_zeros(rows)]),
    )


class FusedMixConv(nn.Module):
    """The kernel paths of one :class:`SearchingBlock` (and its ``mix_bn``) as one expand, one
    depthwise conv per kernel size and one project conv, BNs folded. Build with :meth:`from_block`."""

    def __init__(self, expand: nn.Conv2d, depthwise: nn.ModuleList, project: nn.Conv2d) -> None:
        super().__init__()
        self.expand, self.depthwise, self.project = expand, depthwise, project
        self.splits = [int(conv.in_channels) for conv in depthwise]

    @classmethod
    @torch.no_grad()
    def from_block(cls, block: SearchingBlock, channel_multiple: int = 1) -> FusedMixConv:
        """The fused form of ``block``'s kernel paths, with the weights and BNs they hold now; each
        path's width zero-padded up to a multiple of ``channel_multiple`` (same outputs)."""
        paths = list(block.paths.values())
        expand_w, expand_b, dws, project_w = [], [], nn.ModuleList(), []
        for path in paths:
            pad = -path.dw.weight.shape[0] % channel_multiple
            w, b = _pad_rows(*_fold(path.expand.weight, path.expand_bn), pad)
            expand_w.append(w)
            expand_b.append(b)
            dw_w, dw_b = _pad_rows(*_fold(path.dw.weight, path.dw_bn), pad)
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
            project_w.append(torch.nn.functional.pad(path.project.weight, (0, 0, 0, 0, 0, pad)))
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

    def __init__(self, block: SearchingBlock, channel_multiple: int = 1) -> None:
        super().__init__()
        self.shortcut, self.transformer = block.shortcut, block.transformer
        self.mix = FusedMixConv.from_block(block, channel_multiple) if len(block.paths) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shortcut(x)
        if self.mix is not None:
            out = out + self.mix(x)
        if self.transformer is not None:
            out = out + self.transformer(x)
        return out


def fuse_for_inference(model: nn.Module, channel_multiple: int = 1) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every :class:`SearchingBlock` replaced by its fused form.

    The copy is for inference only: its BN statistics are frozen into conv weights, and the
    network's own ``cost()`` no longer applies to it (its MACs are those of ``model``, plus the
    zero channels that ``channel_multiple`` > 1 pads each kernel path with; see the module's note).
    """
    if channel_multiple < 1:
        raise ValueError(f"channel_multiple must be >= 1, got {channel_multiple}")
    fused = copy.deepcopy(model).eval()
    if isinstance(fused, SearchingBlock):
        return FusedSearchingBlock(fused, channel_multiple).eval()
    for parent in list(fused.modules()):
        for attr, child in list(parent.named_children()):
            if isinstance(child, SearchingBlock):
                setattr(parent, attr, FusedSearchingBlock(child, channel_multiple).eval())
    return fused
