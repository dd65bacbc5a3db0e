"""Shared pieces of the data sets: roots, image reading, bad-input handling, numpy transforms.

Everything here works on numpy arrays (H, W, 3) uint8 images and (H, W) uint8 label maps, so that
no torchvision is needed. Tensors are made at the very end (:func:`to_tensor`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IGNORE_INDEX = 255
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass(frozen=True)
class Normalisation:
    """How a data set turns its images into the network's input: ``((pixels) - mean) / std`` per
    channel, ``pixels`` saying what the values are before (what a deployed model's caller applies)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    pixels: str


#: The real image tasks' normalisation (ImageNet statistics of RGB values in [0, 1]).
IMAGENET_NORMALISATION = Normalisation(
    tuple(float(v) for v in IMAGENET_MEAN), tuple(float(v) for v in IMAGENET_STD), "RGB values / 255"
)

#: what a data set does with a file it cannot use (a truncated image, unknown label ids):
#: ``'raise'`` (the default) stops with an error naming the file; ``'skip'`` warns once per file and
#: serves the next usable sample instead. A sample is never served with a wrong label.
ON_ERROR_CHOICES = ("raise", "skip")


class DataRootError(FileNotFoundError):
    """The data root is missing or does not hold the expected layout."""


class DataFormatError(ValueError):
    """A file of the data set cannot be used as it is (truncated, unknown label ids, unpaired)."""


def smoke_mode() -> bool:
    """True when ``HRNAS_SMOKE=1``: everything shrinks to a check of a minute."""
    return os.environ.get("HRNAS_SMOKE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_root(
    root: str | os.PathLike | None,
    env_var: str,
    name: str,
    expected: str,
    source: str,
    config_key: str = "root",
) -> Path:
    """The data root from the argument, else the environment variable, else a clear error.

    ``expected`` names the sub-folder that must exist under the root (e.g. ``leftImg8bit``).
    """
    how = (
        f"Pass it as the `{config_key}` argument (e.g. get_task(...).make_evaluator(root=...)) or set "
        f"the environment variable {env_var}."
    )
    if root is None or str(root) == "":
        root = os.environ.get(env_var) or None
        if root is None:
            raise DataRootError(
                f"No data root given for {name}. {how} The folder must contain {expected}. "
                f"{name} comes from {source}; it cannot be downloaded automatically."
            )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DataRootError(
            f"The {name} data root {str(path)!r} does not exist or is not a folder. {how} "
            f"It must contain {expected}. {name} comes from {source}."
        )
    return path


def check_on_error(on_error: str) -> str:
    """``on_error`` if it is one of ``'raise'``, ``'skip'``; a ``ValueError`` naming the choices if not."""
    if on_error not in ON_ERROR_CHOICES:
        raise ValueError(f"on_error must be one of {ON_ERROR_CHOICES}, not {on_error!r}")
    return on_error


def read_image(path: str | os.PathLike, mode: str = "RGB") -> np.ndarray:
    """Read an image fully as ``mode``: grayscale, palette, CMYK and RGBA become RGB.

    RGBA is composited on black (the alpha channel is dropped). A truncated or unreadable file
    raises :class:`DataFormatError` naming it (PIL's ``LOAD_TRUNCATED_IMAGES`` is never set).
    """
    try:
        with Image.open(path) as img:
            img.load()
            if mode == "RGB" and img.mode != "RGB":
                if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                    img = img.convert("RGBA")
                    background = Image.new("RGBA", img.size, (0, 0, 0, 255))
                    img = Image.alpha_composite(background, img)
                img = img.convert("RGB")
            return np.asarray(img)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataFormatError(
            f"Cannot read image {str(path)!r} ({type(exc).__name__}: {exc}); the file may "
            f"be truncated or corrupt."
        ) from exc


def read_label(path: str | os.PathLike) -> np.ndarray:
    """Read a label map as it is stored (no palette conversion): (H, W) integer ids."""
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("RGB", "RGBA"):
                raise DataFormatError(
                    f"Label map {str(path)!r} is {img.mode}; expected a single-channel "
                    f"id image (mode L, P or I)."
                )
            arr = np.asarray(img)
    except DataFormatError:
        raise
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
        raise DataFormatError(
            f"Cannot read label map {str(path)!r} ({type(exc).__name__}: {exc}); the file "
            f"may be truncated or corrupt."
        ) from exc
    return arr


class SkippingMixin:
    """``__getitem__`` with the documented ``on_error`` behaviour.

    Subclasses implement ``_load(index)`` and have ``on_error`` and ``__len__``.
    """

    on_error: str = "raise"

    def __getitem__(self, index: int):
        n = len(self)  # type: ignore[arg-type]
        bad = getattr(self, "_bad_indices", None)
        if bad is None:
            bad = self._bad_indices = set()
        for attempt in range(n):
            i = (index + attempt) % n
            if i in bad:
                continue
            try:
                return self._load(i)  # type: ignore[attr-defined]
            except DataFormatError as exc:
                if self.on_error == "raise":
                    raise DataFormatError(
                        f'{exc} (set on_error="skip" to skip such samples with a warning)'
                    ) from exc
                bad.add(i)
                warnings.warn(f"Skipping sample {i}: {exc}", RuntimeWarning, stacklevel=2)
        raise DataFormatError(f"No usable sample left in {type(self).__name__}: every file failed to load.")


def pair_files(
    images: dict[str, Path], labels: dict[str, Path], what: str, image_dir: Path, label_dir: Path
) -> list[tuple[Path, Path]]:
    """Pair images and labels by key; name the unpaired files in the error."""
    only_images = sorted(set(images) - set(labels))
    only_labels = sorted(set(labels) - set(images))
    problems = []
    if only_images:
        names = ", ".join(str(images[k]) for k in only_images[:10])
        more = f" and {len(only_images) - 10} more" if len(only_images) > 10 else ""
        problems.append(
            f"{len(only_images)} image(s) under {str(image_dir)!r} have no label under "
            f"{str(label_dir)!r}: {names}{more}"
        )
    if only_labels:
        names = ", ".join(str(labels[k]) for k in only_labels[:10])
        more = f" and {len(only_labels) - 10} more" if len(only_labels) > 10 else ""
        problems.append(
            f"{len(only_labels)} label file(s) under {str(label_dir)!r} have no image under "
            f"{str(image_dir)!r}: {names}{more}"
        )
    if problems:
        raise DataFormatError(f"{what}: " + "; ".join(problems))
    return [(images[k], labels[k]) for k in sorted(images)]


# ---------------------------------------------------------------------------------------------
# numpy transforms for segmentation (image uint8 (H, W, 3), label uint8 (H, W))
# ---------------------------------------------------------------------------------------------

#: An image and its label map (None for an image alone), as the transforms take and return them.
ImageLabel = tuple[np.ndarray, np.ndarray | None]


def resize_pair(image: np.ndarray, label: np.ndarray | None, size_hw: tuple[int, int]) -> ImageLabel:
    """Bilinear for the image, nearest for the label."""
    h, w = size_hw
    img = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    lab = None if label is None else np.asarray(Image.fromarray(label).resize((w, h), Image.NEAREST))
    return img, lab


def rescale_to(image_hw: tuple[int, int], scale_hw: tuple[int, int]) -> tuple[int, int]:
    """mmseg ``keep_ratio`` rescale: the largest size fitting into ``scale`` (long, short) edges."""
    h, w = image_hw
    long_edge, short_edge = max(scale_hw), min(scale_hw)
    factor = min(long_edge / max(h, w), short_edge / min(h, w))
    return max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5))


