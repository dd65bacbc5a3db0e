"""Cityscapes (gtFine): 19 train ids, 255 ignore.

Layout under the root (``CITYSCAPES_ROOT``)::

    leftImg8bit/{train,val,test}/{city}/{city}_{seq:06d}_{frame:06d}_leftImg8bit.png
    gtFine/{train,val,test}/{city}/{city}_{seq:06d}_{frame:06d}_gtFine_labelIds.png

label ids are mapped to train ids with ``cityscapesscripts.helpers.labels`` (the optional extra
``nni-hrnas[cityscapes]``); ids marked ignore there (trainId 255 or -1) become 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import DataRootError, pair_files, resolve_root
from .segmentation import SegmentationFolder, SegPipeline, ignore_lut

ENV_VAR = "CITYSCAPES_ROOT"
NUM_CLASSES = 19
SOURCE = "https://www.cityscapes-dataset.com/ (leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip, free registration)"
IMAGE_SUFFIX = "_leftImg8bit.png"
LABEL_SUFFIX = "_gtFine_labelIds.png"


def label_tables() -> tuple[np.ndarray, np.ndarray]:
    """(lut, known): labelId -> trainId (255 for ignored ids), and which ids exist."""
    try:
        from cityscapesscripts.helpers.labels import labels
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Cityscapes needs cityscapesscripts for its label definitions: "
            'pip install "nni-hrnas[cityscapes]" (or pip install cityscapesscripts).'
        ) from exc
    lut = ignore_lut()
    known = np.zeros(256, dtype=bool)
    for lab in labels:
        if 0 <= lab.id < 256:
            known[lab.id] = True
            lut[lab.id] = lab.trainId if 0 <= lab.trainId < NUM_CLASSES else 255
    return lut, known


def find_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(leftImg8bit, gtFine) paths of ``split``; a one-line error for a missing folder or unpaired file."""
    image_dir = root / "leftImg8bit" / split
    label_dir = root / "gtFine" / split
    for d in (image_dir, label_dir):
        if not d.is_dir():
            raise DataRootError(
                f"Cityscapes: expected the folder {str(d)!r} under the data root {str(root)!r} "
                f"(set {ENV_VAR} to the folder holding leftImg8bit/ and gtFine/). "
                f"Cityscapes comes from {SOURCE}."
            )
    images = {
        str(p.relative_to(image_dir))[: -len(IMAGE_SUFFIX)]: p for p in image_dir.glob(f"*/*{IMAGE_SUFFIX}")
    }
    labels = {
        str(p.relative_to(label_dir))[: -len(LABEL_SUFFIX)]: p for p in label_dir.glob(f"*/*{LABEL_SUFFIX}")
    }
    if not images and not labels:
        raise DataRootError(
            f"Cityscapes: no *{IMAGE_SUFFIX} files in {str(image_dir)!r}/<city>/ and no "
            f"*{LABEL_SUFFIX} files in {str(label_dir)!r}/<city>/."
        )
    return pair_files(images, labels, f"Cityscapes {split}", image_dir, label_dir)


def default_pipeline(smoke: bool = False) -> SegPipeline:
    """The resize and crop sizes of mmseg's Cityscapes recipe, or small ones under smoke."""
    if smoke:
        return SegPipeline(scale=(256, 512), crop=(128, 256), eval_scale=(256, 512))
    return SegPipeline(scale=(1024, 2048), crop=(512, 1024), eval_scale=None)


def Cityscapes(
    root: str | None = None,
    split: str = "train",
    train: bool | None = None,
    pipeline: SegPipeline | None = None,
    on_error: str = "raise",
    smoke: bool = False,
    limit: int | None = None,
) -> SegmentationFolder:
    """The Cityscapes ``split`` as a :class:`SegmentationFolder` ((3, H, W) float, (H, W) int64)."""
    path = resolve_root(root, ENV_VAR, "Cityscapes", "leftImg8bit/ and gtFine/", SOURCE)
    lut, known = label_tables()
    pairs = find_pairs(path, split)
    if limit is not None:
        pairs = pairs[:limit]
    train = split == "train" if train is None else train
    return SegmentationFolder(
        pairs,
        lut,
        known,
        train,
        pipeline or default_pipeline(smoke),
        NUM_CLASSES,
        on_error=on_error,
        name="Cityscapes",
    )
