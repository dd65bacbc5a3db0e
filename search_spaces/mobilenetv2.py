"""MobileNetV2 (Sandler et al., CVPR 2018), with or without the HR-NAS transformer in every block (Table 8).

The layout is torchvision's ``mobilenet_v2`` (same layers, widths, ReLU6, dropout 0.2 and module
names, so its state-dict keys match): a 3x3 stride-2 stem, 17 inverted-residual blocks (1x1 expand
+ BN + ReLU6 unless t = 1, 3x3 depthwise + BN + ReLU6, 1x1 project + BN, identity shortcut when the
shape is kept), a 1x1 conv to 1280 + BN + ReLU6, global average pool, dropout and a linear layer.
Width 1.0 with 1000 classes has 3,504,872 parameters, torchvision's count.

``tokens > 0`` adds a :class:`~search_spaces.ops.LightweightTransformer` beside each of the 17 blocks:
it reads the block's input and its output is added to the block's output (see :mod:`.plugin`).
Segmentation drops the 1x1 conv to 1280 and the classifier and puts a :class:`~.plugin.PSPHead`
on the last block's output (320 channels at 1/32).
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

#: (expansion t, channels c, blocks n, first stride s) of the seven stages (MobileNetV2 paper, Table 2)
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's width rounding: the nearest multiple of ``divisor``, never below 90% of ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


@dataclass(frozen=True)
class MobileNetV2Config(PluginConfig):
    """MobileNetV2's layout on top of the shared plug-in fields (:class:`~.plugin.PluginConfig`).

    Attributes:
        width_mult: width multiplier (1.0 is the published network); widths round to multiples of 8.
        dropout: before the classifier.
        stem_channels, last_channels: widths of the stem and of the final 1x1 conv, before ``width_mult``.
        setting: the (t, c, n, s) rows of the inverted-residual stages.
    """

    width_mult: float = 1.0
    dropout: float = 0.2
    stem_channels: int = 32
    last_channels: int = 1280
    setting: tuple[tuple[int, int, int, int], ...] = INVERTED_RESIDUAL_SETTING

    def __post_init__(self) -> None:
        object.__setattr__(self, "setting", tuple(tuple(row) for row in self.setting))
        super().__post_init__()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        super().validate()
        if (
            isinstance(self.width_mult, bool)
            or not isinstance(self.width_mult, (int, float))
            or self.width_mult <= 0
        ):
            raise ConfigError("width_mult", self.width_mult, "expected a positive number, e.g. 1.0")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", self.dropout, "expected 0 <= dropout < 1")
        if (
            not self.setting
            or any(len(row) != 4 or any(not isinstance(v, int) or v < 1 for v in row) for row in self.setting)
            or any(row[3] not in (1, 2) for row in self.setting)
        ):
            raise ConfigError(
                "setting", self.setting, "expected rows of four positive integers (t, c, n, s), s 1 or 2"
            )

    def build(self) -> MobileNetV2:
        """The network of this config."""
        return MobileNetV2(self)


def _conv_bn_act(c_in: int, c_out: int, kernel_size: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2's block, plus an optional transformer whose output is added to the block's output."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        expansion: int,
        transformer: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.hidden = hidden = round(in_channels * expansion)
        self.expands = expansion != 1  # t = 1: no 1x1 expansion
        layers = [_conv_bn_act(in_channels, hidden, 1)] if self.expands else []
        layers += [
            _conv_bn_act(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_channels == out_channels
        self.transformer = transformer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.use_res_connect:
            out = out + x
        if self.transformer is not None:
            out = out + self.transformer(x)
        return out

    def conv_cost(self, in_hw: costs.HW) -> costs.Cost:
        """Exact cost of the convolutions (not the transformer) on an ``in_hw`` input."""
        out_hw = costs.strided(in_hw, self.stride)
        total = costs.Cost()
        if self.expands:
            total += costs.conv_cost(self.in_channels, self.hidden, 1, in_hw) + costs.batchnorm_cost(
                self.hidden, in_hw, True
            )
        return (
            total
            + costs.conv_cost(self.hidden, self.hidden, 3, out_hw, groups=self.hidden)
            + costs.batchnorm_cost(self.hidden, out_hw, act=True)
            + costs.conv_cost(self.hidden, self.out_channels, 1, out_hw)
            + costs.batchnorm_cost(self.out_channels, out_hw)
        )


class MobileNetV2(nn.Module):
    """Images (B, C, H, W) -> logits (B, classes), or (B, classes, H, W) for segmentation.

    Example:
        >>> net = MobileNetV2(MobileNetV2Config(num_outputs=10, tokens=8)).eval()
        >>> net(torch.randn(1, 3, 33, 47)).shape
        torch.Size([1, 10])
    """

    def __init__(self, config: MobileNetV2Config = MobileNetV2Config()) -> None:
        super().__init__()
        self.config = c = config
        stem = make_divisible(c.stem_channels * c.width_mult)
        features: list[nn.Module] = [_conv_bn_act(c.in_channels, stem, 3, 2)]
        c_in = stem
        for t, ch, n, s in c.setting:
            c_out = make_divisible(ch * c.width_mult)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(
                    InvertedResidual(c_in, c_out, stride, t, c.block_transformer(c_in, c_out, stride))
                )
                c_in = c_out
        self.num_blocks = len(features) - 1
        if c.task == "classification":
            self.last_channels = make_divisible(c.last_channels * max(1.0, c.width_mult))
            features.append(_conv_bn_act(c_in, self.last_channels, 1))
            self.classifier = nn.Sequential(
                nn.Dropout(c.dropout), nn.Linear(self.last_channels, c.num_outputs)
            )
        else:
            self.head = PSPHead(c_in, c.num_outputs, c.bins)
        self.features = nn.Sequential(*features)
        init_like_torchvision(self)

    def blocks(self) -> list[InvertedResidual]:
        """The inverted-residual blocks, in order."""
        return list(self.features[1 : 1 + self.num_blocks])

    def feature_size(self, height: int, width: int) -> costs.HW:
        """Size of the last block's output for a ``height`` x ``width`` input (the stem halves it first)."""
        hw = costs.strided((height, width), 2)
        for block in self.blocks():
            hw = costs.strided(hw, block.stride)
        return hw

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_images(x, self.config.in_channels, "MobileNetV2")
        if self.training and x.shape[0] == 1:
            check_trainable(
                "MobileNetV2",
                1,
                self.feature_size(*x.shape[-2:]),
                self.config.bins if self.config.task == "segmentation" else (),
            )
        y = self.features(x)
        if self.config.task == "classification":
            return self.classifier(y.mean((2, 3)))
        return self.head(y, x.shape[-2:])

    def cost_breakdown(self, input_size: tuple[int, int, int] | None = None) -> dict[str, costs.Cost]:
        """Exact per-image cost: ``stem``, ``block{i}``, ``block{i}.transformer`` (if any), ``head``."""
        c = self.config
        _, height, width = check_image_size(input_size or c.input_size, c.in_channels)
        hw = costs.strided((height, width), 2)
        stem = self.features[0][0].out_channels
        groups = {
            "stem": costs.conv_cost(c.in_channels, stem, 3, hw) + costs.batchnorm_cost(stem, hw, act=True)
        }
        hw = blocks_cost(groups, self.blocks(), hw)
        c_last = self.blocks()[-1].out_channels
        groups["head"] = head_cost(
            c, getattr(self, "head", None), c_last, getattr(self, "last_channels", 0), hw, (height, width)
        )
        return groups

    def cost(self, input_size: tuple[int, int, int] | None = None) -> costs.Cost:
        """The exact total cost: the sum of :meth:`cost_breakdown`."""
        return sum(self.cost_breakdown(input_size).values(), costs.Cost())


#: width 1.0 on ImageNet (1000 classes, 224x224) and with a PSP head on Cityscapes (19 classes, 512x1024),
#: plain and with a transformer of the project's default size in every block
MOBILENETV2_PRESETS: dict[str, MobileNetV2Config] = family_presets("mobilenetv2", MobileNetV2Config)
