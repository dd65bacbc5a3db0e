"""`hrnas search` / `hrnas export` as functions: run folder, --json, reload, bad input."""

from __future__ import annotations

import json

import pytest
import torch

from nni_hrnas.search import SearchError, SearchSettings, load_searched_model, main

ARGS = ["search", "--task", "digits_seg", "--preset", "tiny", "--epochs", "1", "--lambda", "0.01"]


def test_search_json_run_folder_export_and_reload(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    run = tmp_path / "run"
    assert main([*ARGS, "--out", str(run), "--json"]) == 0
    out, err = capfd.readouterr()
    result = json.loads(out)  # exactly one JSON object on stdout, logs went to stderr
    assert {"macs", "params", "metric", "arch", "search_seconds"} <= set(result) and "epoch 1/1" in err
    for key in ("metric_name", "arch_max", "lambda", "eps", "seed", "task", "preset", "search_cost", "trajectory"):
        assert key in result
    assert result["strategy"] == "hrnas" and result["task"] == "digits_seg" and result["preset"] == "tiny"
    assert {"wall_seconds", "epochs", "images_seen", "mac_epochs"} <= set(result["search_cost"])
    for name in ("arch.json", "model.safetensors", "result.json", "search_checkpoint.pt"):
        assert (run / name).exists()
    assert json.loads((run / "arch.json").read_text()) == result["arch"]
    model = load_searched_model(run)
    assert model.cost(tuple(result["input_size"])).macs == result["macs"]

    assert main(["export", str(run), "--out", str(tmp_path / "exported"), "--json"]) == 0
    info = json.loads(capfd.readouterr().out)
    assert info["macs"] == result["macs"]
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(load_searched_model(tmp_path / "exported")(x), model(x), rtol=0, atol=0)

    # nothing already saved is lost: the same folder without --resume is refused
    before = (run / "search_checkpoint.pt").read_bytes()
    assert main([*ARGS, "--out", str(run)]) == 2
    assert "pass --resume" in capfd.readouterr().err
    assert (run / "search_checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("extra, message", [
    (["--lambda", "-1"], "invalid lambda=-1.0"),
    (["--eps", "1.5"], "invalid eps=1.5"),
    (["--eps", "0"], "invalid eps=0.0"),
    (["--epochs", "0"], "invalid epochs=0"),
    (["--resume"], "--resume needs --out"),
    (["--target-macs", "1000", "--out", "{tmp}/t"], "below what this network can reach"),
])
def test_bad_input_is_a_clear_error(extra, message, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    assert main([*ARGS, *[e.format(tmp=tmp_path) for e in extra]]) == 2
    assert message in capfd.readouterr().err


def test_settings_defaults_and_validation():
    s = SearchSettings(task="cityscapes", smoke=False)
    assert (s.lambda_, s.eps, s.preset) == (1.4e-4, 1e-3, "cityscapes")
    assert SearchSettings(task="coco_keypoints", smoke=False).lambda_ == 1e-6
    assert SearchSettings(task="imagenet", smoke=False).lambda_ == 1.8e-4
    with pytest.raises(SearchError, match="Unknown task"):
        SearchSettings(task="nope")
    with pytest.raises(SearchError, match="prune_every"):
        SearchSettings(task="digits_seg", prune_every=0)
