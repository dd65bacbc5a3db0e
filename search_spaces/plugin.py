"""What the Table 8 plug-in networks share: config fields, the transformer beside a block, the PSP head.

HR-NAS (Ding et al., CVPR 2021, arXiv 2106.06560, Table 8) shows that its lightweight transformer is
plug-and-play by adding it to the inverted-residual blocks of MobileNetV2 and ShuffleNetV2, for
ImageNet classification and for Cityscapes segmentation with a PSP head. Each block gets one
transformer that reads the block's input and whose output is added to the block's output, as in the
HR-NAS searching block; a strided block's transformer outputs half size (its ``stride=2``).

The families live in :mod:`.mobilenetv2` and :mod:`.shufflenetv2`; nothing here is searched.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import costs
from .config import ConfigError, TransformerConfig
from .ops import POSITIONAL_ENCODINGS, LightweightTransformer, TransformerSettings

TASKS = ("classification", "segmentation")
#: PSPNet's pyramid: average pools to 1x1, 2x2, 3x3 and 6x6 bins
PSP_BINS = (1, 2, 3, 6)
#: tokens per block of the "+ transformer" presets: the project's transformer default (the paper presets')
DEFAULT_TOKENS = TransformerConfig().tokens


def _positive(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(name, value, "expected a positive integer")


def check_image_size(
    size: tuple[int, ...], in_channels: int, field_name: str = "input"
) -> tuple[int, int, int]:
    """Validate an input size (C, H, W): three positive integers with C = ``in_channels``; any H, W >= 1 runs."""
    size = tuple(size)
    if len(size) != 3 or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in size):
        raise ConfigError(
            field_name,
            size,
            f"expected three positive integers (channels, height, width), e.g. {in_channels}x224x224",
        )
    if size[0] != in_channels:
        raise ConfigError(field_name, size, f"this network takes {in_channels} input channels")
    return size


def check_images(x: torch.Tensor, in_channels: int, network: str) -> None:
    """Raise a one-line ValueError unless ``x`` is a batch of images (B, in_channels, H, W)."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{network} takes images (B, {in_channels}, H, W); got a tensor of shape {tuple(x.shape)}"
        )


def check_trainable(network: str, batch: int, feature_hw: costs.HW, bins: tuple[int, ...] = ()) -> None:
    """Raise a one-line ValueError if training would hand a BatchNorm one value per channel.

    ``feature_hw`` is the last (smallest) feature map's size, ``bins`` the PSP head's pooled sizes.
    """
    if batch * min([feature_hw[0] * feature_hw[1], *(b * b for b in bins)]) == 1:
        raise ValueError(
            f"{network}: a batch of 1 cannot train at this input size (a BatchNorm would see one "
            "value per channel); use a batch of 2 or more, or call .eval()"
        )


