"""The kitti / kitti_sim tasks: the evaluation plumbing, and a smoke search that exports a reloadable network."""

import json

import numpy as np
import pytest
import torch

from nni_hrnas.cli import main
from nni_hrnas.data.kitti_sim import SimSettings, write_kitti_sim
from nni_hrnas.search import load_searched_model
from nni_hrnas.tasks import get_task

SIM = SimSettings(train_frames=8, val_frames=6, beams=24, azimuth_step=0.4)


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory):
    return write_kitti_sim(tmp_path_factory.mktemp("sim"), SIM, seed=3)


def test_ground_truth_as_detections_scores_100_through_the_task(sim_root):
    spec = get_task("kitti_sim")
    _, val = spec.make_datasets(str(sim_root), smoke=False)
    module = spec.make_lightning_module()
    module.val_frames = val
    outputs, cars = [], 0
    for i in range(len(val)):
        ann = val.annotations(i)
        boxes = ann.boxes[[n == "Car" for n in ann.names]]
        cars += len(boxes)
        outputs.append((i, boxes, np.linspace(0.9, 0.5, len(boxes))))
    assert cars >= 10
    ap = module.evaluate_outputs(outputs)
    # the detections' 2D boxes come from projecting them with each frame's calibration: the labels' boxes again
    assert ap["3d_moderate_R40"] == pytest.approx(100.0) and ap["bev_hard_R11"] == pytest.approx(100.0)
    # shifting every box by 1.5 m along its length: no match at IoU 0.7
    shifted = []
    for i, boxes, scores in outputs:
        moved = boxes.copy()
        moved[:, 0] += 1.5 * np.cos(moved[:, 6])
        moved[:, 1] += 1.5 * np.sin(moved[:, 6])
        shifted.append((i, moved, scores))
    assert module.evaluate_outputs(shifted)["3d_moderate_R40"] == 0.0


def test_kitti_sim_smoke_search_exports_a_reloadable_network(sim_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    out = tmp_path / "run"
    assert (
        main(
            [
                "search",
                "--task",
                "kitti_sim",
                "--data-root",
                str(sim_root),
                "--epochs",
                "2",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["task"] == "kitti_sim" and 0 < result["macs"] <= result["macs_max"]
    assert np.isfinite(result["metric"]) and 0 <= result["metric"] <= 100
    model = load_searched_model(out)
    spec = get_task("kitti_sim")
    _, val = spec.make_datasets(str(sim_root), smoke=False)
    packed = torch.stack([val[0][0], val[1][0]])
    with torch.no_grad():
        y = model(packed)
    assert y.shape == (2, 20, 64, 64) and torch.isfinite(y).all()
    assert main(["export", str(out), "--out", str(tmp_path / "export")]) == 0
