"""The scene simulator: ray-cast geometry, occlusion and truncation labels, and the KITTI layout it writes."""

import math

import numpy as np
import pytest

from nni_hrnas.data.kitti import KittiDetection, points_in_boxes, read_calib, read_labels
from nni_hrnas.data.kitti_sim import (
    CALIB_TEXT,
    SENSOR_HEIGHT,
    SimSettings,
    _label_lines,
    make_scene,
    occluded_share,
    ray_box_distances,
    ray_directions,
    write_kitti_sim,
)
from search_spaces.ops.pillars import PillarSettings

TINY = SimSettings(train_frames=3, val_frames=2, beams=16, azimuth_step=0.5)


def test_ray_box_distance_by_hand():
    # a 2 m cube 10 m ahead: the ray along +x enters at 9 m; one 45 degrees up misses
    box = np.array([[10.0, 0, 0, 2, 2, 2, 0.3]])
    d = np.array([[1.0, 0, 0], [math.sqrt(0.5), 0, math.sqrt(0.5)], [-1.0, 0, 0]])
    dist = ray_box_distances(d, box)
    c = math.cos(0.3)
    # turned 0.3 rad, the ray along x meets the face whose normal makes 0.3 rad with it: at 10 - 1 / cos(0.3)
    assert dist[0, 0] == pytest.approx(10 - 1 / c)
    assert np.isinf(dist[1, 0]) and np.isinf(dist[2, 0])


def test_occlusion_share_of_a_car_behind_another():
    settings = SimSettings(beams=32, azimuth_step=0.2)
    front = [
        10.0,
        0,
        -SENSOR_HEIGHT + 0.78,
        3.9,
        1.6,
        1.56,
        math.pi / 2,
    ]  # across the ray: 3.9 m wide, 1.56 high
    behind = [20.0, 0, -SENSOR_HEIGHT + 0.78, 3.9, 1.6, 1.56, math.pi / 2]
    aside = [20.0, 8, -SENSOR_HEIGHT + 0.78, 3.9, 1.6, 1.56, math.pi / 2]
    dist = ray_box_distances(ray_directions(settings), np.array([front, behind, aside]))
    share = occluded_share(dist)
    assert share[0] == 0.0 and share[2] == 0.0
    # from the sensor (1.73 m up) the front car hides everything of the one behind below its roof line, and its
    # whole width: the one behind shows only its top, from the front roof's sight line up to its own roof:
    # seen at 20 m, the front roof (0.17 m below the sensor at 10 m) hides heights below 1.73 - 0.34 = 1.39 m
    assert share[1] == pytest.approx(1.39 / 1.56, abs=0.08)


def test_scene_points_lie_on_the_ground_or_on_objects():
    points, boxes, names, occluded = make_scene(TINY, np.random.default_rng(0))
    assert names.count("Car") >= TINY.cars[0] - 1 and len(points) > 2000
    on_ground = np.abs(points[:, 2] + SENSOR_HEIGHT) < 0.1
    grown = boxes.copy()
    grown[:, 3:6] += 0.15  # range noise
    on_object = points_in_boxes(points, grown).any(1)
    assert (on_ground | on_object).mean() > 0.99 and on_object.sum() > 100
    assert ((occluded >= 0) & (occluded <= 1)).all()


def test_labels_truncation_and_round_trip(tmp_path):
    calib_file = tmp_path / "c.txt"
    calib_file.write_text(CALIB_TEXT)
    calib = read_calib(calib_file)
    centred = [15.0, 0, -SENSOR_HEIGHT + 0.78, 3.9, 1.6, 1.56, 0.0]
    # straddling the left image border (|y| = 0.86 x there): part of its 2D box is outside the image
    border = [12.0, 10.8, -SENSOR_HEIGHT + 0.78, 3.9, 1.6, 1.56, 0.0]
    far = [40.0, 0, -SENSOR_HEIGHT + 0.78, 3.9, 1.6, 1.56, 0.0]
    behind = [-10.0, 0, -SENSOR_HEIGHT + 0.78, 3.9, 1.6, 1.56, 0.0]
    boxes = np.array([centred, border, far, behind])
    lines = _label_lines(boxes, ["Car"] * 4, [0.0, 0.3, 0.0, 0.0], calib, SimSettings())
    assert len(lines) == 3  # the car behind the camera is not labelled
    (tmp_path / "l.txt").write_text("\n".join(lines) + "\n")
    rows = read_labels(tmp_path / "l.txt")
    assert rows.names == ["Car", "Car", "DontCare"]  # farther than label_range: DontCare
    assert rows.truncated[0] == 0.0 and 0.05 < rows.truncated[1] < 0.95
    assert rows.occluded.tolist()[:2] == [0, 1]
    assert rows.bbox[1, 0] == 0.0  # clipped at the left border


def test_written_layout_is_read_by_the_kitti_loader(tmp_path):
    root = write_kitti_sim(tmp_path / "sim", TINY, seed=1)
    pillars = PillarSettings(
        voxel=0.32, x_range=(0, 40.96), y_range=(-20.48, 20.48), max_pillars=4000, max_pillars_test=4000
    )
    val = KittiDetection(str(root), "val", pillars=pillars)
    assert len(val) == 2 and len(KittiDetection(str(root), "train", pillars=pillars)) == 3
    ann = val.annotations(0)
    assert "Car" in ann.names
    packed, target, _ = val[0]
    assert (packed[:, 0] > 0).sum() > 300 and target[:, 0].sum() == ann.names.count("Car")
    # the labels' boxes match the simulated ones to the files' two decimals
    _, boxes, names, _ = make_scene(TINY, np.random.default_rng((1, 3)))
    sim_cars = boxes[[n == "Car" for n in names]]
    for box in ann.boxes[[n == "Car" for n in ann.names]]:
        d = np.abs(sim_cars[:, :6] - box[:6]).max(1)
        assert d.min() < 0.03
