"""PointPillars' pillar grid (:class:`PillarSettings`, the packed pillar format) and its front end:
the pillar feature net and the scatter to the BEV pseudo-image.

The input is the packed pillar tensor of :func:`nni_hrnas.detection.pillars.pillarise`
(B, P, 3 + 4 N). Each point gets PointPillars' nine features (x, y, z, r, its offset from the
mean of its pillar's points, and its x/y offset from the pillar's centre); padding points are
zeroed; a linear layer, BatchNorm and ReLU follow and the max over the pillar's points gives the
pillar's feature, which is scattered to its cell of a (B, C, rows, cols) canvas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

HEADER = 3  # count, row, col

POINT_FEATURES = 9


@dataclass(frozen=True)
class PillarSettings:
    """The grid of PointPillars (published car settings by default: 0.16 m pillars over
    x 0..69.12 m, y -39.68..39.68 m, z -3..1 m, 32 points per pillar, 12000 pillars in training
    (16000 in testing), 64 BEV channels). ``bn_momentum`` is the BatchNorm momentum (torch's
    convention) of the networks on this grid: PointPillars' 0.01 suits its ~300k steps, but in a
    run of a few hundred steps the running statistics lag so far behind the weights that the
    network in eval mode detects nothing (measured on kitti_sim), so the simulator's grid uses 0.1."""

    voxel: float = 0.16
    x_range: tuple[float, float] = (0.0, 69.12)
    y_range: tuple[float, float] = (-39.68, 39.68)
    z_range: tuple[float, float] = (-3.0, 1.0)
    max_points: int = 32
    max_pillars: int = 12000
    max_pillars_test: int = 16000
    channels: int = 64
    bn_momentum: float = 0.01

    def __post_init__(self) -> None:
        object.__setattr__(self, "x_range", tuple(float(v) for v in self.x_range))
        object.__setattr__(self, "y_range", tuple(float(v) for v in self.y_range))
        object.__setattr__(self, "z_range", tuple(float(v) for v in self.z_range))
        if not self.voxel > 0:
            raise ValueError(f"pillar voxel={self.voxel!r}: expected a positive size in metres")
        for name in ("x_range", "y_range", "z_range"):
            lo, hi = getattr(self, name)
            if not hi > lo:
                raise ValueError(f"pillar {name}={(lo, hi)!r}: expected (low, high) with low < high")
        for name in ("max_points", "max_pillars", "max_pillars_test", "channels"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"pillar {name}={getattr(self, name)!r}: expected a positive integer")
        if not 0 < self.bn_momentum <= 1:
            raise ValueError(f"pillar bn_momentum={self.bn_momentum!r}: expected a value in (0, 1]")
        for name, (lo, hi) in (("x_range", self.x_range), ("y_range", self.y_range)):
            cells = (hi - lo) / self.voxel
            if abs(cells - round(cells)) > 1e-6:
                raise ValueError(f"pillar {name}={(lo, hi)!r} is not a whole number of {self.voxel} m cells")

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of the pseudo-image: y cells, x cells (496 x 432 for the published setting)."""
        return (
            round((self.y_range[1] - self.y_range[0]) / self.voxel),
            round((self.x_range[1] - self.x_range[0]) / self.voxel),
        )

    @property
    def input_size(self) -> tuple[int, int, int]:
        """(C, H, W) of the BEV pseudo-image the 2D network sees."""
        return (self.channels, *self.grid)

    def packed_width(self) -> int:
        """Columns of a packed pillar row: the header (count, row, col) and x, y, z, r per point."""
        return HEADER + 4 * self.max_points


#: the simulator's grid (kitti_sim): 0.25 m pillars over 32 x 32 m, 32 channels, a CPU-sized PointPillars
SIM_PILLARS = PillarSettings(
    voxel=0.25,
    x_range=(0.0, 32.0),
    y_range=(-16.0, 16.0),
    z_range=(-3.0, 1.0),
    max_points=16,
    max_pillars=5000,
    max_pillars_test=5000,
    channels=32,
    bn_momentum=0.1,
)


#: Maps per anchor of a detection output: a class logit, 7 box residuals, 2 direction logits. The
#: class logits come first, one map per anchor (``nni_hrnas.detection.anchors`` reads this layout).
MAPS_PER_ANCHOR = 1 + 7 + 2
#: The probability a detection output's class logits start at (RetinaNet's focal-loss initialisation,
#: which PointPillars and SECOND use): with a zero bias every one of the thousands of anchors starts at
#: 0.5, and the first steps' focal loss (about 25 here) swamps the box loss.
CLASS_PRIOR = 0.01


def init_class_prior(classifier: nn.Conv2d, prior: float = CLASS_PRIOR) -> nn.Conv2d:
    """Set the class-logit biases of an anchor classifier (its first ``out_channels / 10`` maps) to
    ``log(prior / (1 - prior))``; returns ``classifier``."""
    anchors = classifier.out_channels // MAPS_PER_ANCHOR
    with torch.no_grad():
        classifier.bias[:anchors].fill_(math.log(prior / (1 - prior)))
    return classifier


def cell_centres(
    row: torch.Tensor, col: torch.Tensor, settings: PillarSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, y of the centres of pillar cells."""
    s = settings
    return (col * s.voxel + s.x_range[0] + s.voxel / 2, row * s.voxel + s.y_range[0] + s.voxel / 2)


