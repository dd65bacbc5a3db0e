"""A generic (image folder, label folder) segmentation data set with mmseg-style pipelines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from .common import (
    IGNORE_INDEX,
    DataFormatError,
    SkippingMixin,
    check_on_error,
    label_tensor,
    photometric_distortion,
    random_crop,
    random_flip,
    random_resize,
    read_image,
    read_label,
    rescale_to,
    resize_pair,
    sample_rng,
    to_tensor,
)


@dataclass
class SegPipeline:
    """Training: random resize of ``scale`` by a ratio in ``ratio_range``, random crop (padded with
    ignore where the image is smaller), flip, photometric distortion, normalise. Evaluation: the
    whole image, resized to ``eval_scale`` (keep ratio) when given; the label stays at full size
    (logits are upsampled to it)."""

    scale: tuple[int, int]  # (h, w) reference size
    crop: tuple[int, int]  # (h, w)
    ratio_range: tuple[float, float] = (0.5, 2.0)
    cat_max_ratio: float = 0.75
    photometric: bool = True
    eval_scale: tuple[int, int] | None = None


class SegmentationFolder(SkippingMixin, Dataset):
    """Pairs of (image file, label-id file) mapped through a lookup table to train ids.

    ``lut`` maps every stored id (index) to a train id or 255; ``known`` marks the stored ids the
    data set defines. An id outside it raises :class:`DataFormatError` naming the file and the ids
    (or the sample is skipped with a warning when ``on_error='skip'``).
    """

    def __init__(
        self,
        pairs: list[tuple[Path, Path]],
        lut: np.ndarray,
        known: np.ndarray,
        train: bool,
        pipeline: SegPipeline,
        num_classes: int,
        on_error: str = "raise",
        name: str = "segmentation",
    ):
        self.pairs = list(pairs)
        self.lut = np.asarray(lut, dtype=np.uint8)
        self.known = np.asarray(known, dtype=bool)
        self.train = train
        self.pipeline = pipeline
        self.num_classes = num_classes
        self.on_error = check_on_error(on_error)
        self.name = name

    def __len__(self) -> int:
        return len(self.pairs)

    def map_label(self, raw: np.ndarray, path: str | Path) -> np.ndarray:
        """Stored ids to train ids; an unknown id is a :class:`DataFormatError` naming ``path``."""
        raw = raw.astype(np.int64)
        if raw.min() < 0 or raw.max() >= len(self.known) or not self.known[raw].all():
            values = np.unique(raw)
            bad = [int(v) for v in values if v < 0 or v >= len(self.known) or not self.known[v]]
            raise DataFormatError(
                f"Label map {str(path)!r} holds ids {bad[:20]} outside the {self.name} label "
                f"set; is it the right file type?"
            )
        return self.lut[raw]

    def load_pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Image and train-id label map of sample ``index``, before any transform."""
        img_path, lab_path = self.pairs[index]
        image = read_image(img_path)
        raw = read_label(lab_path)
        if raw.shape[:2] != image.shape[:2]:
            raise DataFormatError(
                f"Image {str(img_path)!r} is {image.shape[1]}x{image.shape[0]} but its label "
                f"{str(lab_path)!r} is {raw.shape[1]}x{raw.shape[0]}."
            )
        return image, self.map_label(raw, lab_path)

    def _load(self, index: int):
        image, label = self.load_pair(index)
        p = self.pipeline
        if self.train:
            rng = sample_rng()
            image, label = random_resize(image, label, p.scale, p.ratio_range, rng)
            image, label = random_crop(image, label, p.crop, rng, p.cat_max_ratio)
            image, label = random_flip(image, label, rng)
            if p.photometric:
                image = photometric_distortion(image, rng)
        elif p.eval_scale is not None:
            size = rescale_to(image.shape[:2], p.eval_scale)
            if size != image.shape[:2]:
                image, _ = resize_pair(image, None, size)
        return to_tensor(image), label_tensor(label)


def ignore_lut(size: int = 256) -> np.ndarray:
    """A lookup table that maps every stored id to the ignore index (fill in the known ids)."""
    return np.full(size, IGNORE_INDEX, dtype=np.uint8)
