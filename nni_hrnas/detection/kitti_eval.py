"""KITTI 3D object detection average precision (bird's-eye view and 3D), written from the benchmark's rules.

The rules are those of the official devkit (``evaluate_object_3d_offline``):

* difficulties: easy = 2D box taller than 40 px, fully visible (occlusion 0), truncation <= 0.15;
  moderate = taller than 25 px, occlusion <= 1, truncation <= 0.30; hard = taller than 25 px,
  occlusion <= 2, truncation <= 0.50. A ground-truth car outside the difficulty, or a ``Van``
  (the neighbouring class), is ignored: matching it is neither a true nor a false positive.
* detections whose 2D box is lower than the difficulty's minimum height are ignored;
  detections overlapping a ``DontCare`` region (2D intersection over the detection's box > the
  class's minimum overlap) are not false positives.
* a detection matches a ground truth when their BEV / 3D IoU exceeds 0.7 (cars).

AP interpolates the precision envelope (the best precision at recall >= r) at 40 recall points
1/40 .. 1 (``R40``, the benchmark's metric since 2019) and 11 points 0, 0.1 .. 1 (``R11``, the
older papers'). The devkit samples 41 score thresholds and takes the i-th as recall i/40, which
is exact only with many ground-truth boxes; here the thresholds are the scores at which the
matched recall reaches each sample point, so small validation sets get the value of the definition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .boxes import as_boxes, bev_iou, iou_3d

DIFFICULTIES = ("easy", "moderate", "hard")
MIN_HEIGHT = (40.0, 25.0, 25.0)
MAX_OCCLUSION = (0, 1, 2)
MAX_TRUNCATION = (0.15, 0.3, 0.5)
NEIGHBOUR_CLASS = {"car": "van", "pedestrian": "person_sitting"}
MIN_OVERLAP = {"car": 0.7, "pedestrian": 0.5, "cyclist": 0.5}
METRICS = ("bev", "3d")
R40 = np.arange(1, 41) / 40.0
R11 = np.arange(0, 11) / 10.0


@dataclass
class Annotations:
    """The labelled objects of one frame: class names, LiDAR boxes (N, 7), 2D image boxes (N, 4)
    ``x1, y1, x2, y2``, truncation (0..1) and occlusion (0..3) as in KITTI's label files."""

    names: list[str]
    boxes: np.ndarray
    bbox: np.ndarray
    truncated: np.ndarray
    occluded: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.names)
        self.boxes = as_boxes(self.boxes) if n else np.zeros((0, 7))
        self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(n, 4)
        self.truncated = np.asarray(self.truncated, dtype=np.float64).reshape(n)
        self.occluded = np.asarray(self.occluded, dtype=np.int64).reshape(n)
        if len(self.boxes) != n:
            raise ValueError(f"{n} names but {len(self.boxes)} boxes")

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class Detections:
    """One frame's detections of one class: LiDAR boxes (M, 7), scores (M,), 2D image boxes (M, 4)."""

    boxes: np.ndarray
    scores: np.ndarray
    bbox: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.boxes = as_boxes(self.boxes)
        self.scores = np.asarray(self.scores, dtype=np.float64).reshape(len(self.boxes))
        if self.bbox is None:  # no image: every detection counts as tall enough
            self.bbox = np.tile([0.0, 0.0, 1e4, 1e4], (len(self.boxes), 1))
        self.bbox = np.asarray(self.bbox, dtype=np.float64).reshape(len(self.boxes), 4)


