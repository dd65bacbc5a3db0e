"""ImageNet in the class-folder layout (``IMAGENET_ROOT``)::

    train/{wnid}/*.JPEG      e.g. train/n01440764/n01440764_10026.JPEG
    val/{wnid}/*.JPEG        e.g. val/n01440764/ILSVRC2012_val_00000293.JPEG

Class indices are the sorted train wnids. Training: random-resized crop (scale 0.08-1, ratio
3/4-4/3, bicubic as the official code) + flip; evaluation: resize the short side to size/0.875 and a
centre crop.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .common import (
    DataFormatError,
    DataRootError,
    SkippingMixin,
    check_on_error,
    read_image,
    resolve_root,
    sample_rng,
    to_tensor,
)

ENV_VAR = "IMAGENET_ROOT"
SOURCE = "https://image-net.org/ (ILSVRC2012 train and val, val sorted into class folders)"
EXTENSIONS = (".jpeg", ".jpg", ".png")


def list_classes(split_dir: Path) -> list[str]:
    """The class folders (wnids) of ``split_dir``, sorted: their order gives the label ids."""
    return sorted(p.name for p in split_dir.iterdir() if p.is_dir())


def scan_split(
    root: Path, split: str, classes: list[str] | None = None
) -> tuple[list[tuple[Path, int]], list[str]]:
    """(path, label id) of every image of ``split`` and the class list; one-line errors for loose images,
    unknown or empty class folders."""
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataRootError(
            f"ImageNet: expected the folder {str(split_dir)!r} (set {ENV_VAR} to the folder "
            f"holding train/ and val/, each with one sub-folder per class). "
            f"ImageNet comes from {SOURCE}."
        )
    loose = sorted(p.name for p in split_dir.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)
    if loose:
        raise DataFormatError(
            f"ImageNet: {len(loose)} image(s) lie directly in {str(split_dir)!r} with no class "
            f"folder, so they have no label: {', '.join(loose[:10])}. Sort them into "
            f"{split}/<wnid>/ folders (e.g. with the ILSVRC2012 validation ground truth)."
        )
    found = list_classes(split_dir)
    if classes is None:
        classes = found
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise DataFormatError(
            f"ImageNet: class folders in {str(split_dir)!r} not present in train/: {unknown[:10]}"
        )
    samples: list[tuple[Path, int]] = []
    empty = []
    for idx, wnid in enumerate(classes):
        d = split_dir / wnid
        files = sorted(p for p in d.iterdir() if p.suffix.lower() in EXTENSIONS) if d.is_dir() else []
        if not files and d.is_dir():
            empty.append(wnid)
        samples.extend((p, idx) for p in files)
    if empty:
        raise DataFormatError(f"ImageNet: class folder(s) without images in {str(split_dir)!r}: {empty[:10]}")
    if not samples:
        raise DataRootError(f"ImageNet: no images under {str(split_dir)!r}/<class>/.")
    return samples, classes


def random_resized_crop_box(
    h: int,
    w: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of torchvision's ``RandomResizedCrop`` box, with its fallback."""
    area = h * w
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            return int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1)), ch, cw
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        ch, cw = h, int(round(h * ratio[1]))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class ImageFolderClassification(SkippingMixin, Dataset):
    """Items: ``(image (3, size, size) float, label int64)``. Training: a random resized crop (bicubic) and a
    flip; evaluation: the short side resized to ``size / crop_pct``, then the centre crop."""

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        classes: list[str],
        train: bool,
        size: int = 224,
        crop_pct: float = 0.875,
        on_error: str = "raise",
    ) -> None:
        self.samples = samples
        self.classes = classes
        self.train = train
        self.size = size
        self.crop_pct = crop_pct
        self.on_error = check_on_error(on_error)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int):
        path, target = self.samples[index]
        img = Image.fromarray(read_image(path))
        s = self.size
        if self.train:
            rng = sample_rng()
            y, x, ch, cw = random_resized_crop_box(img.height, img.width, rng)
            img = img.resize((s, s), Image.BICUBIC, box=(x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            short = int(round(s / self.crop_pct))
            if img.width <= img.height:
                nw, nh = short, max(short, int(round(img.height * short / img.width)))
            else:
                nh, nw = short, max(short, int(round(img.width * short / img.height)))
            img = img.resize((nw, nh), Image.BICUBIC)
            left, top = (nw - s) // 2, (nh - s) // 2
            img = img.crop((left, top, left + s, top + s))
        return to_tensor(np.asarray(img)), torch.tensor(target, dtype=torch.long)


def ImageNet(
    root: str | None = None,
    split: str = "train",
    train: bool | None = None,
    size: int = 224,
    on_error: str = "raise",
    classes: list[str] | None = None,
    limit: int | None = None,
) -> ImageFolderClassification:
    """The ImageNet ``split`` (class folders under the root), labels in the order of train/'s classes."""
    path = resolve_root(root, ENV_VAR, "ImageNet", "train/<wnid>/ and val/<wnid>/", SOURCE)
    if classes is None and split != "train" and (path / "train").is_dir():
        classes = list_classes(path / "train")
    samples, classes = scan_split(path, split, classes)
    if limit is not None:
        rng = np.random.default_rng(0)
        samples = [samples[i] for i in sorted(rng.permutation(len(samples))[:limit])]
    train = split == "train" if train is None else train
    return ImageFolderClassification(samples, classes, train, size=size, on_error=on_error)
