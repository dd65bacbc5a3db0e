"""The HR-NAS searching block (paper Sec. 3.2, Fig. 3c, Eq. 5): MixConv path + transformer path."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from ..labels import kernel_choice
from .layers import TORCH_LAYERS, LayerFactory, Width, is_removed
from .transformer import LightweightTransformer, TransformerSettings


class KernelPath(nn.Module):
    """One kernel size of the MixConv: 1x1 expand + BN + act, kxk depthwise + BN + act, 1x1 project.

    The BN after the depthwise conv carries one gamma per channel: the channel's importance.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: Width,
        kernel_size: int,
        stride: int,
        layers: LayerFactory = TORCH_LAYERS,
    ) -> None:
        super().__init__()
        self.kernel_size, self.stride = kernel_size, stride
        self.expand = layers.conv2d(in_channels, width, 1, bias=False)
        self.expand_bn = layers.batchnorm2d(width)
        self.dw = layers.conv2d(
            width, width, kernel_size, stride=stride, padding=kernel_size // 2, groups=width, bias=False
        )
        self.dw_bn = layers.batchnorm2d(width)
        self.project = layers.conv2d(width, out_channels, 1, bias=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor | None:
        x = self.expand(x)
        if x.shape[1] == 0:  # width 0 drawn inside a one-shot supernet: the path is absent
            return None
        x = self.act(self.dw_bn(self.dw(self.act(self.expand_bn(x)))))
        return self.project(x)


class SearchingBlock(nn.Module):
    """Shortcut + MixConv (kernel paths summed, then BN) + lightweight transformer.

    Args:
        in_channels, out_channels: channels in and out.
        stride: 1 for a normal block, 2 for a reduction block (the transformer then outputs half size).
        kernel_widths: depthwise channels per kernel size, e.g. ``{3: 96, 5: 96, 7: 96}``; a width of
            0 removes that path.
        num_tokens: transformer tokens; 0 (the default) removes the transformer path.
        transformer: settings of the transformer path.
        layers: constructors for the searched layers.

    When every path is removed the block is its shortcut: identity when the shape is kept,
    else a grouped 1x1 conv (groups = gcd(in, out)) with the stride.

    Example:
        >>> block = SearchingBlock(18, 18, kernel_widths={3: 72, 5: 72, 7: 0}, num_tokens=8)
        >>> block(torch.randn(1, 18, 32, 32)).shape
        torch.Size([1, 18, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        kernel_widths: Mapping[int, Width] | None = None,
        num_tokens: Width = 0,
        transformer: TransformerSettings | None = None,
        layers: LayerFactory = TORCH_LAYERS,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        kernel_widths = dict(kernel_widths if kernel_widths is not None else {3: 4 * in_channels})
        self.paths = nn.ModuleDict(
            {
                kernel_choice(k): KernelPath(in_channels, out_channels, w, k, stride, layers)
                for k, w in sorted(kernel_widths.items())
                if not is_removed(w)
            }
        )
        self.mix_bn = nn.BatchNorm2d(out_channels) if len(self.paths) else None
        self.transformer = None
        if not is_removed(num_tokens):
            settings = transformer or TransformerSettings()
            self.transformer = LightweightTransformer(
                in_channels, out_channels, num_tokens, stride=stride, layers=layers, **settings.kwargs()
            )
        if stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Conv2d(
                in_channels,
                out_channels,
                1,
                stride=stride,
                groups=math.gcd(in_channels, out_channels),
                bias=False,
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.shortcut(x)
        if self.mix_bn is not None:
            mixed = None
            for path in self.paths.values():
                y = path(x)
                if y is not None:
                    mixed = y if mixed is None else mixed + y
            if mixed is not None:
                out = out + self.mix_bn(mixed)
        if self.transformer is not None:
            out = out + self.transformer(x)
        return out
