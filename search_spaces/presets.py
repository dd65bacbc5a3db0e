"""Named configurations: the paper's supernets (as the official code builds them) and small CPU ones of the same structure."""

from __future__ import annotations

from typing import Any

from .config import HRNASConfig, TransformerConfig
from .mobilenetv2 import MOBILENETV2_PRESETS
from .ops.pillars import MAPS_PER_ANCHOR, PillarSettings
from .ops.pillars import SIM_PILLARS as KITTI_SIM_PILLARS
from .shufflenetv2 import SHUFFLENETV2_PRESETS

_SMALL_STAGES = (
    (1, [1], [16]),
    (2, [1, 1], [16, 32]),
    (3, [1, 1, 1], [16, 32, 48]),
    (4, [1, 1, 1, 1], [16, 32, 48, 64]),
    (4, [1, 1, 1, 1], [16, 32, 48, 64]),
)
# The CPU presets keep transformers on the blocks that keep their shape only (placement 'identity';
# the paper's 'all' is the default, see TransformerConfig): every measured search and benchmark of
# them in the README ran with it. `--space transformer.placement=all` gives the paper's placement.
_SMALL_TRANSFORMER = TransformerConfig(tokens=16, size=4, placement="identity")
# KITTI: three branches (1/4, 1/8, 1/16), as PointPillars' RPN has three scales; 496 x 432 is not a
# multiple of 32, so there is no fourth. Anchors: 2 rotations x (1 class + 7 box residuals + 2 direction bins).
DETECTION_OUTPUTS = 2 * MAPS_PER_ANCHOR
_KITTI_STAGES = (
    (1, [1], [32]),
    (2, [2, 2], [32, 64]),
    (3, [2, 2, 3], [32, 64, 128]),
    (3, [2, 2, 3], [32, 64, 128]),
)
_KITTI_SIM_STAGES = (
    (1, [1], [16]),
    (2, [1, 1], [16, 32]),
    (3, [1, 1, 1], [16, 32, 48]),
    (3, [1, 1, 1], [16, 32, 48]),
)

#: the body the three digits presets share (their inputs and heads differ)
_DIGITS_BODY = dict(stem_channels=16, stages=_SMALL_STAGES, expansion=2, transformer=_SMALL_TRANSFORMER)

PRESETS: dict[str, HRNASConfig] = {
    "cityscapes": HRNASConfig(
        task="segmentation", num_outputs=19, input_size=(3, 512, 1024), head_channels=90
    ),
    "ade20k": HRNASConfig(task="segmentation", num_outputs=150, input_size=(3, 512, 512), head_channels=180),
    "coco_keypoints": HRNASConfig(
        task="keypoints", num_outputs=17, input_size=(3, 256, 192), head_channels=90
    ),
    "imagenet": HRNASConfig(task="classification", num_outputs=1000, input_size=(3, 224, 224)),
    "digits_seg": HRNASConfig(
        task="segmentation",
        num_outputs=11,
        input_size=(1, 64, 64),
        **_DIGITS_BODY,
        head_channels=32,
    ),
    "digits_cls": HRNASConfig(
        task="classification",
        num_outputs=10,
        input_size=(1, 32, 32),
        **_DIGITS_BODY,
        cls_channels=(24, 32, 48, 96),
        cls_final_channels=256,
        dropout=0.1,
    ),
    "digits_kp": HRNASConfig(
        task="keypoints",
        num_outputs=4,
        input_size=(1, 64, 64),
        **_DIGITS_BODY,
        head_channels=32,
    ),
    "kitti": HRNASConfig(
        task="detection",
        num_outputs=DETECTION_OUTPUTS,
        input_size=PillarSettings().input_size,
        stem_channels=32,
        stages=_KITTI_STAGES,
        head_channels=96,
        pillars=PillarSettings(),
    ),
    "kitti_sim": HRNASConfig(
        task="detection",
        num_outputs=DETECTION_OUTPUTS,
        input_size=KITTI_SIM_PILLARS.input_size,
        stem_channels=16,
        stages=_KITTI_SIM_STAGES,
        expansion=2,
        transformer=_SMALL_TRANSFORMER,
        head_channels=32,
        pillars=KITTI_SIM_PILLARS,
    ),
    "tiny": HRNASConfig(
        task="segmentation",
        num_outputs=3,
        input_size=(3, 32, 32),
        stem_channels=8,
        stages=(
            (1, [1], [8]),
            (2, [1, 1], [8, 8]),
            (3, [1, 1, 1], [8, 8, 8]),
            (4, [1, 1, 1, 1], [8, 8, 8, 8]),
            (4, [1, 1, 1, 1], [8, 8, 8, 8]),
        ),
        expansion=1,
        transformer=TransformerConfig(tokens=4, size=2, placement="identity"),
        head_channels=8,
    ),
}

#: the fixed Table 8 plug-in networks (name -> config; ``.build()`` makes the network)
PLUGIN_PRESETS = {**MOBILENETV2_PRESETS, **SHUFFLENETV2_PRESETS}


def get_preset(name: str, **overrides: Any) -> HRNASConfig:
    """The preset ``name`` with validated ``overrides`` of any :class:`HRNASConfig` field."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; available presets: {', '.join(PRESETS)}")
    config = PRESETS[name]
    return config.replace(**overrides) if overrides else config
