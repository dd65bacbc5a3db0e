"""PointPillars' grouping of a point cloud into pillars (vectorised torch), on the grid of
:class:`~search_spaces.ops.pillars.PillarSettings`.

A cloud is grouped into at most ``max_pillars`` non-empty pillars of at most ``max_points``
points each and packed into one dense float tensor of shape ``(max_pillars, 3 + 4 * max_points)``:
per row ``[count, row, col, x0, y0, z0, r0, x1, ...]`` (row = y cell, col = x cell; rows with
count 0 are padding). One tensor per cloud keeps the default collate and the search loop's
"first element of the batch is the input" convention.
"""

from __future__ import annotations

import torch

from search_spaces.ops.pillars import HEADER, PillarSettings


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
