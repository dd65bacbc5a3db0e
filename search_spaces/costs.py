"""Exact analytic cost model: MACs and parameters of HR-NAS ops, networks and search units.

*MACs* are multiply-accumulates of convolutions, linear layers, matrix products and attention;
the paper (and most NAS papers) call this number "FLOPs". Element-wise work is reported apart,
in two counters, because counters disagree on it and the paper leaves it out:

* ``interp``: output elements of bilinear resizes (transformer projections, fusion upsampling,
  the head's upsampling to 1/4);
* ``norm_act``: elements passing through BatchNorm, LayerNorm, ReLU and softmax.

Nothing here runs a model: costs come from channel counts, token counts and spatial sizes, so
they are exact for any architecture at any input size, and per-unit costs (paper Eq. 6) can be
recomputed cheaply while a network shrinks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import nn

from . import labels
from .ops import KernelPath, LightweightTransformer, SearchingBlock

HW = tuple[int, int]


@dataclass
class Cost:
    """MACs, parameters and element-wise work of a part of a network (per image)."""

    macs: int = 0
    params: int = 0
    interp: int = 0
    norm_act: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.macs + other.macs,
            self.params + other.params,
            self.interp + other.interp,
            self.norm_act + other.norm_act,
        )

    def as_dict(self) -> dict[str, int]:
        """The counters by name (macs, params, interp, norm_act)."""
        return asdict(self)


def _area(hw: HW) -> int:
    return hw[0] * hw[1]


def strided(hw: HW, stride: int) -> HW:
    """Output size of a conv with padding k//2 (odd k) and ``stride``."""
    return ((hw[0] + stride - 1) // stride, (hw[1] + stride - 1) // stride)


def conv_cost(
    in_channels: int, out_channels: int, kernel_size: int, out_hw: HW, groups: int = 1, bias: bool = False
) -> Cost:
    """A 2D convolution with a square kernel producing ``out_hw``."""
    weights = out_channels * (in_channels // groups) * kernel_size * kernel_size
    return Cost(macs=weights * _area(out_hw), params=weights + (out_channels if bias else 0))


def upsampling_conv_cost(in_channels: int, out_channels: int, stride: int, in_hw: HW) -> Cost:
    """A transposed 2D convolution with kernel = stride (no bias) from ``in_hw``: each input pixel meets
    the kernel once, so ``stride**2`` output pixels per input pixel and no overlap."""
    weights = in_channels * out_channels * stride * stride
    return Cost(macs=weights * _area(in_hw), params=weights)


def batchnorm_cost(channels: int, hw: HW, act: bool = False) -> Cost:
    """A BatchNorm2d (optionally followed by an activation): 2 parameters per channel."""
    return Cost(params=2 * channels, norm_act=channels * _area(hw) * (2 if act else 1))


def activation_cost(channels: int, hw: HW) -> Cost:
    """An element-wise activation (ReLU) over ``channels`` x ``hw``."""
    return Cost(norm_act=channels * _area(hw))


def conv_module_cost(conv: nn.Conv2d, out_hw: HW) -> Cost:
    """Cost of a built ``nn.Conv2d`` (square kernel) producing ``out_hw``."""
    return conv_cost(
        conv.in_channels, conv.out_channels, conv.kernel_size[0], out_hw, conv.groups, conv.bias is not None
    )


def kernel_path_cost(
    in_channels: int, out_channels: int, width: int, kernel_size: int, in_hw: HW, stride: int = 1
) -> Cost:
    """One MixConv kernel path: 1x1 expand + BN + act, kxk depthwise + BN + act, 1x1 project."""
    if width == 0:
        return Cost()
    out_hw = strided(in_hw, stride)
    return (
        conv_cost(in_channels, width, 1, in_hw)
        + batchnorm_cost(width, in_hw, act=True)
        + conv_cost(width, width, kernel_size, out_hw, groups=width)
        + batchnorm_cost(width, out_hw, act=True)
        + conv_cost(width, out_channels, 1, out_hw)
    )


#: what a depthwise channel's unit cost counts in the penalty (Eq. 6, Eq. 7): ``exact``, the MACs
#: removing it saves (its depthwise conv and its share of the expand and project convs, as the
#: official code's per-channel cost), or ``paper``, Eq. 6 as printed (the depthwise conv alone)
UNIT_COSTS: tuple[str, ...] = ("exact", "paper")


def kernel_unit_macs(
    in_channels: int, out_channels: int, kernel_size: int, in_hw: HW, stride: int = 1
) -> int:
    """MACs one depthwise channel costs, with its share of the expand and project convs: exactly
    what removing it saves (``unit_cost='exact'``)."""
    out_hw = strided(in_hw, stride)
    return in_channels * _area(in_hw) + (kernel_size * kernel_size + out_channels) * _area(out_hw)


def kernel_unit_norm_act(in_hw: HW, stride: int = 1) -> int:
    """BN and activation elements one depthwise channel carries: its expand BN + act at the input size
    and its depthwise BN + act at the output size, exactly what removing it saves of ``norm_act``."""
    return 2 * _area(in_hw) + 2 * _area(strided(in_hw, stride))


def depthwise_unit_macs(kernel_size: int, in_hw: HW, stride: int = 1) -> int:
    """MACs of one channel of the k x k depthwise conv alone, k * k * h * w at its output size:
    Eq. 6 as printed (``unit_cost='paper'``)."""
    return kernel_size * kernel_size * _area(strided(in_hw, stride))


def transformer_cost(
    in_channels: int,
    out_channels: int,
    num_tokens: int,
    size: int = 8,
    dim: int | None = None,
    heads: int = 1,
    ffn_ratio: int = 4,
    pos_channels: int = 2,
    pos_in_decoder: bool = False,
    learned_pos: bool = False,
    out_hw: HW = (1, 1),
) -> Cost:
    """The lightweight transformer with ``num_tokens`` tokens (0 costs nothing).

    MACs do not depend on the input size (the projector resizes to s x s first); ``out_hw`` only
    sizes the final upsampling, counted in ``interp``.
    """
    n = num_tokens
    if n == 0:
        return Cost()
    s2 = size * size
    d = dim or s2
    hidden = ffn_ratio * s2
    # projector (1x1 conv + BN at s x s), token BN, inverse projector (1x1 conv + BN at s x s)
    macs = (in_channels + pos_channels) * n * s2 + n * out_channels * s2
    params = (in_channels + pos_channels) * n + 2 * n + 2 * n + n * out_channels + 2 * out_channels
    # encoder and decoder: q, k, v, out projections; scores and weighted sum; FFN
    per_layer_macs = 4 * n * s2 * d + 2 * n * n * d + 2 * n * s2 * hidden
    per_layer_params = 4 * s2 * d + 3 * d + s2 + 2 * s2 * hidden + hidden + s2 + 4 * s2
    macs += 2 * per_layer_macs
    params += 2 * per_layer_params + n * s2  # + the decoder queries
    if pos_in_decoder:
        macs += pos_channels * n * s2
        params += pos_channels * n
    if learned_pos:
        params += pos_channels * s2
    interp = (in_channels + (0 if learned_pos else pos_channels)) * s2 + out_channels * _area(out_hw)
    norm_act = 2 * n * s2 + 4 * n * s2 + 2 * n * hidden + 2 * heads * n * n + out_channels * s2
    return Cost(macs=macs, params=params, interp=interp, norm_act=norm_act)


def transformer_module_cost(module: LightweightTransformer, in_hw: HW, num_tokens: int | None = None) -> Cost:
    """Cost of a built transformer, optionally as if it had ``num_tokens`` tokens."""
    n = module.num_tokens if num_tokens is None else num_tokens
    return transformer_cost(
        module.in_channels,
        module.out_channels,
        int(n),
        module.size,
        module.dim,
        _heads(module),
        _ffn_ratio(module),
        module.pos_channels,
        module.pos_in_decoder,
        module.pos_encoding == "learned",
        module.output_size(*in_hw),
    )


def _heads(module: LightweightTransformer) -> int:
    return module.encoder_attn.heads if module.active else 1


def _ffn_ratio(module: LightweightTransformer) -> int:
    return module.encoder_ffn[0].out_features // module.token_dim if module.active else 4


def transformer_unit_macs(module: LightweightTransformer, in_hw: HW) -> int:
    """O_T(n') - O_T(n'-1): what removing one token saves, given the n' tokens still there (Eq. 6)."""
    return _token_saving(module, in_hw).macs


def transformer_unit_norm_act(module: LightweightTransformer, in_hw: HW) -> int:
    """The ``norm_act`` elements removing one of the n' tokens still there saves."""
    return _token_saving(module, in_hw).norm_act


def _token_saving(module: LightweightTransformer, in_hw: HW) -> Cost:
    """Cost(n') - Cost(n' - 1), counter by counter (nothing at n' = 0)."""
    n = int(module.num_tokens)
    if n == 0:
        return Cost()
    now = transformer_module_cost(module, in_hw, n).as_dict()
    fewer = transformer_module_cost(module, in_hw, n - 1).as_dict()
    return Cost(**{k: now[k] - fewer[k] for k in now})


def path_width(path: KernelPath) -> int:
    """Depthwise channels of a built kernel path."""
    return path.dw.out_channels


def searching_block_cost(block: SearchingBlock, in_hw: HW) -> Cost:
    """Cost of a built searching block whose input is ``in_hw``."""
    out_hw = strided(in_hw, block.stride)
    cost = Cost()
    for path in block.paths.values():
        cost += kernel_path_cost(
            block.in_channels, block.out_channels, path_width(path), path.kernel_size, in_hw, block.stride
        )
    if block.mix_bn is not None:
        cost += batchnorm_cost(block.out_channels, out_hw)
    if block.transformer is not None:
        cost += transformer_module_cost(block.transformer, in_hw)
    if isinstance(block.shortcut, nn.Conv2d):
        cost += conv_module_cost(block.shortcut, out_hw)
    return cost


def block_unit_macs(block: SearchingBlock, in_hw: HW, unit_cost: str = "exact") -> dict[str, int]:
    """Per-unit MACs of every search unit kind in a block: ``{'k3': ..., 'k5': ..., 'tok': ...}``.

    ``unit_cost`` (one of :data:`UNIT_COSTS`) sets what a depthwise channel counts; a token is
    ``O_T(n') - O_T(n'-1)`` either way (Eq. 6).
    """
    if unit_cost not in UNIT_COSTS:
        raise ValueError(f"unit_cost must be one of {', '.join(UNIT_COSTS)}, got {unit_cost!r}")
    units = {
        name: kernel_unit_macs(block.in_channels, block.out_channels, path.kernel_size, in_hw, block.stride)
        if unit_cost == "exact"
        else depthwise_unit_macs(path.kernel_size, in_hw, block.stride)
        for name, path in block.paths.items()
    }
    if block.transformer is not None:
        units[labels.TOKENS] = transformer_unit_macs(block.transformer, in_hw)
    return units


def block_unit_norm_act(block: SearchingBlock, in_hw: HW) -> dict[str, int]:
    """Per-unit BN and activation elements of every search unit kind in a block, keyed as
    :func:`block_unit_macs`."""
    units = {name: kernel_unit_norm_act(in_hw, block.stride) for name in block.paths}
    if block.transformer is not None:
        units[labels.TOKENS] = transformer_unit_norm_act(block.transformer, in_hw)
    return units


def interpolate_cost(channels: int, out_hw: HW) -> Cost:
    """A bilinear resize producing ``channels`` x ``out_hw`` elements."""
    return Cost(interp=channels * _area(out_hw))


def linear_cost(in_features: int, out_features: int, bias: bool = True) -> Cost:
    """A linear layer applied once per image."""
    return Cost(
        macs=in_features * out_features, params=in_features * out_features + (out_features if bias else 0)
    )
