"""Rotated IoUs against shapely and hand values; KITTI AP against hand-computed precision/recall."""

import math

import numpy as np
import pytest
from shapely.geometry import Polygon

from nni_hrnas.detection import Annotations, Detections, bev_iou, corners_3d, iou_3d, kitti_ap, rotated_nms
from nni_hrnas.detection.boxes import bev_corners


def _shapely_box(b):
    c, s = math.cos(b[6]), math.sin(b[6])
    pts = [
        (b[0] + dx * c - dy * s, b[1] + dx * s + dy * c)
        for dx, dy in (
            (b[3] / 2, b[4] / 2),
            (-b[3] / 2, b[4] / 2),
            (-b[3] / 2, -b[4] / 2),
            (b[3] / 2, -b[4] / 2),
        )
    ]
    return Polygon(pts)


def _random_boxes(rng, n):
    return np.column_stack(
        [
            rng.uniform(-3, 3, n),
            rng.uniform(-3, 3, n),
            rng.uniform(-1, 1, n),
            rng.uniform(0.5, 5, n),
            rng.uniform(0.5, 3, n),
            rng.uniform(0.5, 2, n),
            rng.uniform(-math.pi, math.pi, n),
        ]
    )


def test_bev_and_3d_iou_match_shapely_on_random_boxes():
    rng = np.random.default_rng(0)
    a, b = _random_boxes(rng, 40), _random_boxes(rng, 30)
    bev, d3 = bev_iou(a, b), iou_3d(a, b)
    assert 300 < (bev > 0).sum() < 1100  # many pairs overlap, many do not
    polys_b = [_shapely_box(x) for x in b]
    for i in range(len(a)):
        pa = _shapely_box(a[i])
        for j, pb in enumerate(polys_b):
            inter = pa.intersection(pb).area
            assert bev[i, j] == pytest.approx(inter / (pa.area + pb.area - inter), abs=1e-9)
            dz = max(
                0.0,
                min(a[i, 2] + a[i, 5] / 2, b[j, 2] + b[j, 5] / 2)
                - max(a[i, 2] - a[i, 5] / 2, b[j, 2] - b[j, 5] / 2),
            )
            vi = inter * dz
            assert d3[i, j] == pytest.approx(vi / (pa.area * a[i, 5] + pb.area * b[j, 5] - vi), abs=1e-9)


def test_iou_hand_cases():
    unit = [0, 0, 0, 2, 2, 2, 0]
    # identical (also turned by 90 and 180 degrees: the same square)
    for yaw in (0.0, math.pi / 2, math.pi):
        assert bev_iou([unit], [[0, 0, 0, 2, 2, 2, yaw]])[0, 0] == pytest.approx(1.0)
    # shifted by half a side: intersection 2, union 6
    assert bev_iou([unit], [[1, 0, 0, 2, 2, 2, 0]])[0, 0] == pytest.approx(1 / 3)
    # touching and disjoint
    assert bev_iou([unit], [[2, 0, 0, 2, 2, 2, 0]])[0, 0] == pytest.approx(0.0)
    assert bev_iou([unit], [[9, 9, 0, 2, 2, 2, 0]])[0, 0] == 0.0
    # a square turned 45 degrees inside a bigger square: the octagon of area 8 (sqrt(8) - 2)... by formula:
    # a 2x2 square and the same square turned 45 degrees overlap in a regular octagon of area 8 (sqrt 2 - 1)
    octagon = 8 * (math.sqrt(2) - 1)
    assert bev_iou([unit], [[0, 0, 0, 2, 2, 2, math.pi / 4]])[0, 0] == pytest.approx(octagon / (8 - octagon))
    # 3D: same footprint, half the height overlapping: intersection 4, union 12
    assert iou_3d([unit], [[0, 0, 1, 2, 2, 2, 0]])[0, 0] == pytest.approx(1 / 3)
    # stacked, not overlapping in height
    assert iou_3d([unit], [[0, 0, 2.5, 2, 2, 2, 0]])[0, 0] == 0.0


def test_corners():
    box = [1, 2, 3, 4, 2, 6, math.pi / 2]  # heading +y: length along y
    c = corners_3d([box])[0]
    assert c[:, 0].min() == pytest.approx(0) and c[:, 0].max() == pytest.approx(2)
    assert c[:, 1].min() == pytest.approx(0) and c[:, 1].max() == pytest.approx(4)
    assert c[:, 2].min() == pytest.approx(0) and c[:, 2].max() == pytest.approx(6)
    assert _shapely_box(box).area == pytest.approx(Polygon(bev_corners([box])[0]).area)


def test_rotated_nms_keeps_best_of_overlapping_boxes():
    boxes = [
        [0, 0, 0, 4, 2, 1.5, 0],
        [0.2, 0, 0, 4, 2, 1.5, 0.05],
        [10, 0, 0, 4, 2, 1.5, 0],
        [0, 0.1, 0, 4, 2, 1.5, 0],
    ]
    keep = rotated_nms(boxes, [0.5, 0.9, 0.8, 0.7], threshold=0.5)
    assert list(keep) == [1, 2]


# ---- AP ------------------------------------------------------------------------------------------


def _cars(n, spacing=10.0):
    boxes = np.array([[spacing * i, 0, -1, 3.9, 1.6, 1.5, 0.0] for i in range(n)])
    bbox = np.array([[100.0 * i, 100, 100.0 * i + 80, 160] for i in range(n)])  # 60 px high: easy by height
    return boxes, bbox


