"""The KITTI loader on a fixture written in the exact KITTI layout, and its clear errors."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nni_hrnas.data.common import DataFormatError, DataRootError
from nni_hrnas.data.kitti import Augmentation, KittiDetection, augment, points_in_boxes
from search_spaces.ops.pillars import PillarSettings

# training/calib/000000.txt of the KITTI 3D object benchmark, in its format
REAL_CALIB = """P0: 7.215377000000e+02 0.000000000000e+00 6.095593000000e+02 0.000000000000e+00 0.000000000000e+00 7.215377000000e+02 1.728540000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P1: 7.215377000000e+02 0.000000000000e+00 6.095593000000e+02 -3.875744000000e+02 0.000000000000e+00 7.215377000000e+02 1.728540000000e+02 0.000000000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 0.000000000000e+00
P2: 7.215377000000e+02 0.000000000000e+00 6.095593000000e+02 4.485728000000e+01 0.000000000000e+00 7.215377000000e+02 1.728540000000e+02 2.163791000000e-01 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 2.745884000000e-03
P3: 7.215377000000e+02 0.000000000000e+00 6.095593000000e+02 -3.395242000000e+02 0.000000000000e+00 7.215377000000e+02 1.728540000000e+02 2.199936000000e+00 0.000000000000e+00 0.000000000000e+00 1.000000000000e+00 2.729905000000e-03
R0_rect: 9.999239000000e-01 9.837760000000e-03 -7.445048000000e-03 -9.869795000000e-03 9.999421000000e-01 -4.278459000000e-03 7.402527000000e-03 4.351614000000e-03 9.999631000000e-01
Tr_velo_to_cam: 7.533745000000e-03 -9.999714000000e-01 -6.166020000000e-04 -4.069766000000e-03 1.480249000000e-02 7.280733000000e-04 -9.998902000000e-01 -7.631618000000e-02 9.998621000000e-01 7.523790000000e-03 1.480755000000e-02 -2.717806000000e-01
Tr_imu_to_velo: 9.999976000000e-01 7.553071000000e-04 -2.035826000000e-03 -8.086759000000e-01 -7.854027000000e-04 9.998898000000e-01 -1.482298000000e-02 3.195559000000e-01 2.024406000000e-03 1.482454000000e-02 9.998881000000e-01 -7.997231000000e-01

