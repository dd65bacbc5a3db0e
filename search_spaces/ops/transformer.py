"""The lightweight transformer of HR-NAS (paper Sec. 3.1, Fig. 2).

A feature map (B, C, H, W) is projected to n tokens of dimension s*s, encoded with one
self-attention layer, decoded by n learnable queries with cross-attention only, and projected
back. Its cost is about linear in n^2 d, independent of H and W except for the resizes.

The tokens' importance factors (paper Sec. 4.1: "the scales from the batch normalization layer
in the projector") live in a BN over the decoded tokens, just before the inverse projection,
not in the projector's BN: the projector's BN is followed by the encoder's residual LayerNorm,
which normalises each token over its s*s values, so that BN's per-token scale hardly changes
the output; the task loss then cannot defend a token against the L1 penalty (measured on
digits_seg: the task gradient on those scales is 20x smaller than on the depthwise channels'
and every token was pruned). A scale on the decoded token is a real gate: it sets the token's
share of the output, the way the depthwise BN's scale sets a channel's.

Two choices differ from a literal reading of the paper (the official code makes them too), both
without changing the function at inference: the projector resizes to s x s *before* its 1x1
conv + BN (both are per-pixel affine maps and bilinear weights sum to one, so the order
commutes), and the inverse projector runs its 1x1 conv + BN at s x s before upsampling. The
paper's order costs (C+2) n H W MACs at full resolution; this one costs (C+2) n s^2. In training
the two BNs take their batch statistics over the s x s maps, not over H x W.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .layers import TORCH_LAYERS, LayerFactory, Width, is_removed

PositionalEncoding = Literal["map", "sinusoidal", "learned", "none"]
POSITIONAL_ENCODINGS: tuple[str, ...] = ("map", "sinusoidal", "learned", "none")


def positional_channels(kind: str, pos_dim: int) -> int:
    """Number of channels the positional encoding concatenates to the projector input."""
    if kind not in POSITIONAL_ENCODINGS:
        raise ValueError(f"pos_encoding must be one of {POSITIONAL_ENCODINGS}, got {kind!r}")
    return {"map": 2, "sinusoidal": pos_dim, "learned": pos_dim, "none": 0}[kind]


def coordinate_map(
    height: int, width: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The paper's 2-channel positional map (Eq. 2): P[0, i, j] = i / h, P[1, i, j] = j / w."""
    rows = torch.arange(height, device=device, dtype=dtype) / height
    cols = torch.arange(width, device=device, dtype=dtype) / width
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"))


def sinusoidal_map(
    height: int,
    width: int,
    channels: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """DETR-style 2D sine/cosine encoding with ``channels`` channels (half for rows, half for columns)."""
    if channels % 4:
        raise ValueError(f"sinusoidal positional encoding needs pos_dim divisible by 4, got {channels}")
    coords = coordinate_map(height, width, device=device, dtype=dtype) * (2 * math.pi)
    quarter = channels // 4
    freqs = 10000 ** (-torch.arange(quarter, device=device, dtype=dtype) / quarter)
    parts = []
    for axis in range(2):
        angles = coords[axis][None] * freqs[:, None, None]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts)


@dataclass(frozen=True)
class TransformerSettings:
    """Everything about a :class:`LightweightTransformer` except its channels, tokens and stride."""

    size: int = 8
    dim: int | None = None
    heads: int = 1
    ffn_ratio: int = 4
    pos_encoding: PositionalEncoding = "map"
    pos_in_decoder: bool = False
    pos_dim: int = 64

    def kwargs(self) -> dict:
        """Keyword arguments for :class:`LightweightTransformer`."""
        return asdict(self)


