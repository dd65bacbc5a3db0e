"""The kitti / kitti_sim tasks: the evaluation plumbing, a search that fits its scenes and exports a
reloadable network, and hrnas compare on the task."""

import dataclasses
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from nni_hrnas.cli import main
from nni_hrnas.data import kitti_sim
from nni_hrnas.data.kitti_sim import SimSettings, write_kitti_sim
from nni_hrnas.search import load_searched_model
from nni_hrnas.tasks import get_task
from search_spaces import HRNASSpace

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


def test_kitti_sim_search_fits_its_scenes_and_exports_a_reloadable_network(tmp_path, monkeypatch, capsys):
    # An overfitting check of the whole search (loss, anchors, shrinking, EMA, BN recalibration,
    # decoding, evaluation): 8 scenes without augmentation, scored on those same scenes. On held-out
    # scenes no search short enough for the suite raises AP (README, "3D detection"); with
    # augmentation neither does this one: 0.0 after 30 epochs.
    root = write_kitti_sim(tmp_path / "sim", dataclasses.replace(SIM, val_frames=1), seed=3)
    shutil.copyfile(root / "ImageSets" / "train.txt", root / "ImageSets" / "val.txt")
    monkeypatch.setattr(kitti_sim, "SIM_AUGMENTATION", None)
    monkeypatch.setenv("HRNAS_QUIET", "1")
    out = tmp_path / "run"
    argv = ["search", "--task", "kitti_sim", "--data-root", str(root), "--epochs", "30", "--batch-size", "2"]
    assert main([*argv, "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["task"] == "kitti_sim" and 0 < result["macs"] <= result["macs_max"]
    first_epoch = next(step for step in result["trajectory"] if step["epoch"] == 1)
    # moderate 3D AP (R40): 0.0 after the first epoch (4 steps); after 30, 17.7 here (seed 0, one
    # thread), 25-54 on seeds 0-2 and 3.6 on seed 3 with two threads
    assert result["metric"] >= first_epoch["metric"] + 2.0, (first_epoch, result["metric"])

    model = load_searched_model(out)
    spec = get_task("kitti_sim")
    _, val = spec.make_datasets(str(root), smoke=False)
    packed = torch.stack([val[0][0], val[1][0]])
    with torch.no_grad():
        y = model(packed)
    assert y.shape == (2, 20, 64, 64) and torch.isfinite(y).all()
    assert main(["export", str(out), "--out", str(tmp_path / "export")]) == 0


def test_kitti_sim_compare_writes_a_table_and_a_report(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path / "cache"))  # the simulated scenes, written once
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    out = tmp_path / "cmp"
    argv = ["compare", "--task", "kitti_sim", "--budget", "48img", "--strategies", "hrnas,random"]
    assert main([*argv, "--eval-epochs", "1", "--out", str(out), "--json"]) == 0
    summary = json.loads(capfd.readouterr().out)
    table = pd.read_csv(out / "results.csv")
    assert set(table["strategy"]) == {"hrnas", "random"} == set(summary["strategies"])
    space = HRNASSpace.from_preset("kitti_sim")
    for _, row in table.iterrows():
        net = space.freeze(json.loads(row["arch"]))  # a valid sample of the detection space
        assert net.cost().macs == row["macs"] and 0 <= row["metric"] <= 100
    report = (out / "report.html").read_text().split("<h2>Results</h2>", 1)[1]
    assert all(f"<td>{s}</td>" in report for s in ("hrnas", "random"))
    assert not (tmp_path / "home").exists()  # NNI's folders stay inside --out
