"""The embedded default data sets, built from scikit-learn's 1,797 real handwritten digits (8x8).

Everything is made deterministically from a seed and cached as ``.npz`` under ``$HRNAS_CACHE``
(default ``~/.cache/nni_hrnas``). The digit *instances* are split once: 80 % feed the training
canvases, the other 20 % the validation canvases, so validation measures generalisation to unseen
handwriting. Images are single-channel; a sample is normalised as ``(x / 255 - 0.1) / 0.25``.

``digits_seg``
    64x64 canvases holding 2-5 digits each, at sizes from 10 to 40 px (multi-scale), with varied
    aspect and contrast; half of the digits are placed touching or overlapping the previous one.
    Clutter: 2-6 stroke fragments cut from other real digits (labelled background) and mild
    noise. Per-pixel labels: **0 = background, 1 + d = digit d** (11 classes); the thin
    anti-aliased rim of each digit (intensity between 10 % and 35 % of its peak) is 255 (ignore).
    Training canvases are moved by a random offset of up to ``SEG_TRAIN_SHIFT`` pixels in each
    direction at every draw (image and labels alike, the vacated band background): the search and
    its baselines train on a few hundred canvases, which a fixed set lets them memorise.
``digits_cls``
    1x32x32, one digit (18-30 px, jittered placement, 0-2 clutter fragments); 10 classes (d).
``digits_kp``
    1x64x64, one digit (20-44 px, rotated up to +-25 deg) among clutter; **4 keypoints**, the
    extreme ink points: 0 = top-most, 1 = bottom-most, 2 = left-most, 3 = right-most (a point on the
    extreme row/column, at the mean position of its ink pixels; flip pairs (2, 3)). Matches the
    ``digits_kp`` preset (``num_outputs=4``). Heatmaps at 1/4 (16x16), sigma 1; OKS sigmas 0.1 for every keypoint;
    the OKS area is the ink box area.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .common import Normalisation
from .keypoint_utils import gaussian_heatmaps

CACHE_VERSION = 2
DIGITS_MEAN = 0.1
DIGITS_STD = 0.25
NORMALISATION = Normalisation((DIGITS_MEAN,), (DIGITS_STD,), "grey values / 255")
SEG_CANVAS = 64
SEG_NUM_CLASSES = 11
CLS_SIZE = 32
KP_CANVAS = 64
KP_NUM_JOINTS = 4
KP_NAMES = ("top", "bottom", "left", "right")
KP_FLIP_PAIRS = ((2, 3),)
KP_SIGMAS = np.full(KP_NUM_JOINTS, 0.1)
KP_HEATMAP_SIGMA = 1.0
INK = 0.35  # share of a digit's peak intensity that counts as ink (label)
RIM = 0.10  # below INK, above RIM: ignore
#: the largest offset, in pixels, a digits_seg training canvas is moved by at each draw: on 640 fixed
#: canvases the demo's search fit its training images at 0.69 mIoU against 0.31 on validation
#: (benchmarks/BASELINES.md, "The demo's search memorises its 640 canvases")
SEG_TRAIN_SHIFT = 12


def cache_dir() -> Path:
    """Where the generated data sets are cached: ``HRNAS_CACHE``, else ``~/.cache/nni_hrnas`` (created)."""
    d = Path(os.environ.get("HRNAS_CACHE") or Path.home() / ".cache" / "nni_hrnas").expanduser()
    d.mkdir(parents=True, exist_ok=True)
    return d


def _load_sklearn_digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images / 16.0).astype(np.float32), data.target.astype(np.int64)


def _split_instances(seed: int, n: int, val_share: float = 0.2):
    perm = np.random.default_rng([seed, 1]).permutation(n)
    n_val = int(round(n * val_share))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _resize(img: np.ndarray, w: int, h: int, angle: float = 0.0) -> np.ndarray:
    """Bicubic upsampling of a float digit (clipped to [0, 1]), optionally rotated (expanding)."""
    pil = Image.fromarray(img.astype(np.float32), mode="F").resize((max(w, 1), max(h, 1)), Image.BICUBIC)
    if angle:
        pil = pil.rotate(angle, resample=Image.BILINEAR, expand=True, fillcolor=0.0)
    return np.clip(np.asarray(pil), 0.0, 1.0)


def _paste_max(canvas: np.ndarray, patch: np.ndarray, y: int, x: int):
    """Paste ``patch`` at (y, x) with max compositing, clipped to the canvas; returns the window."""
    h, w = canvas.shape
    ph, pw = patch.shape
    y0, x0 = max(y, 0), max(x, 0)
    y1, x1 = min(y + ph, h), min(x + pw, w)
    if y1 <= y0 or x1 <= x0:
        return None
    sub = patch[y0 - y : y1 - y, x0 - x : x1 - x]
    np.maximum(canvas[y0:y1, x0:x1], sub, out=canvas[y0:y1, x0:x1])
    return (slice(y0, y1), slice(x0, x1)), sub


def _clutter(canvas: np.ndarray, pool: np.ndarray, rng: np.random.Generator, count: int, size_range):
    """Stroke fragments: random 3x3..5x5 windows of real digits, upsampled and pasted."""
    h, w = canvas.shape
    for _ in range(count):
        src = pool[rng.integers(len(pool))]
        fh, fw = rng.integers(3, 6, size=2)
        fy, fx = rng.integers(0, 8 - fh + 1), rng.integers(0, 8 - fw + 1)
        frag = src[fy : fy + fh, fx : fx + fw]
        if frag.max() < 0.3:
            continue
        s = rng.uniform(*size_range) / max(fh, fw)
        patch = _resize(frag, int(fw * s), int(fh * s), angle=float(rng.uniform(-90, 90))) * rng.uniform(
            0.5, 1.0
        )
        _paste_max(canvas, patch, int(rng.integers(-2, h - 2)), int(rng.integers(-2, w - 2)))


def _finish(canvas: np.ndarray, rng: np.random.Generator, noise: float = 0.04) -> np.ndarray:
    canvas = canvas + rng.normal(0.0, noise, size=canvas.shape).astype(np.float32)
    return (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_seg_canvas(
    pool_images: np.ndarray, pool_labels: np.ndarray, rng: np.random.Generator, size: int = SEG_CANVAS
) -> tuple[np.ndarray, np.ndarray]:
    """A canvas of 2-5 digits of the pool among clutter, and its label map (0 background, 1 + d digit d,
    255 ignored rim)."""
    canvas = np.zeros((size, size), np.float32)
    label = np.zeros((size, size), np.uint8)
    _clutter(canvas, pool_images, rng, int(rng.integers(2, 7)), (6, 14))
    n = int(rng.integers(2, 6))
    prev = None
    for _ in range(n):
        k = rng.integers(len(pool_images))
        digit, cls = pool_images[k], int(pool_labels[k])
        s = float(np.exp(rng.uniform(np.log(10), np.log(40))))
        dh = int(round(s))
        dw = int(round(s * rng.uniform(0.7, 1.1)))
        patch = _resize(digit, dw, dh) * rng.uniform(0.6, 1.0)
        peak = patch.max()
        if prev is not None and rng.random() < 0.5:
            py, px, ph, pw = prev
            x = px + int(pw * rng.uniform(0.55, 0.95))
            y = py + int((ph - dh) * 0.5 + rng.uniform(-0.2, 0.2) * ph)
        else:
            y = int(rng.integers(-dh // 6, size - dh + dh // 6 + 1))
            x = int(rng.integers(-dw // 6, size - dw + dw // 6 + 1))
        res = _paste_max(canvas, patch, y, x)
        if res is None:
            continue
        (sy, sx), sub = res
        ink = sub > INK * peak
        rim = (sub > RIM * peak) & ~ink
        window = label[sy, sx]
        window[rim & (window == 0)] = 255
        window[ink] = cls + 1
        prev = (y, x, dh, dw)
    return _finish(canvas, rng), label


def make_cls_image(
    digit: np.ndarray, rng: np.random.Generator, size: int = CLS_SIZE, pool: np.ndarray | None = None
) -> np.ndarray:
    """One digit, scaled and placed at random, over a little clutter from ``pool`` if given."""
    canvas = np.zeros((size, size), np.float32)
    if pool is not None:
        _clutter(canvas, pool, rng, int(rng.integers(0, 3)), (4, 8))
    s = rng.uniform(18, 30)
    dh, dw = int(round(s)), int(round(s * rng.uniform(0.75, 1.05)))
    patch = _resize(digit, dw, dh) * rng.uniform(0.6, 1.0)
    _paste_max(canvas, patch, int(rng.integers(0, size - dh + 1)), int(rng.integers(0, size - dw + 1)))
    return _finish(canvas, rng)


def make_kp_image(
    digit: np.ndarray, rng: np.random.Generator, pool: np.ndarray, size: int = KP_CANVAS
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One digit among clutter; keypoints (4, 2) in canvas pixels (x, y) and the ink box (x, y, w, h);
    None when the digit left no ink on the canvas."""
    s = rng.uniform(20, 44)
    dh, dw = int(round(s)), int(round(s * rng.uniform(0.75, 1.05)))
    patch = _resize(digit, dw, dh, angle=float(rng.uniform(-25, 25))) * rng.uniform(0.6, 1.0)
    ph, pw = patch.shape
    y = int(rng.integers(-ph // 10, max(size - ph + ph // 10, -ph // 10) + 1))
    x = int(rng.integers(-pw // 10, max(size - pw + pw // 10, -pw // 10) + 1))
    digit_layer = np.zeros((size, size), np.float32)
    _paste_max(digit_layer, patch, y, x)
    canvas = np.zeros((size, size), np.float32)
    _clutter(canvas, pool, rng, int(rng.integers(2, 6)), (5, 12))
    canvas = np.maximum(canvas, digit_layer)
    ink = digit_layer > INK * max(float(digit_layer.max()), 1e-6)
    ys, xs = np.nonzero(ink)
    if len(ys) == 0:
        return None
    top = [float(xs[ys == ys.min()].mean()), float(ys.min())]
    bottom = [float(xs[ys == ys.max()].mean()), float(ys.max())]
    left = [float(xs.min()), float(ys[xs == xs.min()].mean())]
    right = [float(xs.max()), float(ys[xs == xs.max()].mean())]
    kps = np.array([top, bottom, left, right], np.float32)
    box = np.array([xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1], np.float32)
    return _finish(canvas, rng), kps, box


def _cached(name: str, seed: int, sizes: tuple[int, int], build):
    key = hashlib.sha1(f"{name}-{CACHE_VERSION}-{seed}-{sizes}".encode()).hexdigest()[:10]
    path = cache_dir() / f"{name}_v{CACHE_VERSION}_seed{seed}_{sizes[0]}x{sizes[1]}_{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            path.unlink(missing_ok=True)  # a damaged cache file is rebuilt
    arrays = build()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    os.replace(tmp, path)
    return arrays


def _build(kind: str, seed: int, n_train: int, n_val: int):
    images, targets = _load_sklearn_digits()
    train_idx, val_idx = _split_instances(seed, len(images))
    out = {}
    for split, idx, n, salt in (("train", train_idx, n_train, 2), ("val", val_idx, n_val, 3)):
        rng = np.random.default_rng([seed, salt])
        pool, pool_y = images[idx], targets[idx]
        if kind == "seg":
            pairs = [make_seg_canvas(pool, pool_y, rng) for _ in range(n)]
            out[f"{split}_x"] = np.stack([p[0] for p in pairs])
            out[f"{split}_y"] = np.stack([p[1] for p in pairs])
        elif kind == "cls":
            order = np.concatenate([rng.permutation(len(pool)) for _ in range(n // len(pool) + 1)])[:n]
            out[f"{split}_x"] = np.stack([make_cls_image(pool[i], rng, pool=pool) for i in order])
            out[f"{split}_y"] = pool_y[order]
        else:
            xs, kps, boxes, ys = [], [], [], []
            order = np.concatenate([rng.permutation(len(pool)) for _ in range(n // len(pool) + 2)])
            for i in order:
                res = make_kp_image(pool[i], rng, pool)
                if res is None:
                    continue
                xs.append(res[0])
                kps.append(res[1])
                boxes.append(res[2])
                ys.append(pool_y[i])
                if len(xs) == n:
                    break
            out[f"{split}_x"], out[f"{split}_kp"] = np.stack(xs), np.stack(kps)
            out[f"{split}_box"], out[f"{split}_y"] = np.stack(boxes), np.asarray(ys)
    return out


DEFAULT_SIZES = {"seg": (3000, 500), "cls": (4000, 720), "kp": (3000, 500)}
SMOKE_SIZES = {"seg": (256, 128), "cls": (256, 128), "kp": (256, 128)}


def load_arrays(
    kind: str, seed: int = 0, smoke: bool = False, sizes: tuple[int, int] | None = None
) -> dict[str, np.ndarray]:
    """The ``kind`` ('seg', 'cls', 'kp') arrays of ``sizes`` (train, val) samples, built once and cached."""
    sizes = sizes or (SMOKE_SIZES if smoke else DEFAULT_SIZES)[kind]
    return _cached(f"digits_{kind}", seed, tuple(sizes), lambda: _build(kind, seed, *sizes))


def _normalise(x: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(x).float().div_(255.0).sub_(DIGITS_MEAN).div_(DIGITS_STD)).unsqueeze(-3)


def shift_canvas(
    image: torch.Tensor, label: torch.Tensor, dy: int, dx: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` (C, H, W, normalised) and ``label`` (H, W) moved ``dy`` pixels down and ``dx`` right;
    what moves out is dropped, the vacated band is blank canvas (grey value 0) labelled background."""
    height, width = label.shape
    moved_image = torch.full_like(image, -DIGITS_MEAN / DIGITS_STD)  # grey value 0, normalised
    moved_label = torch.zeros_like(label)
    rows, cols = height - abs(dy), width - abs(dx)
    if rows > 0 and cols > 0:
        src = (slice(max(-dy, 0), max(-dy, 0) + rows), slice(max(-dx, 0), max(-dx, 0) + cols))
        dst = (slice(max(dy, 0), max(dy, 0) + rows), slice(max(dx, 0), max(dx, 0) + cols))
        moved_image[..., dst[0], dst[1]] = image[..., src[0], src[1]]
        moved_label[dst] = label[src]
    return moved_image, moved_label


class DigitsSegmentation(Dataset):
    """Items: ``(image (1, 64, 64) float, label (64, 64) int64)``; 0 background, 1 + d digit d, 255 ignore.

    ``shift``: each draw moves the canvas by a random offset of up to that many pixels in each
    direction (:func:`shift_canvas`; torch's global generator, so a seeded run draws the same offsets).
    """

    num_classes = SEG_NUM_CLASSES

    def __init__(self, images: np.ndarray, labels: np.ndarray, shift: int = 0):
        self.images = _normalise(images)
        self.labels = torch.from_numpy(labels.astype(np.int64))
        self.shift = shift

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        if not self.shift:
            return self.images[i], self.labels[i]
        dy, dx = torch.randint(-self.shift, self.shift + 1, (2,)).tolist()
        return shift_canvas(self.images[i], self.labels[i], dy, dx)


class DigitsClassification(DigitsSegmentation):
    """Items: ``(image (1, 32, 32) float, label int64)``, the digit (no shift: its label is no map)."""

    num_classes = 10


class DigitsKeypoints(Dataset):
    """Items as :class:`~nni_hrnas.data.coco_keypoints.COCOKeypoints`: ``(image (1, 64, 64),
    heatmaps (4, 16, 16), weights (4, 1), meta)``; the crop is the whole canvas."""

    flip_pairs = KP_FLIP_PAIRS
    sigmas = KP_SIGMAS
    num_joints = KP_NUM_JOINTS

    def __init__(
        self, images: np.ndarray, keypoints: np.ndarray, boxes: np.ndarray, train: bool = False
    ) -> None:
        self.images = _normalise(images)
        self.keypoints = keypoints.astype(np.float32)
        self.boxes = boxes.astype(np.float32)
        self.train = train
        heat, weight = zip(
            *[
                gaussian_heatmaps(
                    k,
                    np.ones(KP_NUM_JOINTS),
                    (KP_CANVAS, KP_CANVAS),
                    (KP_CANVAS // 4, KP_CANVAS // 4),
                    KP_HEATMAP_SIGMA,
                )
                for k in self.keypoints
            ],
            strict=True,
        )
        self.heatmaps = torch.from_numpy(np.stack(heat))
        self.weights = torch.from_numpy(np.stack(weight))[..., None]
        self._center = torch.tensor([KP_CANVAS / 2, KP_CANVAS / 2])
        self._scale = torch.tensor([KP_CANVAS / 200.0, KP_CANVAS / 200.0])
        self._coco = None

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        box = self.boxes[i]
        meta = dict(
            center=self._center,
            scale=self._scale,
            score=torch.tensor(1.0),
            area=torch.tensor(float(box[2] * box[3])),
            image_id=torch.tensor(i),
            joints=torch.from_numpy(self.keypoints[i]),
        )
        return self.images[i], self.heatmaps[i], self.weights[i], meta

    def coco_gt(self):
        """A pycocotools ``COCO`` object of the ground truth (one 'digit' per image)."""
        if self._coco is None:
            from pycocotools.coco import COCO

            anns = []
            for i, (kp, box) in enumerate(zip(self.keypoints, self.boxes, strict=True)):
                flat = np.concatenate([kp, np.full((KP_NUM_JOINTS, 1), 2.0)], axis=1).reshape(-1)
                anns.append(
                    dict(
                        id=i + 1,
                        image_id=i,
                        category_id=1,
                        keypoints=flat.tolist(),
                        num_keypoints=KP_NUM_JOINTS,
                        area=float(box[2] * box[3]),
                        bbox=box.tolist(),
                        iscrowd=0,
                    )
                )
            dataset = dict(
                images=[
                    dict(id=i, width=KP_CANVAS, height=KP_CANVAS, file_name=f"{i}.png")
                    for i in range(len(self))
                ],
                annotations=anns,
                categories=[
                    dict(id=1, name="digit", supercategory="digit", keypoints=list(KP_NAMES), skeleton=[])
                ],
            )
            coco = COCO()
            coco.dataset = dataset
            with contextlib.redirect_stdout(io.StringIO()):
                coco.createIndex()
            self._coco = coco
        return self._coco


def digits_seg(
    seed: int = 0, smoke: bool = False, sizes: tuple[int, int] | None = None
) -> tuple[DigitsSegmentation, DigitsSegmentation]:
    """(train, val) of the digits segmentation set."""
    a = load_arrays("seg", seed, smoke, sizes)
    return (
        DigitsSegmentation(a["train_x"], a["train_y"], shift=SEG_TRAIN_SHIFT),
        DigitsSegmentation(a["val_x"], a["val_y"]),
    )


def digits_cls(
    seed: int = 0, smoke: bool = False, sizes: tuple[int, int] | None = None
) -> tuple[DigitsClassification, DigitsClassification]:
    """(train, val) of the digits classification set."""
    a = load_arrays("cls", seed, smoke, sizes)
    return DigitsClassification(a["train_x"], a["train_y"]), DigitsClassification(a["val_x"], a["val_y"])


def digits_kp(
    seed: int = 0, smoke: bool = False, sizes: tuple[int, int] | None = None
) -> tuple[DigitsKeypoints, DigitsKeypoints]:
    """(train, val) of the digits keypoints set."""
    a = load_arrays("kp", seed, smoke, sizes)
    return (
        DigitsKeypoints(a["train_x"], a["train_kp"], a["train_box"], True),
        DigitsKeypoints(a["val_x"], a["val_kp"], a["val_box"]),
    )
