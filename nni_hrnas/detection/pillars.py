"""PointPillars' pillar grid: settings and the (vectorised torch) grouping of a point cloud into pillars.

A cloud is grouped into at most ``max_pillars`` non-empty pillars of at most ``max_points``
points each and packed into one dense float tensor of shape ``(max_pillars, 3 + 4 * max_points)``:
per row ``[count, row, col, x0, y0, z0, r0, x1, ...]`` (row = y cell, col = x cell; rows with
count 0 are padding). One tensor per cloud keeps the default collate and the search loop's
"first element of the batch is the input" convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

HEADER = 3  # count, row, col


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


def pillarise(
    points: torch.Tensor,
    settings: PillarSettings,
    max_pillars: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Group a cloud (N, 4) ``x, y, z, r`` into the packed pillar tensor (P, 3 + 4 * max_points).

    Points outside the range are dropped; pillars beyond ``max_pillars`` and points beyond
    ``max_points`` in a pillar are dropped at random (``generator``), as PointPillars samples them.
    Pillars come in row-major cell order.
    """
    s = settings
    cap = max_pillars or s.max_pillars
    pts = torch.as_tensor(points, dtype=torch.float32)
    if pts.ndim != 2 or pts.shape[1] < 4:
        raise ValueError(f"expected a point cloud of shape (N, 4) x, y, z, r; got {tuple(pts.shape)}")
    pts = pts[:, :4]
    rows, cols = s.grid
    ix = torch.floor((pts[:, 0] - s.x_range[0]) / s.voxel).long()
    iy = torch.floor((pts[:, 1] - s.y_range[0]) / s.voxel).long()
    ok = (
        (ix >= 0)
        & (ix < cols)
        & (iy >= 0)
        & (iy < rows)
        & (pts[:, 2] >= s.z_range[0])
        & (pts[:, 2] < s.z_range[1])
    )
    pts, ix, iy = pts[ok], ix[ok], iy[ok]
    out = torch.zeros(cap, s.packed_width())
    if len(pts) == 0:
        return out
    # random order first, then a stable sort by cell: which points and pillars survive the caps is random
    perm = torch.randperm(len(pts), generator=generator)
    pts, ix, iy = pts[perm], ix[perm], iy[perm]
    cell = iy * cols + ix
    cell_sorted, order = torch.sort(cell, stable=True)
    pts = pts[order]
    cells, counts = torch.unique_consecutive(cell_sorted, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(pts)) - torch.repeat_interleave(starts, counts)  # rank of the point in its pillar
    pillar = torch.repeat_interleave(torch.arange(len(cells)), counts)
    if len(cells) > cap:
        chosen = torch.sort(torch.randperm(len(cells), generator=generator)[:cap]).values
        new_index = torch.full((len(cells),), -1, dtype=torch.long)
        new_index[chosen] = torch.arange(cap)
        pillar = new_index[pillar]
        cells, counts = cells[chosen], counts[chosen]
    keep = (pillar >= 0) & (slot < s.max_points)
    n = len(cells)
    body = torch.zeros(n, s.max_points, 4)
    body[pillar[keep], slot[keep]] = pts[keep]
    out[:n, 0] = torch.clamp(counts, max=s.max_points).float()
    out[:n, 1] = torch.div(cells, cols, rounding_mode="floor").float()
    out[:n, 2] = (cells % cols).float()
    out[:n, HEADER:] = body.reshape(n, -1)
    return out


def pillar_count(packed: torch.Tensor) -> int:
    """The number of non-empty pillars in ``packed`` (rows whose point count is not 0)."""
    return int((packed[..., 0] > 0).sum())


def cell_centres(
    row: torch.Tensor, col: torch.Tensor, settings: PillarSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """x, y of the centres of pillar cells."""
    s = settings
    return (col * s.voxel + s.x_range[0] + s.voxel / 2, row * s.voxel + s.y_range[0] + s.voxel / 2)
