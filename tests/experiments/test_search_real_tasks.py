"""`hrnas search --task T` on every real task, at smoke scale, on data written in the real layouts."""

import json

import pytest
from collected import assert_metric

from nni_hrnas.cli import main
from nni_hrnas.search import load_searched_model

TASKS = [
    ("cityscapes", "cityscapes_root", "CITYSCAPES_ROOT"),
    ("ade20k", "ade20k_root", "ADE20K_ROOT"),
    ("coco_keypoints", "coco_root", "COCO_ROOT"),
    ("imagenet", "imagenet_root", "IMAGENET_ROOT"),
]


@pytest.mark.slow
@pytest.mark.parametrize("task, fixture, variable", TASKS)
def test_search_runs_on_real_layout(task, fixture, variable, request, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    monkeypatch.setenv(variable, str(request.getfixturevalue(fixture)))  # the root comes from the env var
    out = tmp_path / "run"
    assert main(["search", "--task", task, "--epochs", "1", "--out", str(out), "--json"]) == 0
    # In-process, NNI's log handler writes to the stream pytest captures; the CLI itself routes it
    # to stderr at the file-descriptor level (tests/strategy checks stdout holds one JSON object).
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["task"] == task
    assert_metric(result["metric"])  # a real metric, not NaN, within its range
    model = load_searched_model(out)  # the saved network is the one whose MACs are reported
    assert model.cost(tuple(result["input_size"])).macs == result["macs"] > 0


@pytest.mark.parametrize("task, fixture, variable", TASKS)
def test_missing_data_root_fails_at_once_naming_the_variable(
    task, fixture, variable, tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv(variable, raising=False)
    assert main(["search", "--task", task, "--out", str(tmp_path / "run")]) == 2
    assert variable in capsys.readouterr().err