"""
# camera frame: a car 20 m ahead, 1 m to the right, facing the camera's x axis (ry = 0: heading -y in LiDAR)
LABEL = (
    "Car 0.00 0 -1.62 600.00 160.00 680.00 220.00 1.50 1.60 3.90 1.00 1.65 20.00 0.00\n"
    "Van 0.00 1 1.55 100.00 170.00 200.00 230.00 2.00 1.90 4.80 -8.00 1.70 15.00 1.57\n"
    "DontCare -1 -1 -10 500.00 150.00 520.00 160.00 -1 -1 -1 -1000 -1000 -1000 -10\n"
)
SMALL = PillarSettings(
    voxel=0.5,
    x_range=(0, 40),
    y_range=(-20, 20),
    z_range=(-3, 1),
    max_points=8,
    max_pillars=2000,
    max_pillars_test=2000,
)


def _write_root(root: Path, frames=("000000", "000001"), val=("000001",)):
    rng = np.random.default_rng(0)
    for sub in ("velodyne", "label_2", "calib"):
        (root / "training" / sub).mkdir(parents=True, exist_ok=True)
    (root / "ImageSets").mkdir(exist_ok=True)
    (root / "ImageSets" / "train.txt").write_text("\n".join(f for f in frames if f not in val) + "\n")
    (root / "ImageSets" / "val.txt").write_text("\n".join(val) + "\n")
    for f in frames:
        ground = np.column_stack(
            [
                rng.uniform(-10, 50, 3000),
                rng.uniform(-30, 30, 3000),
                np.full(3000, -1.7),
                rng.uniform(0, 1, 3000),
            ]
        )
        car = np.column_stack(
            [
                rng.uniform(18.1, 21.9, 400),
                rng.uniform(-1.7, -0.3, 400),
                rng.uniform(-1.6, -0.3, 400),
                rng.uniform(0, 1, 400),
            ]
        )
        np.concatenate([ground, car]).astype(np.float32).tofile(root / "training" / "velodyne" / f"{f}.bin")
        (root / "training" / "label_2" / f"{f}.txt").write_text(LABEL)
        (root / "training" / "calib" / f"{f}.txt").write_text(REAL_CALIB)
    return root


def test_loads_the_kitti_layout(tmp_path, monkeypatch):
    root = _write_root(tmp_path)
    monkeypatch.setenv("KITTI_ROOT", str(root))
    val = KittiDetection(None, "val", pillars=SMALL)
    assert len(val) == 1
    ann = val.annotations(0)
    assert ann.names == ["Car", "Van", "DontCare"]
    # the car: camera (1, 1.65, 20) bottom centre, 1.5 high: its centre is 0.75 m higher, camera y 0.9; by hand
    # with the first-order terms of the matrices (R0 turns y by +0.0044 z, the LiDAR pitches by 0.0148):
    # x = 20 + 0.27, y = -1, z = 0.0148 x - 0.076 - (0.9 + 0.0044 * 20)
    x, y, z, length, w, h, yaw = ann.boxes[0]
    assert (x, y, z) == pytest.approx((20.27, -1.0, 0.0148 * 20.27 - 0.076 - 0.9 - 0.088), abs=0.03)
    assert (length, w, h) == pytest.approx((3.9, 1.6, 1.5))
    assert yaw == pytest.approx(-math.pi / 2)
    assert ann.occluded.tolist() == [0, 1, -1] and ann.bbox[0].tolist() == [600, 160, 680, 220]
    pts = val.points(0)
    assert len(pts) > 1000
    # kept: in the pillar range and the camera's ~81 degree view (|y| < 0.86 x); dropped: behind, aside
    assert (pts[:, 0] >= 0).all() and (np.abs(pts[:, 1]) < 0.87 * pts[:, 0] + 0.5).all()
    assert (np.abs(pts[:, 1]) > 0.6 * pts[:, 0]).any()
    packed, target, index = val[0]
    assert packed.shape == (SMALL.max_pillars_test, 3 + 4 * SMALL.max_points) and index == 0
    assert target[0, 0] == 1 and target[1:, 0].sum() == 0  # the car only (the Van is another class)
    assert target[0, 1:].numpy() == pytest.approx(ann.boxes[0].astype(np.float32), abs=1e-5)
    train = KittiDetection(str(root), "train", pillars=SMALL)
    torch.manual_seed(0)
    a, b = train[0], train[0]
    assert not torch.equal(a[1], b[1])  # augmented: two draws differ


def test_augmentation_moves_points_with_their_boxes():
    rng = np.random.default_rng(3)
    boxes = np.array([[10, 0, -1, 4, 2, 1.5, 0.3], [20, 5, -1, 4, 2, 1.5, -1.0]])
    inner = np.concatenate([rng.uniform(-0.4, 0.4, (50, 3)) * [4, 2, 1.5] for _ in boxes])
    # points in each box's local frame, placed in the scene
    pts = []
    for i, b in enumerate(boxes):
        loc = inner[50 * i : 50 * (i + 1)]
        c, s = math.cos(b[6]), math.sin(b[6])
        pts.append(
            np.column_stack(
                [
                    b[0] + loc[:, 0] * c - loc[:, 1] * s,
                    b[1] + loc[:, 0] * s + loc[:, 1] * c,
                    b[2] + loc[:, 2],
                    np.zeros(50),
                ]
            )
        )
    pts = np.concatenate(pts)
    assert points_in_boxes(pts, boxes).sum(0).tolist() == [50, 50]
    for seed in range(5):
        p, b = augment(pts, boxes, Augmentation(), np.random.default_rng(seed))
        assert points_in_boxes(p, b).sum(0).tolist() == [50, 50]  # every point still in its moved box
        assert not np.allclose(b, boxes)
        # the scaling and rotation keep distances between the boxes' centres up to the scale
        assert np.all(np.abs(b[:, 3:6] / boxes[:, 3:6] - 1) <= 0.05 + 1e-9)


def test_missing_and_partial_roots(tmp_path, monkeypatch):
    monkeypatch.delenv("KITTI_ROOT", raising=False)
    with pytest.raises(DataRootError, match="KITTI_ROOT"):
        KittiDetection(None, "val")
    with pytest.raises(DataRootError, match="does not exist"):
        KittiDetection(str(tmp_path / "nope"), "val")
    with pytest.raises(DataRootError, match="ImageSets"):
        KittiDetection(str(tmp_path), "val")
    root = _write_root(tmp_path)
    (root / "training" / "calib" / "000001.txt").unlink()
    with pytest.raises(DataRootError, match=r"1 files .* missing, e\.g\. training/calib/000001\.txt"):
        KittiDetection(str(root), "val")


@pytest.mark.parametrize(
    "damage,message",
    [
        (
            lambda r: (r / "training/velodyne/000001.bin").write_bytes(b"\0" * 17),
            "17 bytes is not a multiple of 16",
        ),
        (
            lambda r: (r / "training/label_2/000001.txt").write_text(LABEL.replace("Van", "Bus")),
            "2: unknown class 'Bus'",
        ),
        (
            lambda r: (r / "training/label_2/000001.txt").write_text(
                "Car 0 0 0 1 2 3 4 1.5 1.6 3.9 1 1.6 20\n"
            ),
            "1: 14 columns, expected 15",
        ),
        (
            lambda r: (r / "training/calib/000001.txt").write_text(
                "\n".join(li for li in REAL_CALIB.splitlines() if not li.startswith("Tr_velo"))
            ),
            "no Tr_velo_to_cam matrix",
        ),
    ],
)
def test_bad_files_are_clear_errors_or_counted_skips(tmp_path, damage, message):
    root = _write_root(tmp_path, frames=("000000", "000001"), val=("000000", "000001"))
    damage(root)
    val = KittiDetection(str(root), "val", pillars=SMALL)
    val[0]
    with pytest.raises(DataFormatError, match=message):
        val[1]
    skipping = KittiDetection(str(root), "val", pillars=SMALL, on_error="skip")
    with pytest.warns(RuntimeWarning, match="skipping frame 000001"):
        _, _, index = skipping[1]
    assert index == 0 and skipping.skipped == {"000001"}
