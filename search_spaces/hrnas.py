"""The HR-NAS multi-branch network and its NNI model space (paper Sec. 3.2, Fig. 3).

One builder, :class:`HRNASNetwork`, makes both: with NNI choices as widths and NNI's mutable
layers it is the supernet inside :class:`HRNASSpace`; with integer widths and plain layers it is
a searched network, as :meth:`HRNASSpace.freeze` returns it.

Searching blocks are named ``p{stage}_b{branch}_n{block}`` (parallel modules),
``f{stage}_o{out}_i{in}`` (the fusion module before parallel module ``stage``), ``head``, and
``cls_b{branch}`` / ``cls_d{i}`` (classification head). Each block's choices are labelled
``{block}_k{kernel}`` (depthwise channels per kernel size) and ``{block}_tok`` (tokens).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from nni.mutable import Categorical
from nni.nas.nn.pytorch import ModelSpace, MutableBatchNorm2d, MutableConv2d, MutableLinear
from torch import nn

from . import costs, labels, nni_patches
from .config import ConfigError, HRNASConfig, check_input_size
from .layouts import SINGLE_BRANCH, single_branch_steps
from .ops import TORCH_LAYERS, LayerFactory, SearchingBlock, Width
from .ops.pillars import POINT_FEATURES as PILLAR_FEATURES
from .ops.pillars import PillarFrontEnd
from .presets import get_preset

nni_patches.apply()

NNI_LAYERS = LayerFactory(
    conv2d=MutableConv2d,
    batchnorm2d=MutableBatchNorm2d,
    queries=lambda num_tokens, dim: MutableLinear(dim, num_tokens, bias=False),
)


@dataclass(frozen=True)
class BlockSlot:
    """Where a searching block sits: its label, shape, input stride (w.r.t. the image) and group."""

    label: str
    in_channels: int
    out_channels: int
    stride: int
    input_stride: int
    group: str
    has_transformer: bool
    upsample: bool = False  # fusion from the next-lower branch: output upsampled x2


def plan_blocks(config: HRNASConfig) -> list[BlockSlot]:
    """Every searching block of the space, in construction order."""
    slots: list[BlockSlot] = []
    placement = config.transformer.placement

    def add(
        label: str, c_in: int, c_out: int, stride: int, input_stride: int, group: str, upsample: bool = False
    ) -> None:
        identity = stride == 1 and c_in == c_out
        has_t = placement == "all" or (placement == "identity" and identity)
        slots.append(BlockSlot(label, c_in, c_out, stride, input_stride, group, has_t, upsample))

    if config.stem_channels != config.stages[0].channels[0]:
        raise ConfigError(
            "stages[0].channels",
            config.stages[0].channels,
            f"the first module keeps the stem's width ({config.stem_channels})",
        )
    plan_body = _plan_single_branch if config.layout == SINGLE_BRANCH else _plan_multi_branch
    plan_body(config, add)
    for block in config.head.blocks():
        add(block.label, block.in_channels, block.out_channels, block.stride, block.input_stride, "head")
    return slots


def _plan_multi_branch(config: HRNASConfig, add: Callable[..., None]) -> None:
    """The (fusion, parallel) modules of the multi-branch space."""
    prev_channels: tuple[int, ...] = (config.stem_channels,)
    for s, stage in enumerate(config.stages):
        if s > 0:
            for o in range(stage.branches):
                for i in _fusion_inputs(o, len(prev_channels)):
                    add(
                        labels.fusion_block(s, o, i),
                        prev_channels[i],
                        stage.channels[o],
                        2 if i == o - 1 else 1,
                        4 * 2**i,
                        f"fusion{s}.b{o}",
                        upsample=i == o + 1,
                    )
        for b in range(stage.branches):
            for n in range(stage.blocks[b]):
                add(
                    labels.parallel_block(s, b, n),
                    stage.channels[b],
                    stage.channels[b],
                    1,
                    4 * 2**b,
                    f"stage{s}.b{b}",
                )
        prev_channels = stage.channels


def _plan_single_branch(config: HRNASConfig, add: Callable[..., None]) -> None:
    """The single branch: per module a transition block, then its blocks (see :mod:`search_spaces.layouts`)."""
    prev = None
    for step in single_branch_steps(config.stages):
        if prev is not None:
            add(
                labels.fusion_block(step.stage, step.branch, prev.branch),
                prev.channels,
                step.channels,
                2 if step.branch > prev.branch else 1,
                4 * 2**prev.branch,
                f"fusion{step.stage}.b{step.branch}",
            )
        for n in range(step.blocks):
            add(
                labels.parallel_block(step.stage, step.branch, n),
                step.channels,
                step.channels,
                1,
                4 * 2**step.branch,
                f"stage{step.stage}.b{step.branch}",
            )
        prev = step


def fusion_outputs(config: HRNASConfig) -> list[tuple[int, int, int]]:
    """(stage, output branch, channels) of every fusion (multi-branch) or transition (single-branch)
    output: each is followed by a ReLU."""
    if config.layout == SINGLE_BRANCH:
        return [(st.stage, st.branch, st.channels) for st in single_branch_steps(config.stages)[1:]]
    return [
        (s, o, ch) for s, stage in enumerate(config.stages) if s > 0 for o, ch in enumerate(stage.channels)
    ]


def _fusion_inputs(out_branch: int, num_inputs: int) -> list[int]:
    return [i for i in (out_branch - 1, out_branch, out_branch + 1) if 0 <= i < num_inputs]


def width_choices(maximum: int, step: int) -> list[int]:
    """0, step, 2 step, ... and ``maximum`` itself: any pruned width rounds up to one of them."""
    return sorted(set(range(0, maximum + 1, step)) | {maximum})


def choice_maxima(config: HRNASConfig) -> dict[str, int]:
    """The supernet's width of every choice label (the largest value of each choice)."""
    maxima: dict[str, int] = {}
    for slot in plan_blocks(config):
        for k in config.kernels:
            maxima[labels.choice_label(slot.label, labels.kernel_choice(k))] = (
                config.expansion * slot.in_channels
            )
        if slot.has_transformer:
            maxima[labels.choice_label(slot.label, labels.TOKENS)] = config.transformer.tokens
    return maxima