class Attention(nn.Module):
    """Multi-head attention with inner dimension ``dim`` over tokens of size ``token_dim`` (Eq. 3)."""

    def __init__(self, token_dim: int, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.q = nn.Linear(token_dim, dim)
        self.k = nn.Linear(token_dim, dim)
        self.v = nn.Linear(token_dim, dim)
        self.out = nn.Linear(dim, token_dim)

    def _split(self, t: torch.Tensor) -> torch.Tensor:
        return t.unflatten(-1, (self.heads, -1)).transpose(-3, -2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(query)), self._split(self.k(key)), self._split(self.v(value))
        # batch-independent queries (the decoder's S) broadcast to the batch; unconditional (a no-op for
        # batched queries) so that an exported graph has no branch on the batch size
        q = q.expand(k.shape[0], *q.shape[1:])
        attended = F.scaled_dot_product_attention(q, k, v)
        return self.out(attended.transpose(-3, -2).flatten(-2))


class FeedForward(nn.Sequential):
    """Position-wise FFN (Eq. 4): Linear(s^2, r s^2), ReLU, Linear(r s^2, s^2)."""

    def __init__(self, token_dim: int, ratio: int) -> None:
        super().__init__(
            nn.Linear(token_dim, ratio * token_dim),
            nn.ReLU(inplace=True),
            nn.Linear(ratio * token_dim, token_dim),
        )


class LightweightTransformer(nn.Module):
    """Projector, encoder, query decoder and inverse projector; plug-and-play in any CNN block.

    Args:
        in_channels: channels C of the input feature map.
        out_channels: channels of the output feature map.
        num_tokens: number of tokens n (the searched quantity). 0 gives a module that adds nothing.
        size: the projected spatial size s; tokens have dimension s*s.
        dim: inner attention dimension d (default s*s).
        heads: attention heads h.
        ffn_ratio: FFN hidden size as a multiple of s*s.
        stride: 2 makes the output half the input size (reduction blocks).
        pos_encoding: ``map`` (the paper's 2-channel map), ``sinusoidal``, ``learned`` or ``none``.
        pos_in_decoder: also add the positional encoding to the decoder's keys (Table 7, Enc + Dec).
        pos_dim: channels of the sinusoidal / learned encodings.
        layers: constructors for the token-sized layers (see :class:`~search_spaces.ops.LayerFactory`).

    Example:
        >>> block = LightweightTransformer(32, 32, num_tokens=16)
        >>> x = torch.randn(2, 32, 40, 40)
        >>> (x + block(x)).shape
        torch.Size([2, 32, 40, 40])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_tokens: Width,
        size: int = 8,
        dim: int | None = None,
        heads: int = 1,
        ffn_ratio: int = 4,
        stride: int = 1,
        pos_encoding: PositionalEncoding = "map",
        pos_in_decoder: bool = False,
        pos_dim: int = 64,
        layers: LayerFactory = TORCH_LAYERS,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if pos_in_decoder and pos_encoding == "none":
            raise ValueError("pos_in_decoder needs a positional encoding; got pos_encoding='none'")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.size, self.stride = size, stride
        self.token_dim = size * size
        self.dim = dim or self.token_dim
        self.pos_encoding = pos_encoding
        self.pos_channels = positional_channels(pos_encoding, pos_dim)
        self.pos_in_decoder = pos_in_decoder
        self.num_tokens = num_tokens
        if is_removed(num_tokens):
            return
        if pos_encoding == "learned":
            self.pos_embedding = nn.Parameter(torch.zeros(self.pos_channels, size, size))
            nn.init.trunc_normal_(self.pos_embedding, std=0.02)
        self.proj = layers.conv2d(in_channels + self.pos_channels, num_tokens, 1, bias=False)
        self.proj_bn = layers.batchnorm2d(num_tokens)
        self.encoder_attn = Attention(self.token_dim, self.dim, heads)
        self.encoder_norm1 = nn.LayerNorm(self.token_dim)
        self.encoder_ffn = FeedForward(self.token_dim, ffn_ratio)
        self.encoder_norm2 = nn.LayerNorm(self.token_dim)
        self.queries = layers.queries(num_tokens, self.token_dim)
        self.register_buffer("eye", torch.eye(self.token_dim), persistent=False)
        if pos_in_decoder:
            self.pos_decoder = layers.conv2d(self.pos_channels, num_tokens, 1, bias=False)
        self.decoder_attn = Attention(self.token_dim, self.dim, heads)
        self.decoder_norm1 = nn.LayerNorm(self.token_dim)
        self.decoder_ffn = FeedForward(self.token_dim, ffn_ratio)
        self.decoder_norm2 = nn.LayerNorm(self.token_dim)
        self.token_bn = layers.batchnorm2d(num_tokens)  # its gammas are the tokens' importance
        self.inverse = layers.conv2d(num_tokens, out_channels, 1, bias=False)
        self.inverse_bn = nn.BatchNorm2d(out_channels)

    @property
    def active(self) -> bool:
        """False when the transformer has no token left and contributes nothing."""
        return not is_removed(self.num_tokens)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size of the output for an input of ``height`` x ``width``."""
        if self.stride == 2:
            return (height + 1) // 2, (width + 1) // 2
        return height, width

    def _positional(self, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
        """The positional encoding at s x s, resized from the input resolution (1, d_p, s, s).

        Fixed encodings depend only on the input size, so they are computed once per size (not
        per training step) and kept outside the state dict.
        """
        if self.pos_encoding == "learned":
            return self.pos_embedding[None].to(like.dtype)
        key = (height, width, like.device, like.dtype)
        cached = self.__dict__.setdefault("_pos_cache", {}).get(key)
        if cached is None:
            make = (
                coordinate_map
                if self.pos_encoding == "map"
                else (lambda h, w, **kw: sinusoidal_map(h, w, self.pos_channels, **kw))
            )
            pos = make(height, width, device=like.device, dtype=like.dtype)[None]
            cached = F.interpolate(pos, size=(self.size, self.size), mode="bilinear", align_corners=False)
            if like.device.type != "meta" and not torch.is_inference_mode_enabled():  # inference tensors
                self._pos_cache[key] = cached  # could not be saved for a later backward
        return cached

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        out_size = self.output_size(height, width)
        if not self.active:
            return x.new_zeros(batch, self.out_channels, *out_size)
        s = self.size
        small = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False)
        pos = None
        if self.pos_channels:
            pos = self._positional(height, width, x)
            small = torch.cat([small, pos.expand(batch, -1, -1, -1)], dim=1)
        tokens = self.proj(small)
        if tokens.shape[1] == 0:  # 0 tokens drawn inside a one-shot supernet: nothing to add
            return x.new_zeros(batch, self.out_channels, *out_size)
        tokens = self.proj_bn(tokens).flatten(2)  # (B, n, s*s)

        tokens = self.encoder_norm1(tokens + self.encoder_attn(tokens, tokens, tokens))
        memory = self.encoder_norm2(tokens + self.encoder_ffn(tokens))

        keys = memory
        if self.pos_in_decoder:
            keys = memory + self.pos_decoder(pos).flatten(2)
        queries = self.queries(self.eye).t()[None]  # (1, n, s*s)
        decoded = self.decoder_norm1(queries + self.decoder_attn(queries, keys, memory))
        decoded = self.decoder_norm2(decoded + self.decoder_ffn(decoded))

        out = self.inverse_bn(self.inverse(self.token_bn(decoded.unflatten(-1, (s, s)))))
        return F.interpolate(out, size=out_size, mode="bilinear", align_corners=False)
