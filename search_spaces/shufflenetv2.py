"""ShuffleNetV2 (Ma et al., ECCV 2018), with or without the HR-NAS transformer in every block (Table 8).

The layout is torchvision's ``shufflenet_v2_x1_0`` (same layers, widths and module names, so its
state-dict keys match): a 3x3 stride-2 conv + BN + ReLU and a 3x3 stride-2 max pool, three stages of
4 / 8 / 4 shuffle blocks (116 / 232 / 464 channels at 1.0x), a 1x1 conv to 1024 + BN + ReLU, global
average pool and a linear layer. A stride-1 block splits the channels in two halves and runs
1x1 + BN + ReLU, 3x3 depthwise + BN, 1x1 + BN + ReLU on the second; a stride-2 block runs that on the
whole input and a second branch (3x3 depthwise stride 2 + BN, 1x1 + BN + ReLU) beside it. The
halves are concatenated and shuffled. 1.0x with 1000 classes has 2,278,604 parameters, torchvision's count.

``tokens > 0`` adds a :class:`~search_spaces.ops.LightweightTransformer` beside each of the 16 blocks:
it reads the block's input and its output is added to the block's (shuffled) output. Segmentation
drops the 1x1 conv to 1024 and the classifier and puts a :class:`~.plugin.PSPHead` on the last
stage's output (464 channels at 1/32).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import costs
from .config import ConfigError
from .plugin import (
    PluginConfig,
    PSPHead,
    blocks_cost,
    check_image_size,
    check_images,
    check_trainable,
    family_presets,
    head_cost,
    init_like_torchvision,
)

STAGE_REPEATS = (4, 8, 4)
#: output channels of conv1, stage2, stage3, stage4 and conv5 at 1.0x (torchvision's ``shufflenet_v2_x1_0``)
STAGE_CHANNELS_X1_0 = (24, 116, 232, 464, 1024)


@dataclass(frozen=True)
class ShuffleNetV2Config(PluginConfig):
    """ShuffleNetV2's layout on top of the shared plug-in fields (:class:`~.plugin.PluginConfig`).

    Attributes:
        stage_repeats: blocks of the three stages.
        stage_channels: output channels of conv1, the three stages and conv5 (1.0x by default).
    """

    stage_repeats: tuple[int, ...] = STAGE_REPEATS
    stage_channels: tuple[int, ...] = STAGE_CHANNELS_X1_0

    def __post_init__(self) -> None:
        object.__setattr__(self, "stage_repeats", tuple(self.stage_repeats))
        object.__setattr__(self, "stage_channels", tuple(self.stage_channels))
        super().__post_init__()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        super().validate()
        if len(self.stage_repeats) != 3 or any(not isinstance(v, int) or v < 1 for v in self.stage_repeats):
            raise ConfigError(
                "stage_repeats", self.stage_repeats, "expected three positive integers, e.g. (4, 8, 4)"
            )
        if len(self.stage_channels) != 5 or any(not isinstance(v, int) or v < 1 for v in self.stage_channels):
            raise ConfigError(
                "stage_channels",
                self.stage_channels,
                "expected five positive integers (conv1, three stages, conv5), e.g. (24, 116, 232, 464, 1024)",
            )
        if any(v % 2 for v in self.stage_channels[1:4]):
            raise ConfigError(
                "stage_channels", self.stage_channels, "the three stages' widths must be even (two halves)"
            )

    def build(self) -> ShuffleNetV2:
        """The network of this config."""
        return ShuffleNetV2(self)


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups (group g's channel i goes to i * groups + g)."""
    batch, channels, height, width = x.shape
    return (
        x.view(batch, groups, channels // groups, height, width)
        .transpose(1, 2)
        .reshape(batch, channels, height, width)
    )


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


def _pointwise(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ShuffleBlock(nn.Module):
    """ShuffleNetV2's unit (torchvision calls it ``InvertedResidual``), plus an optional transformer
    whose output is added to the block's output."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, transformer: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.branch_channels = b = out_channels // 2
        if stride == 1 and in_channels != 2 * b:
            raise ValueError(
                f"a stride-1 shuffle block keeps its width: got {in_channels} in, {out_channels} out"
            )
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(in_channels, stride), nn.BatchNorm2d(in_channels), *_pointwise(in_channels, b)
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            *_pointwise(in_channels if stride > 1 else b, b),
            _depthwise(b, stride),
            nn.BatchNorm2d(b),
            *_pointwise(b, b),
        )
        self.transformer = transformer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            kept, y = x.chunk(2, dim=1)
            out = torch.cat((kept, self.branch2(y)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        out = channel_shuffle(out, 2)
        if self.transformer is not None:
            out = out + self.transformer(x)
        return out

    def conv_cost(self, in_hw: costs.HW) -> costs.Cost:
        """Exact cost of the convolutions (not the transformer) on an ``in_hw`` input."""
        out_hw, b = costs.strided(in_hw, self.stride), self.branch_channels
        total = costs.Cost()
        c2 = b
        if self.stride > 1:
            c, c2 = self.in_channels, self.in_channels
            total += (
                costs.conv_cost(c, c, 3, out_hw, groups=c)
                + costs.batchnorm_cost(c, out_hw)
                + costs.conv_cost(c, b, 1, out_hw)
                + costs.batchnorm_cost(b, out_hw, act=True)
            )
        return (
            total
            + costs.conv_cost(c2, b, 1, in_hw)
            + costs.batchnorm_cost(b, in_hw, act=True)
            + costs.conv_cost(b, b, 3, out_hw, groups=b)
            + costs.batchnorm_cost(b, out_hw)
            + costs.conv_cost(b, b, 1, out_hw)
            + costs.batchnorm_cost(b, out_hw, act=True)
        )


class ShuffleNetV2(nn.Module):
    """Images (B, C, H, W) -> logits (B, classes), or (B, classes, H, W) for segmentation.

    Example:
        >>> net = ShuffleNetV2(ShuffleNetV2Config(num_outputs=10, tokens=8)).eval()
        >>> net(torch.randn(1, 3, 33, 47)).shape
        torch.Size([1, 10])
    """

    def __init__(self, config: ShuffleNetV2Config = ShuffleNetV2Config()) -> None:
        super().__init__()
        self.config = c = config
        channels = c.stage_channels
        self.conv1 = nn.Sequential(
            nn.Conv2d(c.in_channels, channels[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        c_in = channels[0]
        for name, repeats, c_out in zip(
            ("stage2", "stage3", "stage4"), c.stage_repeats, channels[1:4], strict=True
        ):
            blocks = [ShuffleBlock(c_in, c_out, 2, c.block_transformer(c_in, c_out, 2))]
            blocks += [
                ShuffleBlock(c_out, c_out, 1, c.block_transformer(c_out, c_out, 1))
                for _ in range(repeats - 1)
            ]
            setattr(self, name, nn.Sequential(*blocks))
            c_in = c_out
        if c.task == "classification":
            self.conv5 = nn.Sequential(*_pointwise(c_in, channels[4]))
            self.fc = nn.Linear(channels[4], c.num_outputs)
        else:
            self.head = PSPHead(c_in, c.num_outputs, c.bins)
        init_like_torchvision(self)

    def blocks(self) -> list[ShuffleBlock]:
        """The shuffle blocks, in order."""
        return [*self.stage2, *self.stage3, *self.stage4]

    def feature_size(self, height: int, width: int) -> costs.HW:
        """Size of the last stage's output for a ``height`` x ``width`` input (conv1 and the max pool halve it first)."""
        hw = costs.strided(costs.strided((height, width), 2), 2)
        for block in self.blocks():
            hw = costs.strided(hw, block.stride)
        return hw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.config.in_channels, "ShuffleNetV2")
        if self.training and x.shape[0] == 1:
            check_trainable(
                "ShuffleNetV2",
                1,
                self.feature_size(*x.shape[-2:]),
                self.config.bins if self.config.task == "segmentation" else (),
            )
        y = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        if self.config.task == "classification":
            return self.fc(self.conv5(y).mean((2, 3)))
        return self.head(y, x.shape[-2:])

    def cost_breakdown(self, input_size: tuple[int, int, int] | None = None) -> dict[str, costs.Cost]:
        """Exact per-image cost: ``stem`` (conv1; the max pool is not counted), ``block{i}``,
        ``block{i}.transformer`` (if any), ``head``."""
        c = self.config
        _, height, width = check_image_size(input_size or c.input_size, c.in_channels)
        hw = costs.strided((height, width), 2)
        c0 = c.stage_channels[0]
        groups = {"stem": costs.conv_cost(c.in_channels, c0, 3, hw) + costs.batchnorm_cost(c0, hw, act=True)}
        hw = costs.strided(hw, 2)  # max pool 3x3, stride 2, padding 1: ceil(h / 2) like the convs
        hw = blocks_cost(groups, self.blocks(), hw)
        c_last, c5 = c.stage_channels[3], c.stage_channels[4]
        groups["head"] = head_cost(c, getattr(self, "head", None), c_last, c5, hw, (height, width))
        return groups

    def cost(self, input_size: tuple[int, int, int] | None = None) -> costs.Cost:
        """The exact total cost: the sum of :meth:`cost_breakdown`."""
        return sum(self.cost_breakdown(input_size).values(), costs.Cost())


#: 1.0x on ImageNet (1000 classes, 224x224) and with a PSP head on Cityscapes (19 classes, 512x1024),
#: plain and with a transformer of the project's default size in every block
SHUFFLENETV2_PRESETS: dict[str, ShuffleNetV2Config] = family_presets("shufflenetv2", ShuffleNetV2Config)