def _overlap_over_first(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """2D intersection over the area of the first box (the devkit's ``boxoverlap(a, b, 0)``)."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    return inter / np.maximum(area, 1e-12)[:, None]


@dataclass
class _Frame:
    overlaps: np.ndarray  # (M, G) detections x kept ground truths
    ignored_gt: np.ndarray  # (G,) 0 counted, 1 ignored (matching is neutral)
    ignored_det: np.ndarray  # (M,) 0 counted, 1 ignored
    scores: np.ndarray
    dc_overlap: np.ndarray  # (M, D) over DontCare regions


def _match(f: _Frame, threshold: float, min_overlap: float, compute_fp: bool):
    """The devkit's ``computeStatistics`` for one frame: (tp, fp, fn, scores of the true positives)."""
    m, g = f.overlaps.shape
    assigned = np.zeros(m, dtype=bool)
    below = f.scores < threshold
    tp = fn = 0
    tp_scores = []
    for i in range(g):
        cand = ~assigned & ~below & (f.overlaps[:, i] > min_overlap)
        j = -1
        if not compute_fp:
            if cand.any():
                j = int(np.argmax(np.where(cand, f.scores, -np.inf)))
        else:
            counted = cand & (f.ignored_det == 0)
            if counted.any():
                j = int(np.argmax(np.where(counted, f.overlaps[:, i], -np.inf)))
            elif cand.any():
                j = int(np.argmax(cand))
        if j < 0:
            fn += f.ignored_gt[i] == 0
        elif f.ignored_gt[i] == 1 or f.ignored_det[j] == 1:
            assigned[j] = True
        else:
            tp += 1
            tp_scores.append(f.scores[j])
            assigned[j] = True
    fp = 0
    if compute_fp:
        free = ~assigned & (f.ignored_det == 0) & ~below
        fp = int(free.sum())
        for d in range(f.dc_overlap.shape[1]):  # detections in DontCare regions are not false positives
            stuff = free & (f.dc_overlap[:, d] > min_overlap)
            fp -= int(stuff.sum())
            free &= ~stuff
    return tp, fp, int(fn), tp_scores


def _frames(gts, dets, metric: str, difficulty: int, cls: str) -> tuple[list[_Frame], int]:
    cls = cls.lower()
    neighbour = NEIGHBOUR_CLASS.get(cls)
    frames, num_gt = [], 0
    for gt, det in zip(gts, dets, strict=True):
        names = [n.lower() for n in gt.names]
        valid = np.array([1 if n == cls else 0 if n == neighbour else -1 for n in names], dtype=np.int64)
        height = gt.bbox[:, 3] - gt.bbox[:, 1]
        ignore = (
            (gt.occluded > MAX_OCCLUSION[difficulty])
            | (gt.truncated > MAX_TRUNCATION[difficulty])
            | (height <= MIN_HEIGHT[difficulty])
        )
        keep = valid >= 0
        ignored_gt = np.where((valid == 1) & ~ignore, 0, 1)[keep]
        num_gt += int((ignored_gt == 0).sum())
        dontcare = gt.bbox[np.array([n == "dontcare" for n in names], dtype=bool)]
        det_height = det.bbox[:, 3] - det.bbox[:, 1]
        ignored_det = (det_height < MIN_HEIGHT[difficulty]).astype(np.int64)
        overlap_fn = bev_iou if metric == "bev" else iou_3d
        overlaps = (
            overlap_fn(det.boxes, gt.boxes[keep])
            if len(det.boxes) and keep.any()
            else np.zeros((len(det.boxes), int(keep.sum())))
        )
        frames.append(
            _Frame(
                overlaps,
                ignored_gt,
                ignored_det,
                det.scores,
                _overlap_over_first(det.bbox, dontcare) if len(dontcare) else np.zeros((len(det.boxes), 0)),
            )
        )
    return frames, num_gt


def precision_recall(
    gts: list[Annotations],
    dets: list[Detections],
    metric: str = "3d",
    difficulty: str = "moderate",
    cls: str = "Car",
) -> tuple[np.ndarray, np.ndarray, int]:
    """Precision and recall at the score thresholds that reach each R40 / R11 recall sample point,
    and the number of counted ground-truth boxes."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, not {difficulty!r}")
    if len(gts) != len(dets):
        raise ValueError(f"{len(gts)} annotated frames but {len(dets)} frames of detections")
    min_overlap = MIN_OVERLAP.get(cls.lower(), 0.5)
    frames, num_gt = _frames(gts, dets, metric, DIFFICULTIES.index(difficulty), cls)
    if num_gt == 0:
        return np.zeros(0), np.zeros(0), 0
    scores = sorted((s for f in frames for s in _match(f, -math.inf, min_overlap, False)[3]), reverse=True)
    if not scores:
        return np.zeros(0), np.zeros(0), num_gt
    # the m-th best true-positive score is the lowest threshold at which m boxes are found
    needed = {max(1, math.ceil(r * num_gt - 1e-9)) for r in np.concatenate([R40, R11])}
    thresholds = sorted({scores[m - 1] for m in needed if m <= len(scores)}, reverse=True)
    precision, recall = [], []
    for t in thresholds:
        tp = fp = fn = 0
        for f in frames:
            a, b, c, _ = _match(f, t, min_overlap, True)
            tp, fp, fn = tp + a, fp + b, fn + c
        precision.append(tp / max(tp + fp, 1))
        recall.append(tp / max(tp + fn, 1))
    return np.asarray(precision), np.asarray(recall), num_gt


def interpolated_ap(precision: np.ndarray, recall: np.ndarray, points: np.ndarray) -> float:
    """100 x the mean over ``points`` of the best precision at recall >= each point."""
    values = [
        float(precision[recall >= r - 1e-9].max()) if (recall >= r - 1e-9).any() else 0.0 for r in points
    ]
    return 100.0 * float(np.mean(values))


def kitti_ap(
    gts: list[Annotations], dets: list[Detections], cls: str = "Car", metrics: tuple[str, ...] = METRICS
) -> dict[str, float]:
    """``{'{metric}_{difficulty}_{R40|R11}': AP}`` for every metric and difficulty (NaN: no such boxes)."""
    out: dict[str, float] = {}
    for metric in metrics:
        for difficulty in DIFFICULTIES:
            precision, recall, num_gt = precision_recall(gts, dets, metric, difficulty, cls)
            for name, points in (("R40", R40), ("R11", R11)):
                out[f"{metric}_{difficulty}_{name}"] = (
                    interpolated_ap(precision, recall, points) if num_gt else float("nan")
                )
    return out
