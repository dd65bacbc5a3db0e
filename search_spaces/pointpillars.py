"""PointPillars' own 2D network (its "RPN"), the fixed baseline of the detection presets.

Three blocks of 3x3 convolutions (BN, ReLU) at strides 2, 4, 8 of the pseudo-image, the first of
each strided: ``layers`` more convolutions after it and ``channels`` filters (published car
setting: 3/5/5 and 64/128/256); each block's output is upsampled by a transposed convolution
(kernel = stride = 1, 2, 4) to ``up_channels`` at stride 2 and the three are concatenated; a 1x1
convolution gives the anchor head's outputs, the same head as the searched networks'.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import costs
from .ops.pillars import POINT_FEATURES, PillarFrontEnd, PillarSettings, init_class_prior
from .presets import KITTI_SIM_PILLARS


@dataclass(frozen=True)
class RPNConfig:
    """The RPN's layout (published car setting by default) and what it runs on."""

    pillars: PillarSettings = PillarSettings()
    num_outputs: int = 20
    layers: tuple[int, ...] = (3, 5, 5)
    channels: tuple[int, ...] = (64, 128, 256)
    up_channels: tuple[int, ...] = (128, 128, 128)
    up_strides: tuple[int, ...] = (1, 2, 4)

    def __post_init__(self) -> None:
        if isinstance(self.pillars, dict):
            object.__setattr__(self, "pillars", PillarSettings(**self.pillars))
        for name in ("layers", "channels", "up_channels", "up_strides"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not len(self.layers) == len(self.channels) == len(self.up_channels) == len(self.up_strides):
            raise ValueError(
                "RPNConfig: layers, channels, up_channels and up_strides need one entry per block"
            )

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(C, H, W) of the pseudo-image (the pillar settings')."""
        return self.pillars.input_size

    @property
    def max_stride(self) -> int:
        """The total downsampling of the RPN's blocks (one stride 2 per block)."""
        return 2 ** len(self.layers)


def _conv_bn(c_in: int, c_out: int, stride: int, momentum: float) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
        nn.BatchNorm2d(c_out, eps=1e-3, momentum=momentum),
        nn.ReLU(inplace=True),
    ]


class PointPillarsRPN(nn.Module):
    """Pseudo-image (B, C, H, W) or packed pillars (B, P, K) -> head outputs (B, num_outputs, H/2, W/2)."""

    def __init__(self, config: RPNConfig = RPNConfig()) -> None:
        super().__init__()
        self.config = config
        self.arch: dict[str, int] = {}  # nothing searched
        self.frontend = PillarFrontEnd(config.pillars)
        c_in = config.pillars.channels
        momentum = config.pillars.bn_momentum  # the grid's: PointPillars' 0.01, or 0.1 for short runs
        self.blocks = nn.ModuleList()
        self.ups = nn.ModuleList()
        for n, c, up, s in zip(
            config.layers, config.channels, config.up_channels, config.up_strides, strict=True
        ):
            layers = _conv_bn(c_in, c, 2, momentum)
            for _ in range(n):
                layers += _conv_bn(c, c, 1, momentum)
            self.blocks.append(nn.Sequential(*layers))
            self.ups.append(
                nn.Sequential(
                    nn.ConvTranspose2d(c, up, s, s, bias=False),
                    nn.BatchNorm2d(up, eps=1e-3, momentum=momentum),
                    nn.ReLU(inplace=True),
                )
            )
            c_in = c
        self.classifier = init_class_prior(nn.Conv2d(sum(config.up_channels), config.num_outputs, 1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The three blocks' upsampled outputs, concatenated: what the classifier reads (stride 2)."""
        if x.ndim == 3:
            x = self.frontend(x)
        outs = []
        for block, up in zip(self.blocks, self.ups, strict=True):
            x = block(x)
            outs.append(up(x))
        return torch.cat(outs, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

    def cost_breakdown(self, input_size: tuple[int, int, int] | None = None) -> dict[str, costs.Cost]:
        """Exact per-sample cost on the pseudo-image: ``frontend`` (parameters only), ``block{i}``, ``up{i}``, ``head``."""
        c = self.config
        channels, h, w = input_size or c.input_size
        stride = c.max_stride
        if channels != c.pillars.channels or h % stride or w % stride:
            raise ValueError(
                f"input {input_size}: expected {c.pillars.channels} channels and sides divisible by {stride}"
            )
        groups = {"frontend": costs.Cost(params=c.pillars.channels * (POINT_FEATURES + 2))}
        c_in, hw = channels, (h, w)
        for i, (n, ch, up, s) in enumerate(
            zip(c.layers, c.channels, c.up_channels, c.up_strides, strict=True)
        ):
            hw = (hw[0] // 2, hw[1] // 2)
            cost = costs.conv_cost(c_in, ch, 3, hw) + costs.batchnorm_cost(ch, hw, act=True)
            for _ in range(n):
                cost += costs.conv_cost(ch, ch, 3, hw) + costs.batchnorm_cost(ch, hw, act=True)
            groups[f"block{i}"] = cost
            out_hw = (hw[0] * s, hw[1] * s)
            groups[f"up{i}"] = costs.upsampling_conv_cost(ch, up, s, hw) + costs.batchnorm_cost(
                up, out_hw, act=True
            )
            c_in = ch
        groups["head"] = costs.conv_cost(sum(c.up_channels), c.num_outputs, 1, (h // 2, w // 2), bias=True)
        return groups

    def cost(self, input_size: tuple[int, int, int] | None = None) -> costs.Cost:
        """The exact total cost: the sum of :meth:`cost_breakdown`."""
        return sum(self.cost_breakdown(input_size).values(), costs.Cost())


#: the published car RPN, and a CPU-sized one on the simulator's grid (half the widths)
RPN_PRESETS = {
    "pointpillars": RPNConfig(),
    "pointpillars_sim": RPNConfig(
        pillars=KITTI_SIM_PILLARS, channels=(32, 64, 128), up_channels=(64, 64, 64)
    ),
}