def random_resize(
    image: np.ndarray,
    label: np.ndarray | None,
    scale_hw: tuple[int, int],
    ratio_range: tuple[float, float],
    rng: np.random.Generator,
) -> ImageLabel:
    """mmseg's ``Resize`` with ``ratio_range``: ``scale_hw`` times a random ratio, aspect ratio kept."""
    ratio = rng.uniform(*ratio_range)
    target = (int(scale_hw[0] * ratio), int(scale_hw[1] * ratio))
    return resize_pair(image, label, rescale_to(image.shape[:2], target))


def pad_to(
    image: np.ndarray, label: np.ndarray | None, size_hw: tuple[int, int], pad_label: int = IGNORE_INDEX
) -> ImageLabel:
    """Pad at the bottom and right up to ``size_hw`` (image with 0, label with ``pad_label``)."""
    h, w = image.shape[:2]
    ph, pw = max(size_hw[0] - h, 0), max(size_hw[1] - w, 0)
    if ph == 0 and pw == 0:
        return image, label
    image = np.pad(image, ((0, ph), (0, pw), (0, 0)), constant_values=0)
    if label is not None:
        label = np.pad(label, ((0, ph), (0, pw)), constant_values=pad_label)
    return image, label


def random_crop(
    image: np.ndarray,
    label: np.ndarray | None,
    size_hw: tuple[int, int],
    rng: np.random.Generator,
    cat_max_ratio: float = 1.0,
    ignore_index: int = IGNORE_INDEX,
) -> ImageLabel:
    """Random crop; images smaller than the crop are padded first (label padded with ignore).

    ``cat_max_ratio < 1`` re-draws the crop (up to 10 times) when one class covers more than that
    share of the crop, as mmseg does.
    """
    image, label = pad_to(image, label, size_hw, ignore_index)
    h, w = image.shape[:2]
    ch, cw = size_hw
    for _ in range(10):
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        if cat_max_ratio >= 1.0 or label is None:
            break
        crop = label[y : y + ch, x : x + cw]
        _, counts = np.unique(crop[crop != ignore_index], return_counts=True)
        if len(counts) > 1 and counts.max() / counts.sum() < cat_max_ratio:
            break
    image = image[y : y + ch, x : x + cw]
    label = None if label is None else label[y : y + ch, x : x + cw]
    return image, label


