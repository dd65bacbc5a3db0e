"""ADE20K (SceneParsing, ADEChallengeData2016): 150 classes; 0 ("other") -> 255, c -> c - 1.

Layout under the root (``ADE20K_ROOT``; the root may also be the folder holding
``ADEChallengeData2016``)::

    ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_%08d.jpg
    ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_%08d.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import DataRootError, pair_files, resolve_root
from .segmentation import SegmentationFolder, SegPipeline, ignore_lut

ENV_VAR = "ADE20K_ROOT"
NUM_CLASSES = 150
SOURCE = "http://sceneparsing.csail.mit.edu/ (ADEChallengeData2016.zip)"
SPLITS = {"train": "training", "training": "training", "val": "validation", "validation": "validation"}


def label_tables() -> tuple[np.ndarray, np.ndarray]:
    """The id-to-train-id table (0 'other' -> ignored, c -> c - 1) and which stored ids are valid."""
    lut = ignore_lut()
    lut[1 : NUM_CLASSES + 1] = np.arange(NUM_CLASSES, dtype=np.uint8)
    known = np.zeros(256, dtype=bool)
    known[: NUM_CLASSES + 1] = True
    return lut, known


def find_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, annotation) paths of ``split``; a one-line error for a missing folder or unpaired file."""
    if (root / "ADEChallengeData2016").is_dir():
        root = root / "ADEChallengeData2016"
    sub = SPLITS.get(split)
    if sub is None:
        raise ValueError(f"ADE20K split must be one of {sorted(SPLITS)}, not {split!r}")
    image_dir = root / "images" / sub
    label_dir = root / "annotations" / sub
    for d in (image_dir, label_dir):
        if not d.is_dir():
            raise DataRootError(
                f"ADE20K: expected the folder {str(d)!r} (set {ENV_VAR} to the folder holding "
                f"ADEChallengeData2016/). ADE20K comes from {SOURCE}."
            )
    images = {p.stem: p for p in image_dir.glob("*.jpg")}
    labels = {p.stem: p for p in label_dir.glob("*.png")}
    if not images and not labels:
        raise DataRootError(
            f"ADE20K: no .jpg images in {str(image_dir)!r} and no .png labels in {str(label_dir)!r}."
        )
    return pair_files(images, labels, f"ADE20K {sub}", image_dir, label_dir)


def default_pipeline(smoke: bool = False) -> SegPipeline:
    """The resize and crop sizes of mmseg's ADE20K recipe, or small ones under smoke."""
    if smoke:
        return SegPipeline(scale=(128, 512), crop=(128, 128), eval_scale=(128, 512))
    return SegPipeline(scale=(512, 2048), crop=(512, 512), eval_scale=(512, 2048))


def ADE20K(
    root: str | None = None,
    split: str = "train",
    train: bool | None = None,
    pipeline: SegPipeline | None = None,
    on_error: str = "raise",
    smoke: bool = False,
    limit: int | None = None,
) -> SegmentationFolder:
    """The ADE20K ``split`` as a :class:`SegmentationFolder` ((3, H, W) float, (H, W) int64)."""
    path = resolve_root(root, ENV_VAR, "ADE20K", "ADEChallengeData2016/{images,annotations}/", SOURCE)
    lut, known = label_tables()
    pairs = find_pairs(path, split)
    if limit is not None:
        pairs = pairs[:limit]
    train = split in ("train", "training") if train is None else train
    return SegmentationFolder(
        pairs,
        lut,
        known,
        train,
        pipeline or default_pipeline(smoke),
        NUM_CLASSES,
        on_error=on_error,
        name="ADE20K",
    )