@dataclass(frozen=True)
class PluginConfig:
    """The fields both plug-in families share.

    Attributes:
        task: ``classification`` (the family's own head: global average pool and a linear layer) or
            ``segmentation`` (a :class:`PSPHead` on the last block's output, upsampled to the input).
        num_outputs: classes.
        input_size: (C, H, W) the network is measured at; every H, W >= 1 runs.
        tokens: transformer tokens n in every block; 0 is the plain network.
        transformer: the transformers' settings (s, heads, positional encoding, ...).
        bins: the PSP head's pyramid (segmentation only).
    """

    task: str = "classification"
    num_outputs: int = 1000
    input_size: tuple[int, int, int] = (3, 224, 224)
    tokens: int = 0
    transformer: TransformerSettings = TransformerSettings()
    bins: tuple[int, ...] = PSP_BINS

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(self.input_size))
        object.__setattr__(self, "bins", tuple(self.bins))
        if isinstance(self.transformer, dict):
            object.__setattr__(self, "transformer", TransformerSettings(**self.transformer))
        self.validate()

    @property
    def in_channels(self) -> int:
        """The input's channels."""
        return self.input_size[0]

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        if self.task not in TASKS:
            raise ConfigError("task", self.task, f"allowed: {', '.join(TASKS)}")
        _positive("num_outputs", self.num_outputs)
        if not isinstance(self.tokens, int) or isinstance(self.tokens, bool) or self.tokens < 0:
            raise ConfigError("tokens", self.tokens, "expected an integer >= 0 (0: no transformer)")
        if len(self.input_size) != 3 or not isinstance(self.input_size[0], int):
            raise ConfigError("input_size", self.input_size, "expected (channels, height, width)")
        check_image_size(self.input_size, self.input_size[0], "input_size")
        if not self.bins:
            raise ConfigError("bins", self.bins, "expected at least one bin size, e.g. (1, 2, 3, 6)")
        for i, b in enumerate(self.bins):
            _positive(f"bins[{i}]", b)
        t = self.transformer
        if not isinstance(t, TransformerSettings):
            raise ConfigError("transformer", t, "expected TransformerSettings or a dict of its fields")
        if t.pos_encoding not in POSITIONAL_ENCODINGS:
            raise ConfigError(
                "transformer.pos_encoding", t.pos_encoding, f"allowed: {', '.join(POSITIONAL_ENCODINGS)}"
            )
        for name in ("size", "heads", "ffn_ratio"):
            _positive(f"transformer.{name}", getattr(t, name))
        dim = t.dim if t.dim is not None else t.size * t.size
        if dim % t.heads:
            raise ConfigError("transformer.dim", dim, f"must be divisible by transformer.heads={t.heads}")

    def replace(self, **overrides: Any) -> PluginConfig:
        """A validated copy with ``overrides`` of any field."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                unknown[0], overrides[unknown[0]], f"unknown field; known fields: {', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **overrides)

    def block_transformer(
        self, in_channels: int, out_channels: int, stride: int
    ) -> LightweightTransformer | None:
        """The transformer beside a block of these shapes, or None for the plain network."""
        if self.tokens == 0:
            return None
        return LightweightTransformer(
            in_channels, out_channels, self.tokens, stride=stride, **self.transformer.kwargs()
        )

    def build(self) -> nn.Module:
        """The network of this config (each family's config overrides this)."""
        raise NotImplementedError


def block_transformer_cost(transformer: LightweightTransformer | None, in_hw: costs.HW) -> costs.Cost:
    """Exact cost of a block's transformer (nothing for None) on a ``in_hw`` input."""
    return costs.Cost() if transformer is None else costs.transformer_module_cost(transformer, in_hw)


def blocks_cost(groups: dict[str, costs.Cost], blocks: list, hw: costs.HW) -> costs.HW:
    """Add ``block{i}`` (and ``block{i}.transformer``) costs of ``blocks`` from ``hw`` on; the size after them."""
    for i, block in enumerate(blocks):
        groups[f"block{i}"] = block.conv_cost(hw)
        if block.transformer is not None:
            groups[f"block{i}.transformer"] = block_transformer_cost(block.transformer, hw)
        hw = costs.strided(hw, block.stride)
    return hw


def head_cost(
    config: PluginConfig, head: PSPHead | None, c_in: int, c_last: int, hw: costs.HW, out_hw: costs.HW
) -> costs.Cost:
    """The classification head (1x1 conv ``c_in`` -> ``c_last`` + BN + ReLU, pool, linear) or the PSP head."""
    if config.task == "classification":
        return (
            costs.conv_cost(c_in, c_last, 1, hw)
            + costs.batchnorm_cost(c_last, hw, act=True)
            + costs.linear_cost(c_last, config.num_outputs)
        )
    return head.cost(hw, out_hw)


def family_presets(family: str, config_class: type[PluginConfig]) -> dict[str, PluginConfig]:
    """``family`` on ImageNet (1000 classes, 224x224) and ``family_psp`` on Cityscapes (19 classes,
    512x1024), each also ``..._transformer`` with a transformer of the project's default size in every block."""
    presets = {}
    for suffix, tokens in (("", 0), ("_transformer", DEFAULT_TOKENS)):
        presets[f"{family}{suffix}"] = config_class(tokens=tokens)
        presets[f"{family}_psp{suffix}"] = config_class(
            task="segmentation", num_outputs=19, input_size=(3, 512, 1024), tokens=tokens
        )
    return presets


def init_like_torchvision(module: nn.Module) -> None:
    """torchvision's initialisation of the convolutional layers; transformers keep their own."""
    if isinstance(module, LightweightTransformer):
        return
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, 0, 0.01)
        nn.init.zeros_(module.bias)
    for child in module.children():
        init_like_torchvision(child)


class PSPHead(nn.Module):
    """Pyramid pooling (PSPNet, Zhao et al., CVPR 2017) on a feature map, a 1x1 classifier, upsampling.

    Each bin b: average pool to b x b, 1x1 conv to ``in_channels // len(bins)`` channels + BN + ReLU,
    bilinear back to the map's size. The map and the pooled branches are concatenated and a 1x1
    conv (with bias) classifies each pixel; the logits are upsampled bilinearly to ``out_size``.
    """

    def __init__(self, in_channels: int, num_outputs: int, bins: tuple[int, ...] = PSP_BINS) -> None:
        super().__init__()
        if in_channels < len(bins):
            raise ValueError(
                f"PSP head: {in_channels} input channels cannot feed {len(bins)} pooled branches"
            )
        self.in_channels, self.num_outputs, self.bins = in_channels, num_outputs, tuple(bins)
        self.branch_channels = branch = in_channels // len(bins)
        self.pools = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, branch, 1, bias=False),
                nn.BatchNorm2d(branch),
                nn.ReLU(inplace=True),
            )
            for b in self.bins
        )
        self.classifier = nn.Conv2d(in_channels + len(self.bins) * branch, num_outputs, 1)

    def forward(self, x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(pool(x), size=size, mode="bilinear", align_corners=False) for pool in self.pools
        ]
        logits = self.classifier(torch.cat([x, *pooled], dim=1))
        return F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False)

    def cost(self, in_hw: costs.HW, out_hw: costs.HW) -> costs.Cost:
        """Exact cost on an ``in_hw`` feature map with logits upsampled to ``out_hw`` (pooling itself is not counted)."""
        total = costs.Cost()
        for b in self.bins:
            total += (
                costs.conv_cost(self.in_channels, self.branch_channels, 1, (b, b))
                + costs.batchnorm_cost(self.branch_channels, (b, b), act=True)
                + costs.interpolate_cost(self.branch_channels, in_hw)
            )
        concat = self.in_channels + len(self.bins) * self.branch_channels
        return (
            total
            + costs.conv_cost(concat, self.num_outputs, 1, in_hw, bias=True)
            + costs.interpolate_cost(self.num_outputs, out_hw)
        )