def random_flip(
    image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator, prob: float = 0.5
) -> ImageLabel:
    """Flip image and label left-right with probability ``prob``."""
    if rng.random() < prob:
        image = image[:, ::-1]
        label = None if label is None else label[:, ::-1]
    return image, label


def photometric_distortion(
    image: np.ndarray,
    rng: np.random.Generator,
    brightness_delta: int = 32,
    contrast_range: tuple[float, float] = (0.5, 1.5),
    saturation_range: tuple[float, float] = (0.5, 1.5),
    hue_delta: int = 18,
) -> np.ndarray:
    """mmseg's PhotoMetricDistortion: brightness, contrast (before or after), saturation, hue."""
    img = image.astype(np.float32)
    if rng.integers(2):
        img = img + rng.uniform(-brightness_delta, brightness_delta)
    contrast_first = bool(rng.integers(2))

    def contrast(x):
        if rng.integers(2):
            x = x * rng.uniform(*contrast_range)
        return x

    if contrast_first:
        img = contrast(img)
    do_sat, do_hue = bool(rng.integers(2)), bool(rng.integers(2))
    if do_sat or do_hue:
        hsv = np.asarray(Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).convert("HSV")).astype(
            np.float32
        )
        if do_sat:
            hsv[..., 1] = hsv[..., 1] * rng.uniform(*saturation_range)
        if do_hue:
            # PIL hue is 0..255 for 0..360 degrees; mmseg's delta is in OpenCV units (0..180)
            hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue_delta, hue_delta) * 256.0 / 180.0) % 256.0
        hsv = np.clip(hsv, 0, 255).astype(np.uint8)
        img = np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB")).astype(np.float32)
    if not contrast_first:
        img = contrast(img)
    return np.clip(img, 0, 255).astype(np.uint8)


def to_tensor(
    image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """(H, W, 3) uint8 -> normalised float (3, H, W)."""
    x = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1).float().div_(255.0)
    mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).view(-1, 1, 1)
    std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).view(-1, 1, 1)
    return (x - mean_t) / std_t


def label_tensor(label: np.ndarray) -> torch.Tensor:
    """A label map as the int64 tensor the losses take."""
    return torch.from_numpy(np.asarray(label).astype(np.int64))


def sample_rng() -> np.random.Generator:
    """A numpy generator for one sample draw, seeded from torch's generator.

    So ``pytorch_lightning.seed_everything`` (and DataLoader worker seeding) make augmentation
    reproducible, and workers draw different numbers.
    """
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
