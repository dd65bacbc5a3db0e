"""Oriented 3D boxes in the LiDAR frame: corners, rotated BEV IoU, 3D IoU, rotated BEV NMS.

A box is ``(x, y, z, l, w, h, yaw)``: its centre (z the centre, not the bottom), its length along
the heading, width across it, height, and the heading angle about +z (0 = along +x). Everything
is vectorised numpy over pairs: the intersection of two rectangles is the convex polygon of the
corners of each inside the other and the crossings of their edges, ordered by angle around its
centroid (no per-pair Python loop).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

BOX_DIM = 7
_EPS = 1e-9


def as_boxes(boxes: ArrayLike) -> np.ndarray:
    """``boxes`` as a float64 (N, 7) array; a clear error for another shape."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.ndim == 1 and b.size == 0:
        b = b.reshape(0, BOX_DIM)
    if b.ndim != 2 or b.shape[1] != BOX_DIM:
        raise ValueError(f"expected boxes of shape (N, 7) = (x, y, z, l, w, h, yaw), got {b.shape}")
    return b


def bev_corners(boxes: ArrayLike) -> np.ndarray:
    """(N, 4, 2) BEV corners, counter-clockwise."""
    b = as_boxes(boxes)
    c, s = np.cos(b[:, 6]), np.sin(b[:, 6])
    hl, hw = b[:, 3] / 2, b[:, 4] / 2
    local = np.stack(
        [np.stack([hl, hw], -1), np.stack([-hl, hw], -1), np.stack([-hl, -hw], -1), np.stack([hl, -hw], -1)],
        1,
    )  # (N, 4, 2)
    x = local[..., 0] * c[:, None] - local[..., 1] * s[:, None] + b[:, None, 0]
    y = local[..., 0] * s[:, None] + local[..., 1] * c[:, None] + b[:, None, 1]
    return np.stack([x, y], -1)


def corners_3d(boxes: ArrayLike) -> np.ndarray:
    """(N, 8, 3) corners: the four BEV corners at the bottom, then at the top."""
    b = as_boxes(boxes)
    bev = bev_corners(b)
    bottom = (b[:, 2] - b[:, 5] / 2)[:, None, None].repeat(4, 1)
    top = (b[:, 2] + b[:, 5] / 2)[:, None, None].repeat(4, 1)
    return np.concatenate([np.concatenate([bev, bottom], -1), np.concatenate([bev, top], -1)], 1)


def _inside(points: np.ndarray, quads: np.ndarray) -> np.ndarray:
    """points (P, K, 2) inside the counter-clockwise quads (P, 4, 2), boundary included: (P, K)."""
    a = quads[:, None, :, :]  # (P, 1, 4, 2)
    e = np.roll(quads, -1, axis=1)[:, None] - a
    d = points[:, :, None, :] - a
    cross = e[..., 0] * d[..., 1] - e[..., 1] * d[..., 0]  # (P, K, 4)
    scale = np.linalg.norm(e, axis=-1) + _EPS
    return np.all(cross / scale >= -1e-7, axis=-1)


