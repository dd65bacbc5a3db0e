"""benchmarks/bench_generalisation.py: a run folder's network on the search's training and validation images."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from bench_scripts import load_benchmark

from nni_hrnas.data import digits
from nni_hrnas.search import load_searched_model, main


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HRNAS_SMOKE", "1")
        patch.setenv("HRNAS_QUIET", "1")
        run = tmp_path_factory.mktemp("generalisation") / "run"
        args = ["search", "--task", "digits_seg", "--preset", "tiny", "--epochs", "2", "--seed", "1"]
        assert main([*args, "--lambda", "0.01", "--out", str(run)]) == 0
        yield run


def _miou_by_numpy(model, images: np.ndarray, labels: np.ndarray) -> float:
    """The reference: mean IoU over the classes in targets or predictions, from numpy arrays."""
    x = torch.from_numpy((images / 255.0 - digits.DIGITS_MEAN) / digits.DIGITS_STD).float()[:, None]
    with torch.no_grad():
        logits = F.interpolate(model(x), size=labels.shape[-2:], mode="bilinear", align_corners=False)
    pred, target = logits.argmax(1).numpy(), labels.astype(np.int64)
    keep = target != 255
    ious = []
    for c in range(digits.SEG_NUM_CLASSES):
        p, t = (pred == c) & keep, (target == c) & keep
        if (p | t).any():
            ious.append((p & t).sum() / (p | t).sum())
    return float(np.mean(ious))


def test_train_figure_is_the_stored_canvases_and_val_the_reported_metric(smoke_run, monkeypatch):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    bench = load_benchmark("bench_generalisation")
    row = bench.measure(smoke_run)
    result = json.loads((smoke_run / "result.json").read_text())
    assert row["val"] == pytest.approx(result["metric"], abs=5e-4)
    arrays = digits.load_arrays("seg", seed=1, smoke=True)
    model = load_searched_model(smoke_run)
    # the training canvases unmoved, whatever the training-time shift
    assert row["train"] == pytest.approx(
        _miou_by_numpy(model, arrays["train_x"], arrays["train_y"]), abs=1e-3
    )
    assert row["val"] == pytest.approx(_miou_by_numpy(model, arrays["val_x"], arrays["val_y"]), abs=1e-3)
    assert (row["train_images"], row["val_images"]) == (len(arrays["train_x"]), len(arrays["val_x"]))
    scored = [p for p in result["trajectory"] if p["metric"] is not None]
    assert row["best_val"] == max(p["metric"] for p in scored)


def test_a_folder_whose_weights_miss_its_metric_is_refused(smoke_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    bench = load_benchmark("bench_generalisation")
    edited = tmp_path / "edited"
    edited.mkdir()
    for name in ("arch.json", "model.safetensors", "result.json"):
        (edited / name).write_bytes((smoke_run / name).read_bytes())
    result = json.loads((edited / "result.json").read_text())
    result["metric"] += 0.01
    (edited / "result.json").write_text(json.dumps(result))
    with pytest.raises(SystemExit, match="result.json says"):
        bench.measure(edited)
    with pytest.raises(SystemExit) as exit_info:
        bench.main([str(tmp_path / "nothing")])
    assert exit_info.value.code == 2 and "pass a folder that hrnas search wrote" in capsys.readouterr().err