class HRNASNetwork(nn.Module):
    """Stem, (fusion, parallel) modules and task head, built from ``config`` and ``widths``.

    Args:
        config: the space's configuration.
        widths: the value of every choice label (see :func:`choice_maxima`): ints for a network,
            NNI choices for a supernet.
        layers: constructors of the searched layers.
    """

    def __init__(
        self, config: HRNASConfig, widths: Mapping[str, Width], layers: LayerFactory = TORCH_LAYERS
    ) -> None:
        super().__init__()
        self.config = config
        self.arch = {k: v for k, v in widths.items() if isinstance(v, int)}
        c = config.stem_channels
        self.stem = nn.Sequential(
            nn.Conv2d(config.in_channels, c, 3, 2, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
            nn.Conv2d(c, c, 3, 2, 1, bias=False),
            nn.BatchNorm2d(c),
            nn.ReLU(inplace=True),
        )
        settings = config.transformer.settings()
        self.blocks = nn.ModuleDict()
        for slot in plan_blocks(config):
            self.blocks[slot.label] = SearchingBlock(
                slot.in_channels,
                slot.out_channels,
                slot.stride,
                kernel_widths={
                    k: widths[labels.choice_label(slot.label, labels.kernel_choice(k))]
                    for k in config.kernels
                },
                num_tokens=widths[labels.choice_label(slot.label, labels.TOKENS)]
                if slot.has_transformer
                else 0,
                transformer=settings,
                layers=layers,
            )
        self.act = nn.ReLU(inplace=True)
        if config.pillars is not None:
            self.frontend = PillarFrontEnd(config.pillars)
        self.task_head = config.head
        for name, layer in self.task_head.layers().items():  # top-level names: the state-dict keys stay flat
            self.add_module(name, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3 and self.config.pillars is not None:  # packed pillars: the pseudo-image first
            x = self.frontend(x)
        x = self.stem(x)
        feats = self._single_branch(x) if self.config.layout == SINGLE_BRANCH else self._multi_branch(x)
        return self.task_head.forward(self, feats)

    def _multi_branch(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The (fusion, parallel) modules: the last module's branch outputs, finest first."""
        feats = [x]
        for s, stage in enumerate(self.config.stages):
            if s > 0:
                feats = [self._fuse(s, o, feats) for o in range(stage.branches)]
            for b in range(stage.branches):
                for n in range(stage.blocks[b]):
                    feats[b] = self.blocks[labels.parallel_block(s, b, n)](feats[b])
        return feats

    def _single_branch(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The single branch: at each resolution, the last feature it produced there, finest first."""
        taps: dict[int, torch.Tensor] = {}
        prev = None
        for step in single_branch_steps(self.config.stages):
            if prev is not None:  # the transition, ReLU'd like a fusion sum
                x = F.relu(self.blocks[labels.fusion_block(step.stage, step.branch, prev.branch)](x))
            for n in range(step.blocks):
                x = self.blocks[labels.parallel_block(step.stage, step.branch, n)](x)
            taps[step.branch], prev = x, step
        return [taps[b] for b in sorted(taps)]

    def _fuse(self, stage: int, out_branch: int, feats: list[torch.Tensor]) -> torch.Tensor:
        total = None
        for i in _fusion_inputs(out_branch, len(feats)):
            y = self.blocks[labels.fusion_block(stage, out_branch, i)](feats[i])
            if i == out_branch + 1:  # to the exact size of branch out_branch: odd sizes round up
                y = F.interpolate(y, size=feats[out_branch].shape[-2:], mode="bilinear", align_corners=False)
            total = y if total is None else total + y
        # not in place: with one input whose block is empty (identity), total is that block's input
        return F.relu(total)

    def with_widths(self, widths: Mapping[str, int]) -> HRNASNetwork:
        """A new plain network of this one's config with ``widths`` (fresh weights, not validated)."""
        return type(self)(self.config, widths)

    def searching_blocks(self) -> Iterator[tuple[BlockSlot, SearchingBlock]]:
        """Every searching block with its slot (label, shapes, input stride, group)."""
        for slot in plan_blocks(self.config):
            yield slot, self.blocks[slot.label]

    def cost_breakdown(self, input_size: tuple[int, int, int] | None = None) -> dict[str, costs.Cost]:
        """Exact per-image cost at ``input_size`` (default: the config's), grouped by stage and branch.

        Groups: ``stem``, ``stage{s}.b{b}``, ``fusion{s}.b{b}`` (blocks feeding output branch b) and ``head``.
        """
        _, height, width = check_input_size(self.config, input_size or self.config.input_size)

        def hw(stride: int) -> tuple[int, int]:
            return height // stride, width // stride

        config, c = self.config, self.config.stem_channels
        groups: dict[str, costs.Cost] = {
            "stem": (
                costs.conv_cost(config.in_channels, c, 3, hw(2))
                + costs.batchnorm_cost(c, hw(2), act=True)
                + costs.conv_cost(c, c, 3, hw(4))
                + costs.batchnorm_cost(c, hw(4), act=True)
            )
        }
        if config.pillars is not None:  # parameters only: its MACs depend on the point cloud
            groups["frontend"] = costs.Cost(params=config.pillars.channels * (PILLAR_FEATURES + 2))
        for slot, block in self.searching_blocks():
            cost = costs.searching_block_cost(block, hw(slot.input_stride))
            if slot.upsample:
                cost += costs.interpolate_cost(slot.out_channels, hw(slot.input_stride // 2))
            groups[slot.group] = groups.get(slot.group, costs.Cost()) + cost
        for s, o, ch in fusion_outputs(config):  # the ReLU after each fusion sum (or transition)
            groups[f"fusion{s}.b{o}"] += costs.activation_cost(ch, hw(4 * 2**o))
        groups["head"] += self.task_head.cost(height, width)
        return groups

    def cost(self, input_size: tuple[int, int, int] | None = None) -> costs.Cost:
        """Total exact per-image cost at ``input_size`` (see :meth:`cost_breakdown`)."""
        return sum(self.cost_breakdown(input_size).values(), costs.Cost())


class HRNASSpace(ModelSpace):
    """The HR-NAS search space as an NNI model space.

    Every searching block exposes one choice per kernel path (its depthwise width, 0 removes the
    path) and one for its transformer's tokens (0 removes the transformer). NNI's multi-trial and
    one-shot strategies run on it unchanged; :meth:`freeze` returns a compact plain network.

    Example:
        >>> space = HRNASSpace.from_preset("tiny")
        >>> net = space.freeze(space.max_sample())
        >>> net(torch.randn(1, 3, 32, 32)).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self, config: HRNASConfig) -> None:
        super().__init__()
        if not isinstance(config, HRNASConfig):
            raise TypeError(f"HRNASSpace takes an HRNASConfig, got {type(config).__name__}")
        self.config = config
        self._maxima = choice_maxima(config)
        self._choices = {
            label: Categorical(self._values(label, m), default=m, label=label)
            for label, m in self._maxima.items()
        }
        self.network = HRNASNetwork(config, self._choices, NNI_LAYERS)

    def _values(self, label: str, maximum: int) -> list[int]:
        return _label_values(self.config, label, maximum)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> HRNASSpace:
        """The space of preset ``name`` (see :data:`search_spaces.PRESETS`), with config ``overrides``.

        Example: ``HRNASSpace.from_preset("cityscapes", transformer=False)``.
        """
        return cls(get_preset(name, **overrides))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def choices(self) -> dict[str, list[int]]:
        """Every choice label with its allowed values."""
        return {label: list(c.values) for label, c in self._choices.items()}

    def max_sample(self) -> dict[str, int]:
        """The architecture of the whole supernet."""
        return dict(self._maxima)

    def round_up(self, widths: Mapping[str, int]) -> dict[str, int]:
        """The smallest sample of this space whose widths are >= ``widths`` (granularity rounding)."""
        return {
            label: next(v for v in self._values(label, self._maxima[label]) if v >= w)
            for label, w in widths.items()
        }

    @property
    def granular(self) -> bool:
        """Whether some widths move in steps coarser than 1 (then a pruned count is rounded up, see :meth:`round_up`)."""
        return self.config.granularity > 1 or self.config.token_granularity > 1

    def validate_sample(self, sample: Mapping[str, Any]) -> dict[str, int]:
        """Check that ``sample`` names an allowed value for every choice; return it as a plain dict."""
        return validate_sample(self.config, sample)

    def build_network(self, arch: Mapping[str, int]) -> HRNASNetwork:
        """A plain network with widths ``arch``, not validated (the strategy's own pruned widths; users call
        :meth:`freeze`)."""
        return HRNASNetwork(self.config, arch)

    @classmethod
    def create_fixed_module(cls, sample: Mapping[str, Any], config: HRNASConfig) -> HRNASNetwork:  # type: ignore[override]
        """What NNI builds when it instantiates the space under a fixed architecture (multi-trial)."""
        return HRNASNetwork(config, validate_sample(config, sample), TORCH_LAYERS)

    def freeze(self, sample: Mapping[str, Any]) -> HRNASNetwork:
        """A plain PyTorch network with exactly the widths of ``sample``."""
        return HRNASNetwork(self.config, self.validate_sample(sample), TORCH_LAYERS)


def _label_values(config: HRNASConfig, label: str, maximum: int) -> list[int]:
    step = config.token_granularity if labels.is_tokens(label) else config.granularity
    return width_choices(maximum, step)


def validate_sample(config: HRNASConfig, sample: Mapping[str, Any]) -> dict[str, int]:
    """Check that ``sample`` names an allowed value for every choice of ``config``'s space, and nothing else."""
    if not isinstance(sample, Mapping):
        raise ConfigError("sample", type(sample).__name__, "expected a mapping of choice labels to widths")
    maxima = choice_maxima(config)
    unknown = sorted(set(sample) - set(maxima), key=str)
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(maxima), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(
            f"sample[{unknown[0]!r}]",
            sample[unknown[0]],
            f"not a choice of this space{hint}; {len(unknown)} unknown label(s): is the "
            "architecture from another preset or space configuration?",
        )
    missing = sorted(set(maxima) - set(sample))
    if missing:
        raise ConfigError(
            "sample",
            f"{len(missing)} missing labels",
            f"every choice needs a value; missing e.g. {missing[:3]}",
        )
    for label, maximum in maxima.items():
        value = sample[label]
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or value not in _label_values(config, label, maximum)
        ):
            step = config.token_granularity if labels.is_tokens(label) else config.granularity
            raise ConfigError(f"sample[{label!r}]", value, f"allowed: 0..{maximum} in steps of {step}")
    return {label: int(sample[label]) for label in maxima}


def load_arch(path: str | Path, config: HRNASConfig) -> dict[str, int]:
    """Read an architecture file (a JSON object of choice labels to widths) and validate it for ``config``.

    Every problem (missing file, invalid JSON, not an object, unknown or missing labels, values off
    the grid) is a one-line :class:`ConfigError` naming the file and what is expected.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError("arch", str(path), f"cannot be read ({exc.strerror or exc})") from None
    try:
        sample = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            "arch",
            str(path),
            f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "expected a JSON object of choice labels to widths, as hrnas search writes",
        ) from None
    try:
        return validate_sample(config, sample)
    except ConfigError as exc:
        raise ConfigError(f"arch {str(path)!r}: {exc.field_name}", exc.value, exc.allowed) from None