def _edge_crossings(p: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crossings of every edge of p with every edge of q: points (P, 16, 2) and validity (P, 16)."""
    a0 = p[:, :, None, :]
    a1 = np.roll(p, -1, axis=1)[:, :, None, :]
    b0 = q[:, None, :, :]
    b1 = np.roll(q, -1, axis=1)[:, None, :, :]
    r, s = a1 - a0, b1 - b0
    denom = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]
    qp = b0 - a0
    parallel = np.abs(denom) < 1e-12
    safe = np.where(parallel, 1.0, denom)
    t = (qp[..., 0] * s[..., 1] - qp[..., 1] * s[..., 0]) / safe
    u = (qp[..., 0] * r[..., 1] - qp[..., 1] * r[..., 0]) / safe
    valid = ~parallel & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    pts = a0 + t[..., None] * r
    n = p.shape[0]
    return pts.reshape(n, 16, 2), valid.reshape(n, 16)


def _polygon_area(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Area of the convex hull-ordered polygon of the valid points of each row (P, K, 2)."""
    n = points.shape[0]
    if n == 0:
        return np.zeros(0)
    count = valid.sum(1)
    centre = (points * valid[..., None]).sum(1) / np.maximum(count, 1)[:, None]
    rel = points - centre[:, None]
    angle = np.where(valid, np.arctan2(rel[..., 1], rel[..., 0]), np.inf)
    order = np.argsort(angle, axis=1)
    pts = np.take_along_axis(points, order[..., None], axis=1)
    ok = np.take_along_axis(valid, order, axis=1)
    # invalid points (sorted last) become copies of the first: their shoelace terms are zero
    pts = np.where(ok[..., None], pts, pts[:, :1])
    nxt = np.roll(pts, -1, axis=1)
    area = 0.5 * np.abs((pts[..., 0] * nxt[..., 1] - nxt[..., 0] * pts[..., 1]).sum(1))
    return np.where(count >= 3, area, 0.0)


def _pairwise_bev_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection areas of boxes a[i] and b[i] (equal lengths): (P,)."""
    ca, cb = bev_corners(a), bev_corners(b)
    in_a = _inside(cb, ca)  # corners of b inside a
    in_b = _inside(ca, cb)
    cross, cross_ok = _edge_crossings(ca, cb)
    points = np.concatenate([ca, cb, cross], 1)
    valid = np.concatenate([in_b, in_a, cross_ok], 1)
    return _polygon_area(points, valid)


def _pairs(a, b):
    a, b = as_boxes(a), as_boxes(b)
    ia, ib = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij")
    return a, b, ia.ravel(), ib.ravel()


def bev_intersection(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """(N, M) BEV intersection areas of every box of ``a`` with every box of ``b``."""
    a, b, ia, ib = _pairs(a, b)
    out = np.zeros(len(ia))
    # far-apart pairs cannot intersect: skip them (bounding circles)
    near = (
        np.hypot(a[ia, 0] - b[ib, 0], a[ia, 1] - b[ib, 1])
        <= 0.5 * (np.hypot(a[ia, 3], a[ia, 4]) + np.hypot(b[ib, 3], b[ib, 4])) + 1e-6
    )
    if near.any():
        out[near] = _pairwise_bev_intersection(a[ia[near]], b[ib[near]])
    return out.reshape(len(a), len(b))


def bev_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """(N, M) rotated bird's-eye-view IoU."""
    a, b = as_boxes(a), as_boxes(b)
    inter = bev_intersection(a, b)
    union = (a[:, 3] * a[:, 4])[:, None] + (b[:, 3] * b[:, 4])[None] - inter
    return inter / np.maximum(union, _EPS)


def iou_3d(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """(N, M) 3D IoU: BEV intersection times the overlap of the height intervals, over the union."""
    a, b = as_boxes(a), as_boxes(b)
    inter = bev_intersection(a, b)
    top = np.minimum((a[:, 2] + a[:, 5] / 2)[:, None], (b[:, 2] + b[:, 5] / 2)[None])
    bottom = np.maximum((a[:, 2] - a[:, 5] / 2)[:, None], (b[:, 2] - b[:, 5] / 2)[None])
    inter = inter * np.clip(top - bottom, 0, None)
    union = (a[:, 3] * a[:, 4] * a[:, 5])[:, None] + (b[:, 3] * b[:, 4] * b[:, 5])[None] - inter
    return inter / np.maximum(union, _EPS)


def rotated_nms(
    boxes: ArrayLike, scores: ArrayLike, threshold: float, max_output: int | None = None
) -> np.ndarray:
    """Greedy NMS on rotated BEV IoU: indices of the kept boxes, best score first."""
    boxes = as_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order
    iou = bev_iou(boxes[order], boxes[order])
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_output is not None and len(keep) >= max_output:
            break
        suppressed |= iou[i] > threshold
    return order[np.asarray(keep, dtype=np.int64)]


def limit_period(angle: ArrayLike, period: float = 2 * np.pi, offset: float = 0.5) -> np.ndarray:
    """``angle`` wrapped into [-offset * period, (1 - offset) * period)."""
    return angle - np.floor(angle / period + offset) * period
