"""COCO person keypoints, top-down (HRNet style).

Layout under the root (``COCO_ROOT``)::

    annotations/person_keypoints_{train,val}2017.json
    {train,val}2017/000000000139.jpg           (the JSON's ``file_name``)

Each sample is one person crop of ``image_size`` (w, h) = (192, 256) or (288, 384), with
Gaussian heatmaps (sigma 2) at 1/4 and per-joint target weights. Training augments with flips
(joint pairs swapped), scale (x[0.65, 1.35]), rotation (+-40 deg, p 0.6) and half-body crops (p 0.3).
Evaluation uses the ground-truth boxes, or the person boxes of a detection-results JSON
(``[{"image_id", "category_id": 1, "bbox": [x, y, w, h], "score"}, ...]``).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset

from .common import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataFormatError,
    DataRootError,
    SkippingMixin,
    check_on_error,
    read_image,
    resolve_root,
    sample_rng,
    to_tensor,
)
from .keypoint_utils import (
    COCO_FLIP_PAIRS,
    COCO_SIGMAS,
    COCO_UPPER_BODY,
    affine_points,
    box_to_center_scale,
    gaussian_heatmaps,
    get_affine_transform,
    warp_image,
)

if TYPE_CHECKING:
    from pycocotools.coco import COCO  # an optional extra: [coco]

ENV_VAR = "COCO_ROOT"
SOURCE = (
    "https://cocodataset.org/ (train2017.zip, val2017.zip and annotations_trainval2017.zip; "
    "detections e.g. from the HRNet repository)"
)
NUM_JOINTS = 17


def load_coco(ann_file: Path) -> COCO:
    """A pycocotools ``COCO`` of ``ann_file``, its prints silenced; without pycocotools, how to install it."""
    try:
        from pycocotools.coco import COCO
    except ImportError as exc:  # pragma: no cover
        raise ImportError('COCO keypoints need pycocotools: pip install "nni-hrnas[coco]"') from exc
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ann_file))


class COCOKeypoints(SkippingMixin, Dataset):
    """Top-down person crops. Items: ``(image (3, h, w), heatmaps (17, h/4, w/4), weights (17, 1), meta)``
    where ``meta`` holds ``center``, ``scale`` (HRNet units of 200 px), ``score``, ``image_id``, ``area``."""

    flip_pairs = COCO_FLIP_PAIRS
    sigmas = COCO_SIGMAS

    def __init__(
        self,
        root: str | None = None,
        split: str = "train",
        train: bool | None = None,
        image_size: tuple[int, int] = (192, 256),
        sigma: float = 2.0,
        detections: str | None = None,
        det_score_thresh: float = 0.0,
        on_error: str = "raise",
        limit: int | None = None,
        scale_factor: float = 0.35,
        rotation_factor: float = 40.0,
        flip: bool = True,
        half_body_prob: float = 0.3,
        num_joints_half_body: int = 8,
    ):
        self.root = resolve_root(
            root, ENV_VAR, "COCO", "annotations/person_keypoints_<split>2017.json and <split>2017/", SOURCE
        )
        self.split = split
        self.train = split == "train" if train is None else train
        self.image_size = tuple(int(v) for v in image_size)  # (w, h)
        self.heatmap_size = (self.image_size[0] // 4, self.image_size[1] // 4)
        self.aspect_ratio = self.image_size[0] / self.image_size[1]
        self.sigma = sigma
        self.on_error = check_on_error(on_error)
        self.scale_factor, self.rotation_factor, self.flip = scale_factor, rotation_factor, flip
        self.half_body_prob, self.num_joints_half_body = half_body_prob, num_joints_half_body
        ann_file = self.root / "annotations" / f"person_keypoints_{split}2017.json"
        self.image_dir = self.root / f"{split}2017"
        if not ann_file.is_file():
            raise DataRootError(
                f"COCO: expected the annotation file {str(ann_file)!r} (set {ENV_VAR} to the "
                f"folder holding annotations/ and {split}2017/). COCO comes from {SOURCE}."
            )
        if not self.image_dir.is_dir():
            raise DataRootError(
                f"COCO: expected the image folder {str(self.image_dir)!r}. COCO comes from {SOURCE}."
            )
        self.coco = load_coco(ann_file)
        self.ann_file = ann_file
        for key in ("images", "annotations", "categories"):
            if not isinstance(self.coco.dataset.get(key), list):
                raise DataFormatError(
                    f"COCO: {str(ann_file)!r} has no {key!r} list; is it a COCO keypoints annotation file?"
                )
        cats = (
            self.coco.loadCats(self.coco.getCatIds(catNms=["person"]))
            if self.coco.dataset.get("categories")
            else []
        )
        if not cats:
            raise DataFormatError(
                f'COCO: {str(ann_file)!r} has no "person" category; is it a keypoints file?'
            )
        self.records = (
            self._gt_records() if detections is None else self._det_records(detections, det_score_thresh)
        )
        self._check_images()
        if limit is not None:
            self.records = self.records[:limit]

    # ---- records ---------------------------------------------------------------------------
    def _image_path(self, image_id: int) -> Path:
        return self.image_dir / self.coco.imgs[image_id]["file_name"]

    def _gt_records(self):
        records = []
        for image_id in sorted(self.coco.getImgIds()):
            info = self.coco.imgs[image_id]
            if "width" not in info or "height" not in info:
                raise DataFormatError(
                    f"COCO: image {image_id} in {str(self.ann_file)!r} has no width/height fields."
                )
            width, height = info["width"], info["height"]
            for ann in self.coco.imgToAnns.get(image_id, []):
                if ann.get("category_id") != 1 or ann.get("iscrowd", 0):
                    continue
                kps = np.asarray(ann.get("keypoints", []), dtype=np.float32)
                if kps.size != NUM_JOINTS * 3:
                    raise DataFormatError(
                        f"COCO annotation {ann.get('id')} of image {image_id} has "
                        f"{kps.size} keypoint values, expected {NUM_JOINTS * 3}."
                    )
                kps = kps.reshape(NUM_JOINTS, 3)
                if kps[:, 2].max() <= 0:
                    continue
                if np.any((kps[:, 2] < 0) | (kps[:, 2] > 2)):
                    raise DataFormatError(
                        f"COCO annotation {ann.get('id')}: visibility flags must be 0, 1 or 2."
                    )
                if len(ann.get("bbox") or ()) != 4:
                    raise DataFormatError(
                        f"COCO annotation {ann.get('id')} of image {image_id} in "
                        f"{str(self.ann_file)!r} has no bbox [x, y, w, h]."
                    )
                x, y, w, h = ann["bbox"]
                x1, y1 = max(0.0, x), max(0.0, y)
                x2 = min(width - 1.0, x1 + max(0.0, w - 1))
                y2 = min(height - 1.0, y1 + max(0.0, h - 1))
                if ann.get("area", 0) <= 0 or x2 < x1 or y2 < y1:
                    continue
                center, scale = box_to_center_scale((x1, y1, x2 - x1, y2 - y1), self.aspect_ratio)
                records.append(
                    dict(
                        image_id=image_id,
                        center=center,
                        scale=scale,
                        joints=kps[:, :2].copy(),
                        visible=(kps[:, 2] > 0).astype(np.float32),
                        score=1.0,
                        area=float(ann["area"]),
                    )
                )
        return records

    def _det_records(self, detections: str, thresh: float):
        path = Path(detections)
        if not path.is_file():
            raise FileNotFoundError(f"COCO: the detection-results file {str(path)!r} does not exist.")
        with open(path) as f:
            dets = json.load(f)
        if not isinstance(dets, list):
            raise DataFormatError(f"{str(path)!r}: expected a JSON list of detections (COCO results format).")
        records, unknown = [], set()
        for i, det in enumerate(dets):
            missing = [k for k in ("image_id", "category_id", "bbox", "score") if k not in det]
            if missing:
                raise DataFormatError(f"{str(path)!r}: detection {i} lacks the field(s) {missing}.")
            if det["category_id"] != 1 or det["score"] < thresh:
                continue
            if det["image_id"] not in self.coco.imgs:
                unknown.add(det["image_id"])
                continue
            center, scale = box_to_center_scale(det["bbox"], self.aspect_ratio)
            records.append(
                dict(
                    image_id=det["image_id"],
                    center=center,
                    scale=scale,
                    joints=np.zeros((NUM_JOINTS, 2), np.float32),
                    visible=np.zeros(NUM_JOINTS, np.float32),
                    score=float(det["score"]),
                    area=float(det["bbox"][2] * det["bbox"][3]),
                )
            )
        if unknown:
            raise DataFormatError(
                f"{str(path)!r}: detections refer to image ids not in the annotations: {sorted(unknown)[:10]}"
            )
        return records

    def _check_images(self):
        ids = sorted({r["image_id"] for r in self.records})
        missing_ids = {i for i in ids if not self._image_path(i).is_file()}
        if missing_ids:
            names = ", ".join(str(self._image_path(i)) for i in sorted(missing_ids)[:10])
            msg = (
                f"COCO: {len(missing_ids)} annotated image(s) are missing from {str(self.image_dir)!r}: "
                f"{names}"
            )
            if self.on_error == "raise":
                raise DataFormatError(msg + ' (on_error="skip" drops their annotations with a warning)')
            warnings.warn(msg + "; their annotations are dropped.", RuntimeWarning, stacklevel=3)
            self.records = [r for r in self.records if r["image_id"] not in missing_ids]
        on_disk = {p.name for p in self.image_dir.glob("*.jpg")}
        listed = {img["file_name"] for img in self.coco.imgs.values()}
        extra = sorted(on_disk - listed)
        if extra:
            warnings.warn(
                f"COCO: {len(extra)} image(s) in {str(self.image_dir)!r} are not in the annotation "
                f"file and are ignored: {', '.join(extra[:5])}",
                RuntimeWarning,
                stacklevel=3,
            )

    # ---- samples ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def _half_body(self, joints, visible):
        upper = [j for j in range(NUM_JOINTS) if visible[j] > 0 and j in COCO_UPPER_BODY]
        lower = [j for j in range(NUM_JOINTS) if visible[j] > 0 and j not in COCO_UPPER_BODY]
        rng = self._rng
        chosen = upper if (rng.random() < 0.5 and len(upper) > 2) or len(lower) <= 2 else lower
        if len(chosen) < 2:
            return None
        pts = joints[chosen]
        left, top = pts.min(axis=0)
        right, bottom = pts.max(axis=0)
        w, h = right - left, bottom - top
        center, scale = box_to_center_scale((left, top, w, h), self.aspect_ratio, padding=1.0)
        return center, scale * 1.5

    def _load(self, index: int):
        rec = self.records[index]
        path = self._image_path(rec["image_id"])
        image = read_image(path)
        joints, visible = rec["joints"].copy(), rec["visible"].copy()
        center, scale = rec["center"].copy(), rec["scale"].copy()
        rot = 0.0
        if self.train:
            rng = self._rng = sample_rng()
            if visible.sum() > self.num_joints_half_body and rng.random() < self.half_body_prob:
                hb = self._half_body(joints, visible)
                if hb is not None:
                    center, scale = hb
            sf, rf = self.scale_factor, self.rotation_factor
            scale = scale * np.clip(rng.normal() * sf + 1, 1 - sf, 1 + sf)
            rot = float(np.clip(rng.normal() * rf, -2 * rf, 2 * rf)) if rng.random() <= 0.6 else 0.0
            if self.flip and rng.random() <= 0.5:
                image = image[:, ::-1]
                joints[:, 0] = image.shape[1] - joints[:, 0] - 1
                for a, b in self.flip_pairs:
                    joints[[a, b]] = joints[[b, a]]
                    visible[[a, b]] = visible[[b, a]]
                center[0] = image.shape[1] - center[0] - 1
        crop = warp_image(np.ascontiguousarray(image), center, scale, rot, self.image_size)
        mat = get_affine_transform(center, scale, rot, self.image_size)
        joints_in = affine_points(joints, mat)
        heat, weight = gaussian_heatmaps(joints_in, visible, self.image_size, self.heatmap_size, self.sigma)
        meta = dict(
            center=torch.as_tensor(center, dtype=torch.float32),
            scale=torch.as_tensor(scale, dtype=torch.float32),
            score=torch.tensor(rec["score"], dtype=torch.float32),
            area=torch.tensor(rec["area"], dtype=torch.float32),
            image_id=torch.tensor(rec["image_id"], dtype=torch.long),
            joints=torch.as_tensor(joints_in, dtype=torch.float32),
        )
        return (
            to_tensor(crop, IMAGENET_MEAN, IMAGENET_STD),
            torch.from_numpy(heat),
            torch.from_numpy(weight)[:, None],
            meta,
        )

    def coco_gt(self) -> COCO:
        """The pycocotools ``COCO`` object of the split (for OKS AP)."""
        return self.coco
