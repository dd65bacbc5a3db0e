"""PointPillars' front end: the pillar feature net and the scatter to the BEV pseudo-image.

The input is the packed pillar tensor of :func:`nni_hrnas.detection.pillars.pillarise`
(B, P, 3 + 4 N). Each point gets PointPillars' nine features (x, y, z, r, its offset from the
mean of its pillar's points, and its x/y offset from the pillar's centre); padding points are
zeroed; a linear layer, BatchNorm and ReLU follow and the max over the pillar's points gives the
pillar's feature, which is scattered to its cell of a (B, C, rows, cols) canvas.
"""

from __future__ import annotations

import torch
from torch import nn

from nni_hrnas.detection.pillars import HEADER, PillarSettings, cell_centres

POINT_FEATURES = 9


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
