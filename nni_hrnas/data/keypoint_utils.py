"""Top-down keypoint geometry as HRNet defines it: box -> (center, scale), affine warps, Gaussian
heatmaps, and heatmap -> image coordinates. Pure numpy, shared by the data sets and the evaluator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    import torch

PIXEL_STD = 200.0

# COCO: 17 joints, left/right pairs (0-based), OKS sigmas, upper-body joints
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
COCO_SIGMAS = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)
COCO_UPPER_BODY = tuple(range(11))


def box_to_center_scale(
    box: ArrayLike, aspect_ratio: float, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, w, h) -> center (2,), scale (2,) in units of 200 px, widened to the input aspect."""
    x, y, w, h = [float(v) for v in box]
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32)
    if center[0] != -1:
        scale = scale * padding
    return center, scale


def _rotate(pt, rad):
    sn, cs = np.sin(rad), np.cos(rad)
    return np.array([pt[0] * cs - pt[1] * sn, pt[0] * sn + pt[1] * cs], dtype=np.float64)


def _affine_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 matrix mapping three src points onto three dst points (cv2.getAffineTransform)."""
    a = np.concatenate([src, np.ones((3, 1))], axis=1)  # (3, 3)
    return np.linalg.solve(a, dst).T  # (2, 3)


def get_affine_transform(
    center: ArrayLike,
    scale: ArrayLike,
    rot: float,
    output_size: tuple[int, int],
    shift: tuple[float, float] = (0.0, 0.0),
    inv: bool = False,
) -> np.ndarray:
    """HRNet's get_affine_transform: (image -> output) or, with ``inv``, (output -> image).

    ``output_size`` is (w, h).
    """
    scale_px = np.asarray(scale, dtype=np.float64) * PIXEL_STD
    src_w = scale_px[0]
    dst_w, dst_h = output_size
    rad = np.pi * rot / 180.0
    src_dir = _rotate([0.0, src_w * -0.5], rad)
    dst_dir = np.array([0.0, dst_w * -0.5])
    shift = np.asarray(shift, dtype=np.float64)
    src = np.zeros((3, 2))
    dst = np.zeros((3, 2))
    src[0] = np.asarray(center, dtype=np.float64) + scale_px * shift
    src[1] = src[0] + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    src[2] = src[1] + np.array([-(src[0] - src[1])[1], (src[0] - src[1])[0]])
    dst[2] = dst[1] + np.array([-(dst[0] - dst[1])[1], (dst[0] - dst[1])[0]])
    return _affine_from_points(dst, src) if inv else _affine_from_points(src, dst)


def affine_points(points: np.ndarray, mat: np.ndarray) -> np.ndarray:
    """Apply a 2x3 matrix to (..., 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ mat[:, :2].T + mat[:, 2]


def warp_image(
    image: np.ndarray, center: ArrayLike, scale: ArrayLike, rot: float, output_size: tuple[int, int]
) -> np.ndarray:
    """Crop-and-warp an (H, W, C) uint8 image into ``output_size`` (w, h), bilinear, zero fill."""
    from PIL import Image

    inv = get_affine_transform(center, scale, rot, output_size, inv=True)  # output -> input
    pil = Image.fromarray(image)
    out = pil.transform(
        tuple(int(v) for v in output_size),
        Image.AFFINE,
        data=tuple(inv.reshape(-1)),
        resample=Image.BILINEAR,
        fillcolor=0,
    )
    return np.asarray(out)


def gaussian_heatmaps(
    joints: np.ndarray,
    visible: np.ndarray,
    image_size: tuple[int, int],
    heatmap_size: tuple[int, int],
    sigma: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """HRNet's Gaussian targets: joints (K, 2) in input pixels -> (K, Hh, Wh) heatmaps and (K,) weights.

    A joint whose Gaussian falls wholly outside the heatmap gets weight 0. ``image_size`` and
    ``heatmap_size`` are (w, h).
    """
    num = joints.shape[0]
    wh, hh = int(heatmap_size[0]), int(heatmap_size[1])
    stride = np.array([image_size[0] / wh, image_size[1] / hh])
    mu = np.floor(joints / stride + 0.5).astype(np.int64)  # (K, 2)
    radius = sigma * 3
    ul = mu - radius
    br = mu + radius + 1
    inside = (ul[:, 0] < wh) & (ul[:, 1] < hh) & (br[:, 0] >= 0) & (br[:, 1] >= 0)
    weight = (np.asarray(visible) > 0) & inside
    xs = np.arange(wh)[None, None, :]
    ys = np.arange(hh)[None, :, None]
    mx = mu[:, 0][:, None, None]
    my = mu[:, 1][:, None, None]
    g = np.exp(-((xs - mx) ** 2 + (ys - my) ** 2) / (2 * sigma**2))
    # HRNet truncates the Gaussian to the (2 * 3 sigma + 1) window
    window = (np.abs(xs - mx) <= radius) & (np.abs(ys - my) <= radius)
    heat = np.where(window, g, 0.0).astype(np.float32)
    heat *= weight[:, None, None]
    return heat.reshape(num, hh, wh), weight.astype(np.float32)


def heatmap_maxima(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, H, W) -> coords (N, K, 2) in heatmap pixels with HRNet's quarter offset, maxvals (N, K)."""
    n, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = flat.argmax(axis=2)
    maxvals = flat.max(axis=2)
    px = (idx % w).astype(np.int64)
    py = (idx // w).astype(np.int64)
    coords = np.stack([px, py], axis=-1).astype(np.float64)
    # quarter-pixel shift towards the higher neighbour
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")
    okx = (px > 0) & (px < w - 1)
    oky = (py > 0) & (py < h - 1)
    dx = heatmaps[ni, ki, py, np.clip(px + 1, 0, w - 1)] - heatmaps[ni, ki, py, np.clip(px - 1, 0, w - 1)]
    dy = heatmaps[ni, ki, np.clip(py + 1, 0, h - 1), px] - heatmaps[ni, ki, np.clip(py - 1, 0, h - 1), px]
    coords[..., 0] += np.where(okx, np.sign(dx) * 0.25, 0.0)
    coords[..., 1] += np.where(oky, np.sign(dy) * 0.25, 0.0)
    coords[maxvals <= 0] = np.stack([px, py], axis=-1)[maxvals <= 0]
    return coords, maxvals


def final_predictions(
    heatmaps: np.ndarray, centers: np.ndarray, scales: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (N, K, H, W) -> image coordinates (N, K, 2) and maxvals (N, K) (HRNet get_final_preds)."""
    coords, maxvals = heatmap_maxima(heatmaps)
    h, w = heatmaps.shape[2:]
    out = np.empty_like(coords)
    for i in range(coords.shape[0]):
        mat = get_affine_transform(centers[i], scales[i], 0, (w, h), inv=True)
        out[i] = affine_points(coords[i], mat)
    return out, maxvals


def flip_back(
    heatmaps: np.ndarray | torch.Tensor, flip_pairs: Sequence[Sequence[int]]
) -> np.ndarray | torch.Tensor:
    """Flip (N, K, H, W) heatmaps of a flipped input back, swapping left/right joints."""
    out = heatmaps[..., ::-1].copy() if isinstance(heatmaps, np.ndarray) else heatmaps.flip(-1).clone()
    for a, b in flip_pairs:
        if isinstance(out, np.ndarray):
            out[:, [a, b]] = out[:, [b, a]]
        else:
            out[:, [a, b]] = out[:, [b, a]].clone()
    return out


def oks_iou(
    g: np.ndarray, d: np.ndarray, area_g: float, areas_d: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """OKS between one pose g (K, 3) and poses d (M, K, 3) (no visibility filter: predictions)."""
    var = (sigmas * 2) ** 2
    dx = d[..., 0] - g[None, :, 0]
    dy = d[..., 1] - g[None, :, 1]
    e = (dx**2 + dy**2) / var[None] / ((area_g + areas_d[:, None]) / 2 + np.spacing(1)) / 2
    return np.exp(-e).mean(axis=1)


def oks_nms(
    poses: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray, thresh: float = 0.9
) -> list[int]:
    """Indices kept by greedy OKS non-maximum suppression (HRNet's oks_nms)."""
    order = np.argsort(-scores)
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        if order.size == 1:
            break
        ious = oks_iou(poses[i], poses[order[1:]], areas[i], areas[order[1:]], sigmas)
        order = order[1:][ious <= thresh]
    return keep