def _frame(n=10, truncated=0.0, occluded=0, names=None):
    boxes, bbox = _cars(n)
    return Annotations(names or ["Car"] * n, boxes, bbox, [truncated] * n, [occluded] * n)


def test_perfect_detector_scores_100():
    gt = _frame()
    det = Detections(gt.boxes, np.linspace(0.9, 0.5, 10), gt.bbox)
    ap = kitti_ap([gt, gt], [det, det])
    assert all(v == pytest.approx(100.0) for v in ap.values()), ap


def test_half_shifted_detector_matches_the_hand_computation():
    gt = _frame()
    boxes = gt.boxes.copy()
    boxes[5:, 0] += 1.0  # shifted 1 m along the 3.9 m length: IoU (2.9 / 4.9) = 0.59 < 0.7, a false positive
    # the five good ones score higher: precision 1 up to recall 0.5, then nothing more is found
    det = Detections(boxes, [0.9, 0.85, 0.8, 0.75, 0.7, 0.6, 0.55, 0.5, 0.45, 0.4], gt.bbox)
    ap = kitti_ap([gt], [det])
    # R40: recall points 1/40 .. 20/40 have precision 1, the other 20 have none: 50; R11: 0 .. 0.5 = 6 of 11
    assert ap["3d_moderate_R40"] == pytest.approx(50.0)
    assert ap["bev_easy_R40"] == pytest.approx(50.0)
    assert ap["3d_hard_R11"] == pytest.approx(100 * 6 / 11)

    # interleaved scores (good, bad, good, bad, ...): precision at recall k/10 (k = 1..5) is k / (2k - 1)
    det = Detections(boxes[[0, 5, 1, 6, 2, 7, 3, 8, 4, 9]], np.linspace(0.9, 0.45, 10), gt.bbox)
    ap = kitti_ap([gt], [det])
    envelope = {k: k / (2 * k - 1) for k in range(1, 6)}
    r40 = sum(envelope[math.ceil(i / 4)] for i in range(1, 21)) / 40
    r11 = (1.0 + sum(envelope[k] for k in range(1, 6))) / 11  # recall 0 takes the best precision, 1
    assert ap["bev_moderate_R40"] == pytest.approx(100 * r40)
    assert ap["bev_moderate_R11"] == pytest.approx(100 * r11)


def test_difficulty_rules_and_ignored_boxes():
    boxes, bbox = _cars(4)
    bbox[1, 3] = bbox[1, 1] + 30  # 30 px high: moderate and hard only
    names = ["Car", "Car", "Van", "Car"]
    gt = Annotations(names, boxes, bbox, [0.0, 0.0, 0.0, 0.4], [0, 0, 0, 2])  # the last: hard only
    # detect everything, the Van included: matching a Van is neither true nor false positive
    det = Detections(boxes, [0.9, 0.8, 0.7, 0.6], bbox)
    ap = kitti_ap([gt], [det])
    assert ap["3d_easy_R40"] == pytest.approx(100.0)  # 1 counted box, found; the others are neutral
    assert ap["3d_moderate_R40"] == pytest.approx(100.0)
    assert ap["3d_hard_R40"] == pytest.approx(100.0)
    # miss the hard-only car: easy and moderate unchanged, hard recall 2/3
    det = Detections(boxes[:3], [0.9, 0.8, 0.7], bbox[:3])
    ap = kitti_ap([gt], [det])
    assert ap["3d_moderate_R40"] == pytest.approx(100.0)
    assert ap["3d_hard_R40"] == pytest.approx(100.0 * 26 / 40)  # recall points up to 26/40 <= 2/3
    # a detection lower than 25 px on the image is ignored, not a false positive
    low = np.vstack([bbox[:2], [[0, 0, 50, 20]]])
    det = Detections(np.vstack([boxes[:2], [[50, 50, -1, 3.9, 1.6, 1.5, 0]]]), [0.9, 0.8, 0.95], low)
    assert kitti_ap([gt], [det])["bev_moderate_R40"] == pytest.approx(100.0)


def test_dontcare_regions_absorb_false_positives():
    boxes, bbox = _cars(2)
    names = ["Car", "DontCare"]
    dc_boxes = boxes.copy()
    dc_boxes[1] = [-1000, -1000, -1000, 1, 1, 1, 0]  # DontCare rows carry no 3D box in KITTI
    gt = Annotations(names, dc_boxes, bbox, [0.0, -1], [0, -1])
    # a false positive (higher score) inside the DontCare region's 2D box, a true positive on the car
    det = Detections(boxes[[1, 0]], [0.95, 0.9], bbox[[1, 0]])
    assert kitti_ap([gt], [det])["3d_moderate_R40"] == pytest.approx(100.0)
    # the same false positive elsewhere in the image costs precision 1/2 at full recall
    moved = bbox[[1, 0]].copy()
    moved[0] = [600, 100, 680, 160]
    det = Detections(boxes[[1, 0]], [0.95, 0.9], moved)
    assert kitti_ap([gt], [det])["3d_moderate_R40"] == pytest.approx(50.0)


def test_no_ground_truth_is_nan_and_bad_input_is_clear():
    boxes, bbox = _cars(1)
    gt = Annotations(["Pedestrian"], boxes, bbox, [0.0], [0])
    assert math.isnan(kitti_ap([gt], [Detections(boxes, [1.0], bbox)])["3d_moderate_R40"])
    with pytest.raises(ValueError, match="shape"):
        bev_iou(np.zeros((2, 5)), np.zeros((1, 7)))
    with pytest.raises(ValueError, match="frames"):
        kitti_ap([gt], [])
