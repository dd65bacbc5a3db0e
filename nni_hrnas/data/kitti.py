"""KITTI 3D object detection (cars) as downloaded, for a PointPillars pipeline.

Layout under the root (``KITTI_ROOT``)::

    ImageSets/train.txt, ImageSets/val.txt      frame ids, one a line (the usual split 1)
    training/velodyne/000000.bin                float32 x, y, z, reflectance
    training/label_2/000000.txt                 15 columns per object (camera frame)
    training/calib/000000.txt                   P0..P3, R0_rect, Tr_velo_to_cam, Tr_imu_to_velo

Labels go to the LiDAR frame as ``(x, y, z, l, w, h, yaw)`` boxes (z the centre); points outside
the left colour camera's view and the pillar range are dropped. Training adds PointPillars'
augmentation: per-box jitter, a flip across the x axis, a global rotation and a global scaling.
A sample is ``(pillars, gt_boxes, index)``: the packed pillar tensor (see
:mod:`nni_hrnas.detection.pillars`), the car boxes padded to ``max_objects`` rows of
``[valid, x, y, z, l, w, h, yaw]``, and the frame's position in the split (its annotations for
the KITTI evaluation come from :meth:`KittiDetection.annotations`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import ArrayLike

from nni_hrnas.detection.boxes import as_boxes, bev_iou, corners_3d, limit_period
from nni_hrnas.detection.kitti_eval import Annotations
from nni_hrnas.detection.pillars import pillarise
from search_spaces.ops.pillars import PillarSettings

from .common import DataFormatError, DataRootError, check_on_error, resolve_root

ENV_VAR = "KITTI_ROOT"
SOURCE = (
    "https://www.cvlibs.net/datasets/kitti/eval_object.php?obj_benchmark=3d (velodyne, calib and "
    "label_2 of the 3D object benchmark), with ImageSets/train.txt and val.txt of split 1"
)
CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare")
CALIB_KEYS = {
    "P0": 12,
    "P1": 12,
    "P2": 12,
    "P3": 12,
    "R0_rect": 9,
    "Tr_velo_to_cam": 12,
    "Tr_imu_to_velo": 12,
}
LABEL_COLUMNS = 15
#: the size of KITTI's left colour images (a few are up to 20 px smaller): the field of view kept
IMAGE_SIZE = (1242, 375)


# ---- files -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The matrices of one calibration file, as 4x4 where they are transforms."""

    P2: np.ndarray
    R0: np.ndarray  # 4x4 rectifying rotation
    velo_to_cam: np.ndarray  # 4x4

    def lidar_to_rect(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) LiDAR points to the rectified camera frame."""
        homo = np.concatenate([points[:, :3], np.ones((len(points), 1))], 1)
        return (homo @ (self.R0 @ self.velo_to_cam).T)[:, :3]

    def rect_to_lidar(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) points of the rectified camera frame to the LiDAR frame (undoes :meth:`lidar_to_rect`)."""
        homo = np.concatenate([points[:, :3], np.ones((len(points), 1))], 1)
        return (homo @ np.linalg.inv(self.R0 @ self.velo_to_cam).T)[:, :3]

    def rect_to_image(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixel coordinates (N, 2) and depths (N,) of rectified-camera points."""
        homo = np.concatenate([points[:, :3], np.ones((len(points), 1))], 1) @ self.P2.T
        depth = homo[:, 2]
        return homo[:, :2] / np.where(np.abs(depth) < 1e-9, 1e-9, depth)[:, None], depth

    def boxes_to_image(self, boxes: ArrayLike, image_size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
        """The 2D boxes (N, 4) of LiDAR boxes projected into the image, clipped to it (KITTI's
        ``x1, y1, x2, y2``); boxes behind the camera get an empty box."""
        corners = corners_3d(boxes).reshape(-1, 3)
        uv, depth = self.rect_to_image(self.lidar_to_rect(corners))
        uv, depth = uv.reshape(-1, 8, 2), depth.reshape(-1, 8)
        w, h = image_size
        out = np.concatenate(
            [np.clip(uv.min(1), 0, [w - 1, h - 1]), np.clip(uv.max(1), 0, [w - 1, h - 1])], 1
        )
        return np.where((depth > 0.1).all(1)[:, None], out, 0.0)

    def in_view(self, points: np.ndarray, image_size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
        """Which LiDAR points project in front of the camera and inside the image."""
        uv, depth = self.rect_to_image(self.lidar_to_rect(points))
        w, h = image_size
        return (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)


def _homogeneous(m: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def read_calib(path: Path) -> Calibration:
    """Parse a KITTI calibration file; a missing matrix or a wrong count of values is a DataFormatError."""
    values: dict[str, np.ndarray] = {}
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        key, sep, rest = line.partition(":")
        if not sep:
            raise DataFormatError(f'{path}:{number}: expected "KEY: values", got {line[:40]!r}')
        try:
            values[key.strip()] = np.array(rest.split(), dtype=np.float64)
        except ValueError:
            raise DataFormatError(
                f"{path}:{number}: {key.strip()} holds a value that is not a number"
            ) from None
    for key, count in CALIB_KEYS.items():
        if key not in values:
            raise DataFormatError(
                f"{path}: the calibration has no {key} matrix (a KITTI calib file has "
                f"{', '.join(CALIB_KEYS)}); is it from the 3D object benchmark?"
            )
        if values[key].size != count:
            raise DataFormatError(f"{path}: {key} has {values[key].size} values, expected {count}")
    return Calibration(
        values["P2"].reshape(3, 4),
        _homogeneous(values["R0_rect"].reshape(3, 3)),
        _homogeneous(values["Tr_velo_to_cam"].reshape(3, 4)),
    )


def read_velodyne(path: Path) -> np.ndarray:
    """(N, 4) float32 points; a size that is not a multiple of 16 bytes is a DataFormatError."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataFormatError(f"Cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if len(raw) % 16:
        raise DataFormatError(
            f"{path}: {len(raw)} bytes is not a multiple of 16 (4 float32 x, y, z, r per point); "
            "the file is truncated or not a KITTI velodyne scan"
        )
    return np.frombuffer(raw, dtype=np.float32).reshape(-1, 4).copy()


@dataclass
class LabelRows:
    """The objects of one label file, camera frame, as the file has them."""

    names: list[str]
    truncated: np.ndarray
    occluded: np.ndarray
    bbox: np.ndarray  # (N, 4)
    hwl: np.ndarray  # (N, 3) height, width, length
    location: np.ndarray  # (N, 3) bottom centre, rectified camera frame
    rotation_y: np.ndarray


def read_labels(path: Path) -> LabelRows:
    """Parse a label_2 file (15 columns; a 16th, the score of a result file, is accepted)."""
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        cols = line.split()
        if not cols:
            continue
        if len(cols) not in (LABEL_COLUMNS, LABEL_COLUMNS + 1):
            raise DataFormatError(
                f"{path}:{number}: {len(cols)} columns, expected {LABEL_COLUMNS} (type, truncated, "
                "occluded, alpha, bbox x4, dimensions h w l, location x y z, rotation_y)"
            )
        if cols[0] not in CLASSES:
            raise DataFormatError(
                f"{path}:{number}: unknown class {cols[0]!r}; KITTI classes: {', '.join(CLASSES)}"
            )
        try:
            rows.append((cols[0], [float(v) for v in cols[1:LABEL_COLUMNS]]))
        except ValueError:
            raise DataFormatError(f"{path}:{number}: a value after the class is not a number") from None
    v = np.array([r[1] for r in rows], dtype=np.float64).reshape(-1, LABEL_COLUMNS - 1)
    return LabelRows(
        [r[0] for r in rows], v[:, 0], v[:, 1].astype(np.int64), v[:, 3:7], v[:, 7:10], v[:, 10:13], v[:, 13]
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise DataFormatError(f"Cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: not a text file") from None


def labels_to_lidar(rows: LabelRows, calib: Calibration) -> np.ndarray:
    """(N, 7) LiDAR boxes of camera-frame labels: centre up half the height, yaw = -ry - pi/2."""
    centre = rows.location.copy()
    centre[:, 1] -= rows.hwl[:, 0] / 2  # camera y points down: the centre is above the bottom
    xyz = calib.rect_to_lidar(centre) if len(centre) else np.zeros((0, 3))
    yaw = limit_period(-rows.rotation_y - np.pi / 2)
    return np.column_stack([xyz, rows.hwl[:, 2], rows.hwl[:, 1], rows.hwl[:, 0], yaw]).reshape(-1, 7)


def lidar_to_label_angle(yaw: ArrayLike) -> np.ndarray:
    """KITTI's rotation_y of a LiDAR yaw (the inverse of :func:`labels_to_lidar`'s)."""
    return limit_period(-np.asarray(yaw) - np.pi / 2)


# ---- the root --------------------------------------------------------------------------------


def frame_ids(root: Path, split: str) -> list[str]:
    """The ids of ``ImageSets/{split}.txt``; a missing or partial layout is a DataRootError naming what lacks."""
    listing = root / "ImageSets" / f"{split}.txt"
    if not listing.is_file():
        raise DataRootError(
            f"KITTI: no {listing} under the data root {str(root)!r}; the root needs ImageSets/"
            f"train.txt and val.txt (split 1) next to training/. KITTI comes from {SOURCE}."
        )
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataRootError(f"KITTI: {listing} lists no frames")
    missing = []
    for sub, ext in (("velodyne", "bin"), ("label_2", "txt"), ("calib", "txt")):
        folder = root / "training" / sub
        if not folder.is_dir():
            raise DataRootError(
                f"KITTI: no folder {folder} (the root needs training/velodyne, training/label_2 and "
                f"training/calib). KITTI comes from {SOURCE}."
            )
        missing += [f"training/{sub}/{i}.{ext}" for i in ids if not (folder / f"{i}.{ext}").is_file()]
    if missing:
        raise DataRootError(
            f"KITTI {split}: {len(missing)} files listed in ImageSets/{split}.txt are missing, "
            f"e.g. {', '.join(missing[:3])}; is the download complete?"
        )
    return ids


# ---- augmentation ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    """PointPillars' training augmentation: per-box jitter (translation N(0, ``box_translation``),
    rotation U(+-``box_rotation``), skipped where it would collide), a flip across the x axis
    with probability ``flip``, a global rotation U(+-``rotation``) and scaling U(``scale``)."""

    box_translation: float = 0.25
    box_rotation: float = math.pi / 20
    flip: float = 0.5
    rotation: float = math.pi / 4
    scale: tuple[float, float] = (0.95, 1.05)


def points_in_boxes(points: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, B) membership of points in LiDAR boxes."""
    if len(boxes) == 0:
        return np.zeros((len(points), 0), dtype=bool)
    d = points[:, None, :3] - boxes[None, :, :3]
    c, s = np.cos(boxes[:, 6]), np.sin(boxes[:, 6])
    lx = d[..., 0] * c + d[..., 1] * s
    ly = -d[..., 0] * s + d[..., 1] * c
    return (
        (np.abs(lx) <= boxes[:, 3] / 2)
        & (np.abs(ly) <= boxes[:, 4] / 2)
        & (np.abs(d[..., 2]) <= boxes[:, 5] / 2)
    )


def _rotate_z(xy: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([xy[:, 0] * c - xy[:, 1] * s, xy[:, 0] * s + xy[:, 1] * c], 1)


def augment(
    points: np.ndarray,
    boxes: np.ndarray,
    aug: Augmentation,
    rng: np.random.Generator,
    others: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented copies of ``points`` (N, 4) and ``boxes`` (B, 7); ``others`` (boxes of other
    classes) move with the scene and block colliding jitter."""
    points, boxes = points.copy(), boxes.copy()
    others = np.zeros((0, 7)) if others is None else others
    inside = points_in_boxes(points, boxes)
    for i in range(len(boxes)):
        moved = boxes[i].copy()
        moved[:3] += rng.normal(0, aug.box_translation, 3)
        turn = rng.uniform(-aug.box_rotation, aug.box_rotation)
        moved[6] += turn
        rest = np.concatenate([np.delete(boxes, i, 0), others])
        if len(rest) and bev_iou(moved[None], rest).max() > 0:
            continue
        sel = inside[:, i]
        local = points[sel, :2] - boxes[i, :2]
        points[sel, :2] = _rotate_z(local, turn) + moved[:2]
        points[sel, 2] += moved[2] - boxes[i, 2]
        boxes[i] = moved
    if rng.random() < aug.flip:
        points[:, 1] = -points[:, 1]
        boxes[:, 1] = -boxes[:, 1]
        boxes[:, 6] = -boxes[:, 6]
    angle = rng.uniform(-aug.rotation, aug.rotation)
    points[:, :2] = _rotate_z(points[:, :2], angle)
    boxes[:, :2] = _rotate_z(boxes[:, :2], angle)
    boxes[:, 6] += angle
    scale = rng.uniform(*aug.scale)
    points[:, :3] *= scale
    boxes[:, :6] *= scale
    boxes[:, 6] = limit_period(boxes[:, 6])
    return points, boxes


# ---- the data set --------------------------------------------------------------------------------


class KittiDetection(torch.utils.data.Dataset):
    """One split of a KITTI-layout root as PointPillars samples (see the module docstring).

    ``on_error='skip'`` replaces an unusable frame by the next one with a warning; the skipped
    ids are counted in ``skipped``. Augmentation runs when ``train`` and ``augmentation`` is set.
    """

    def __init__(
        self,
        root: str | None,
        split: str = "train",
        pillars: PillarSettings | None = None,
        train: bool | None = None,
        augmentation: Augmentation | None = Augmentation(),
        image_size: tuple[int, int] = IMAGE_SIZE,
        max_objects: int = 64,
        limit: int | None = None,
        on_error: str = "raise",
        seed: int = 0,
        env_var: str = ENV_VAR,
        name: str = "KITTI",
    ) -> None:
        self.root = resolve_root(root, env_var, name, "ImageSets/ and training/", SOURCE)
        self.split = split
        self.ids = frame_ids(self.root, split)[:limit]
        self.pillars = pillars or PillarSettings()
        self.train = split == "train" if train is None else train
        self.augmentation = augmentation if self.train else None
        self.image_size = image_size
        self.max_objects = max_objects
        self.on_error = check_on_error(on_error)
        self.seed = seed
        self.skipped: set[str] = set()

    def __len__(self) -> int:
        return len(self.ids)

    def _path(self, sub: str, frame: str, ext: str) -> Path:
        return self.root / "training" / sub / f"{frame}.{ext}"

    def calibration(self, index: int) -> Calibration:
        """The calibration of frame ``index``."""
        return read_calib(self._path("calib", self.ids[index], "txt"))

    def annotations(self, index: int) -> Annotations:
        """Every labelled object of the frame (DontCare included) for :func:`kitti_ap`."""
        frame = self.ids[index]
        rows = read_labels(self._path("label_2", frame, "txt"))
        boxes = labels_to_lidar(rows, self.calibration(index))
        return Annotations(rows.names, boxes, rows.bbox, rows.truncated, rows.occluded)

    def points(self, index: int) -> np.ndarray:
        """The frame's points in the camera's view and the pillar range."""
        pts = read_velodyne(self._path("velodyne", self.ids[index], "bin"))
        s = self.pillars
        keep = (
            (pts[:, 0] >= s.x_range[0])
            & (pts[:, 0] < s.x_range[1])
            & (pts[:, 1] >= s.y_range[0])
            & (pts[:, 1] < s.y_range[1])
            & (pts[:, 2] >= s.z_range[0])
            & (pts[:, 2] < s.z_range[1])
        )
        pts = pts[keep]
        return pts[self.calibration(index).in_view(pts, self.image_size)]

    def _load(self, index: int):
        ann = self.annotations(index)
        points = self.points(index)
        cars = np.array([n == "Car" for n in ann.names], dtype=bool)
        others = np.array([n not in ("Car", "DontCare") for n in ann.names], dtype=bool)
        boxes = as_boxes(ann.boxes[cars]) if cars.any() else np.zeros((0, 7))
        generator = None
        if self.augmentation is not None:
            rng = np.random.default_rng((self.seed, index, torch.randint(0, 2**31 - 1, ()).item()))
            points, boxes = augment(points, boxes, self.augmentation, rng, ann.boxes[others])
            generator = torch.Generator().manual_seed(int(rng.integers(2**31 - 1)))
        cap = self.pillars.max_pillars if self.train else self.pillars.max_pillars_test
        packed = pillarise(torch.from_numpy(points.astype(np.float32)), self.pillars, cap, generator)
        if len(boxes) > self.max_objects:
            raise DataFormatError(
                f"frame {self.ids[index]}: {len(boxes)} cars, more than max_objects="
                f"{self.max_objects}; raise max_objects"
            )
        target = torch.zeros(self.max_objects, 8)
        target[: len(boxes), 0] = 1
        target[: len(boxes), 1:] = torch.from_numpy(boxes.astype(np.float32))
        return packed, target, index

    def __getitem__(self, index: int):
        for attempt in range(len(self)):
            i = (index + attempt) % len(self)
            if self.ids[i] in self.skipped:
                continue
            try:
                return self._load(i)
            except DataFormatError as exc:
                if self.on_error == "raise":
                    raise DataFormatError(
                        f'{exc} (on_error="skip" skips such frames with a warning)'
                    ) from None
                self.skipped.add(self.ids[i])
                warnings.warn(
                    f"KITTI {self.split}: skipping frame {self.ids[i]} ({len(self.skipped)} skipped so "
                    f"far): {exc}",
                    RuntimeWarning,
                    stacklevel=2,
                )
        raise DataFormatError(f"KITTI {self.split}: no usable frame left; every file failed to load")
