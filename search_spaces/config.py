"""Typed, validated configuration of the HR-NAS multi-branch space (paper Sec. 3.2)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, check_positive
from .heads import HEADS, TaskHead
from .layouts import LAYOUTS, MULTI_BRANCH
from .ops import POSITIONAL_ENCODINGS, TransformerSettings
from .ops.pillars import PillarSettings

TASK_KINDS = tuple(HEADS)
PLACEMENTS = ("identity", "all", "none")
MAX_BRANCHES = 4


@dataclass(frozen=True)
class StageConfig:
    """One parallel module: ``branches`` branches, ``blocks[b]`` searching blocks of ``channels[b]``."""

    branches: int
    blocks: tuple[int, ...]
    channels: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(self.blocks))
        object.__setattr__(self, "channels", tuple(self.channels))


@dataclass(frozen=True)
class TransformerConfig(TransformerSettings):
    """Transformer settings plus how many tokens the supernet starts with and where transformers go.

    ``placement``: ``all`` (every searching block, reduction, upsampling, channel-changing and head
    blocks included, as the paper: a reduction block's transformer outputs half size), ``identity``
    (only the blocks that keep their shape) or ``none``.
    """

    tokens: int = 64
    placement: str = "all"

    def settings(self) -> TransformerSettings:
        """The per-module settings handed to :class:`~search_spaces.ops.LightweightTransformer`."""
        return TransformerSettings(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(TransformerSettings)}
        )


def _stage(spec: Any) -> StageConfig:
    if isinstance(spec, StageConfig):
        return spec
    if isinstance(spec, dict):
        return StageConfig(**spec)
    branches, blocks, channels = spec
    return StageConfig(branches, tuple(blocks), tuple(channels))


# The official supernet: [branches, blocks per branch, channels] of the five parallel modules.
OFFICIAL_STAGES = tuple(
    _stage(s)
    for s in (
        (1, [1], [24]),
        (2, [2, 2], [18, 36]),
        (3, [2, 2, 3], [18, 36, 72]),
        (4, [2, 2, 3, 4], [18, 36, 72, 144]),
        (4, [2, 2, 3, 4], [18, 36, 72, 144]),
    )
)


@dataclass(frozen=True)
class HRNASConfig:
    """The whole space: stem, the (fusion, parallel) stages, searching-block options and the task head.

    Attributes:
        task: ``segmentation``, ``keypoints``, ``classification`` or ``detection`` (segmentation's
            dense head upsampled to 1/2, whose outputs the detection task reads as anchor predictions).
        num_outputs: classes, heatmaps or labels of the head (detection: anchors x (1 + 7 + 2)).
        input_size: (C, H, W) the paper measures this preset at; H and W divisible by 4 * 2**(branches-1).
        stem_channels: channels of the two stride-2 stem convs.
        stages: the parallel modules; a fusion module sits between consecutive ones.
        expansion: depthwise channels per kernel path, as a multiple of the block's input channels.
        kernels: the MixConv kernel sizes.
        transformer: transformer settings and placement.
        head_channels: output channels of the segmentation/keypoint head's searching block.
        cls_channels, cls_final_channels, dropout: the HRNet-style classification head.
        granularity: step of the width choices (1 = every channel count; a coarser space rounds a
            pruned width up to the next step, never down).
        token_granularity: step of the token-count choices.
        pillars: detection only: the PointPillars grid. The network then also takes packed pillars
            (B, P, 3 + 4 N) and runs the pillar feature net before the stem; ``input_size`` must be
            the grid's pseudo-image. Costs count the 2D network and head on the pseudo-image (as the
            paper's Table 5), the pillar net's parameters but not its MACs, which depend on the cloud.
        layout: ``multi_branch`` (the HR-NAS space) or ``single_branch`` (the paper's Table 6
            baseline: one branch through the same resolutions, see :mod:`search_spaces.layouts`).
    """

    task: str = "segmentation"
    num_outputs: int = 19
    input_size: tuple[int, int, int] = (3, 512, 1024)
    stem_channels: int = 24
    stages: tuple[StageConfig, ...] = OFFICIAL_STAGES
    expansion: int = 4
    kernels: tuple[int, ...] = (3, 5, 7)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    head_channels: int = 90
    cls_channels: tuple[int, ...] = (36, 72, 144, 320)
    cls_final_channels: int = 1600
    dropout: float = 0.2
    granularity: int = 1
    token_granularity: int = 1
    pillars: PillarSettings | None = None
    layout: str = MULTI_BRANCH

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(self.input_size))
        object.__setattr__(self, "stages", tuple(_stage(s) for s in self.stages))
        object.__setattr__(self, "kernels", tuple(self.kernels))
        object.__setattr__(self, "cls_channels", tuple(self.cls_channels))
        if isinstance(self.transformer, dict):
            object.__setattr__(self, "transformer", TransformerConfig(**self.transformer))
        if isinstance(self.pillars, dict):
            object.__setattr__(self, "pillars", PillarSettings(**self.pillars))
        self.validate()

    @property
    def in_channels(self) -> int:
        """The input's channels."""
        return self.input_size[0]

    @property
    def head(self) -> TaskHead:
        """The task head of :attr:`task` (see :mod:`search_spaces.heads`)."""
        return HEADS[self.task](self)

    @property
    def max_stride(self) -> int:
        """The coarsest feature stride: every input side must be a multiple of it."""
        return 4 * 2 ** (max(s.branches for s in self.stages) - 1)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        if self.task not in TASK_KINDS:
            raise ConfigError("task", self.task, f"allowed: {', '.join(TASK_KINDS)}")
        if self.layout not in LAYOUTS:
            raise ConfigError("layout", self.layout, f"allowed: {', '.join(LAYOUTS)}")
        check_positive("num_outputs", self.num_outputs)
        check_positive("stem_channels", self.stem_channels)
        check_positive("expansion", self.expansion)
        check_positive("head_channels", self.head_channels)
        check_positive("granularity", self.granularity)
        check_positive("token_granularity", self.token_granularity)
        if len(self.input_size) != 3:
            raise ConfigError("input_size", self.input_size, "expected (channels, height, width)")
        if not self.kernels or any(not isinstance(k, int) or k < 1 or k % 2 == 0 for k in self.kernels):
            raise ConfigError(
                "kernels", self.kernels, "expected a non-empty list of odd positive sizes, e.g. (3, 5, 7)"
            )
        if len(set(self.kernels)) != len(self.kernels):
            raise ConfigError("kernels", self.kernels, "kernel sizes must be distinct")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", self.dropout, "expected 0 <= dropout < 1")
        self._validate_stages()
        self._validate_transformer()
        self.head.validate()
        check_input_size(self, self.input_size, field_name="input_size")
        if self.pillars is not None:
            if not self.head.takes_pillars:
                kinds = " or ".join(f"task={kind!r}" for kind, head in HEADS.items() if head.takes_pillars)
                raise ConfigError("pillars", self.pillars, f"a pillar front end needs {kinds}")
            if self.input_size != self.pillars.input_size:
                raise ConfigError(
                    "input_size",
                    self.input_size,
                    f"the pillar grid makes a {self.pillars.input_size} pseudo-image; use that size",
                )

    def _validate_stages(self) -> None:
        if not self.stages:
            raise ConfigError("stages", self.stages, "expected at least one parallel module")
        previous = 0
        for i, stage in enumerate(self.stages):
            name = f"stages[{i}]"
            allowed = (1,) if i == 0 else (previous, previous + 1)
            if stage.branches not in allowed or stage.branches > MAX_BRANCHES:
                raise ConfigError(
                    f"{name}.branches",
                    stage.branches,
                    f"the first module has 1 branch, each next one keeps or adds one branch, "
                    f"at most {MAX_BRANCHES}; allowed here: {[b for b in allowed if b <= MAX_BRANCHES]}",
                )
            if len(stage.blocks) != stage.branches:
                raise ConfigError(
                    f"{name}.blocks", stage.blocks, f"expected {stage.branches} entries (one per branch)"
                )
            if len(stage.channels) != stage.branches:
                raise ConfigError(
                    f"{name}.channels", stage.channels, f"expected {stage.branches} entries (one per branch)"
                )
            for b, (n, c) in enumerate(zip(stage.blocks, stage.channels, strict=True)):
                check_positive(f"{name}.blocks[{b}]", n)
                check_positive(f"{name}.channels[{b}]", c)
            previous = stage.branches

    def _validate_transformer(self) -> None:
        t = self.transformer
        if not isinstance(t, TransformerConfig):
            raise ConfigError(
                "transformer", t, "expected a TransformerConfig, a dict of its fields, True or False"
            )
        if t.placement not in PLACEMENTS:
            raise ConfigError("transformer.placement", t.placement, f"allowed: {', '.join(PLACEMENTS)}")
        if t.pos_encoding not in POSITIONAL_ENCODINGS:
            raise ConfigError(
                "transformer.pos_encoding", t.pos_encoding, f"allowed: {', '.join(POSITIONAL_ENCODINGS)}"
            )
        check_positive("transformer.tokens", t.tokens)
        check_positive("transformer.size", t.size)
        check_positive("transformer.heads", t.heads)
        check_positive("transformer.ffn_ratio", t.ffn_ratio)
        dim = t.dim if t.dim is not None else t.size * t.size
        check_positive("transformer.dim", dim)
        if dim % t.heads:
            raise ConfigError("transformer.dim", dim, f"must be divisible by transformer.heads={t.heads}")
        if t.pos_encoding == "sinusoidal" and t.pos_dim % 4:
            raise ConfigError("transformer.pos_dim", t.pos_dim, "sinusoidal encoding needs a multiple of 4")
        if t.pos_in_decoder and t.pos_encoding == "none":
            raise ConfigError(
                "transformer.pos_in_decoder", True, "needs a positional encoding other than 'none'"
            )

    def replace(self, **overrides: Any) -> HRNASConfig:
        """A copy with ``overrides`` applied (validated). ``transformer`` also takes True/False."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                unknown[0], overrides[unknown[0]], f"unknown field; known fields: {', '.join(sorted(known))}"
            )
        if "transformer" in overrides:
            overrides["transformer"] = _transformer(self.transformer, overrides["transformer"])
        for name, value in overrides.items():  # kernels=3 means kernels=(3,)
            if isinstance(getattr(self, name), tuple) and isinstance(value, (int, float, str)):
                overrides[name] = (value,)
        return dataclasses.replace(self, **overrides)


def _transformer(current: TransformerConfig, value: Any) -> TransformerConfig:
    if isinstance(value, bool):  # True on a space without transformers: the default placement
        placement = current.placement if current.placement != "none" else TransformerConfig.placement
        return dataclasses.replace(current, placement=placement if value else "none")
    if isinstance(value, dict):
        known = {f.name for f in dataclasses.fields(current)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(
                f"transformer.{unknown[0]}",
                value[unknown[0]],
                f"unknown field; known fields: {', '.join(sorted(known))}",
            )
        return dataclasses.replace(current, **value)
    return value


def parse_space_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--space``) as :meth:`HRNASConfig.replace` overrides.

    Nested keys use dots; values are JSON (numbers, ``true``/``false``, lists), a comma list of
    numbers, or else a string:

    >>> parse_space_overrides(["transformer.placement=all", "kernels=3,5", "granularity=8", "transformer=false"])
    {'transformer': False, 'kernels': (3, 5), 'granularity': 8}

    A later item wins over an earlier one (here ``transformer=false`` over ``transformer.placement``).
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                "space", item, "expected KEY=VALUE, e.g. transformer.placement=all or kernels=3,5"
            )
        value = _parse_value(text.strip())
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return out


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        value = json.loads(text)
    except ValueError:
        parts = [p.strip() for p in text.split(",")]
        if len(parts) > 1:
            try:
                return tuple(int(p) if p.lstrip("-").isdigit() else float(p) for p in parts)
            except ValueError:
                return tuple(parts)
        return text
    return tuple(value) if isinstance(value, list) else value


def check_input_size(
    config: HRNASConfig, size: tuple[int, ...], field_name: str = "input"
) -> tuple[int, int, int]:
    """Validate an input size (C, H, W) for ``config`` and return it as a tuple."""
    size = tuple(size)
    if len(size) != 3 or any(not isinstance(v, int) or v < 1 for v in size):
        raise ConfigError(
            field_name, size, "expected three positive integers (channels, height, width), e.g. 3x512x1024"
        )
    channels, height, width = size
    if channels != config.in_channels:
        raise ConfigError(field_name, size, f"this space takes {config.in_channels} input channels")
    stride = config.max_stride
    if height % stride or width % stride:
        raise ConfigError(
            field_name,
            size,
            f"height and width must be multiples of {stride} (the coarsest branch is at 1/{stride}); "
            f"e.g. {config.in_channels}x{max(stride, height // stride * stride)}x"
            f"{max(stride, width // stride * stride)}",
        )
    return size