class PillarFrontEnd(nn.Module):
    """Pillar feature net + scatter: packed pillars (B, P, 3 + 4 N) -> pseudo-image (B, C, rows, cols)."""

    def __init__(self, settings: PillarSettings) -> None:
        super().__init__()
        self.settings = settings
        self.linear = nn.Linear(POINT_FEATURES, settings.channels, bias=False)
        self.norm = nn.BatchNorm1d(settings.channels, eps=1e-3, momentum=settings.bn_momentum)

    def point_features(self, packed: torch.Tensor) -> torch.Tensor:
        """(M, N, 9) augmented features of M pillars (padding points zero)."""
        n = self.settings.max_points
        count = packed[:, 0]
        pts = packed[:, HEADER:].reshape(-1, n, 4)
        mask = (torch.arange(n, device=packed.device)[None] < count[:, None]).to(pts.dtype)
        mean = (pts[..., :3] * mask[..., None]).sum(1) / count.clamp(min=1)[:, None]
        cx, cy = cell_centres(packed[:, 1], packed[:, 2], self.settings)
        feats = torch.cat(
            [
                pts,
                pts[..., :3] - mean[:, None],
                (pts[..., 0] - cx[:, None])[..., None],
                (pts[..., 1] - cy[:, None])[..., None],
            ],
            dim=-1,
        )
        return feats * mask[..., None]

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        if packed.ndim != 3 or packed.shape[-1] != self.settings.packed_width():
            raise ValueError(
                f"expected packed pillars (B, P, {self.settings.packed_width()}), got {tuple(packed.shape)}"
            )
        b, p, _ = packed.shape
        rows, cols = self.settings.grid
        flat = packed.reshape(b * p, -1)
        real = flat[:, 0] > 0
        pillars = flat[real]
        feats = self.point_features(pillars)  # (M, N, 9)
        m, n, _ = feats.shape
        x = self.linear(feats.reshape(m * n, -1))
        x = torch.relu(self.norm(x)).reshape(m, n, -1).amax(1)  # (M, C)
        sample = torch.arange(b, device=packed.device).repeat_interleave(p)[real]
        index = sample * (rows * cols) + pillars[:, 1].long() * cols + pillars[:, 2].long()
        canvas = x.new_zeros(b * rows * cols, x.shape[1])
        canvas[index] = x
        return canvas.reshape(b, rows, cols, -1).permute(0, 3, 1, 2).contiguous()
