"""`hrnas search` / `hrnas export` as functions: run folder, --json, reload, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from collected import assert_row_is_the_result, collect_rows

from nni_hrnas.run_folder import RunFolder
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
    for key in (
        "metric_name",
        "arch_max",
        "lambda",
        "eps",
        "seed",
        "task",
        "preset",
        "search_cost",
        "trajectory",
    ):
        assert key in result
    assert result["strategy"] == "hrnas" and result["task"] == "digits_seg" and result["preset"] == "tiny"
    assert {"wall_seconds", "epochs", "images_seen", "mac_epochs"} <= set(result["search_cost"])
    for name in ("arch.json", "model.safetensors", "result.json", "search_checkpoint.pt"):
        assert (run / name).exists()
    assert json.loads((run / "arch.json").read_text()) == result["arch"]
    # the run folder's typed result is what --json printed and result.json holds, key for key
    assert RunFolder(run).load_result().to_dict() == result == json.loads((run / "result.json").read_text())
    model = load_searched_model(run)
    assert model.cost(tuple(result["input_size"])).macs == result["macs"]
    # the analysis reads this real run folder: one row holding result.json's values
    table = collect_rows(run)
    assert len(table) == 1 and table.iloc[0]["kind"] == "run"
    assert_row_is_the_result(table.iloc[0], json.loads((run / "result.json").read_text()), run_dir=run)

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


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lambda", "-1"], "invalid lambda=-1.0"),
        (["--eps", "1.5"], "invalid eps=1.5"),
        (["--eps", "0"], "invalid eps=0.0"),
        (["--epochs", "0"], "invalid epochs=0"),
        (["--unit-cost", "flops"], "invalid unit_cost='flops': expected exact or paper"),
        (["--resume"], "--resume needs --out"),
        (["--target-macs", "1000", "--out", "{tmp}/t"], "below what this network can reach"),
    ],
)
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


@pytest.mark.parametrize("command", ["search", "study", "compare"])
@pytest.mark.parametrize(
    "flags, message",
    [
        (["--devices", "4", "--accelerator", "cpu"], "--devices 4: this machine has 2 CPU core(s)"),
        (["--accelerator", "gpu"], "--accelerator gpu: no CUDA device is available"),
        (["--accelerator", "cuda", "--devices", "2"], "--accelerator cuda: no CUDA device is available"),
        (["--precision", "fp8"], "invalid --precision 'fp8': choose one of 32-true, bf16-mixed, 16-mixed"),
        (["--precision", "16-mixed", "--accelerator", "cpu"], "--precision 16-mixed needs a CUDA GPU"),
        (["--devices", "0"], "invalid --devices 0"),
        (["--num-nodes", "2"], "--num-nodes 2: start one process per device on every node with torchrun"),
    ],
)
def test_device_flags_fail_before_anything_runs(command, flags, message, tmp_path, monkeypatch, capfd):
    """Each bad device flag is one line naming the flag and the fix, before any training, nothing written."""
    from nni_hrnas.cli import main as hrnas

    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    run = tmp_path / "run"
    run.mkdir()
    (run / "search_checkpoint.pt").write_bytes(b"a checkpoint")
    argv = {
        "search": ["search", "--task", "digits_seg", "--out", str(run), "--resume"],
        "study": [
            "study",
            "--task",
            "digits_seg",
            "--storage",
            f"sqlite:///{tmp_path}/s.db",
            "--out",
            str(run),
        ],
        "compare": ["compare", "--task", "digits_seg", "--budget", "10s", "--out", str(run)],
    }[command]
    assert hrnas([*argv, *flags]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in run.iterdir()) == ["search_checkpoint.pt"]  # nothing written
    assert (run / "search_checkpoint.pt").read_bytes() == b"a checkpoint"
    assert not (tmp_path / "s.db").exists()


def test_two_process_cli_search_writes_one_run_folder(tmp_path, monkeypatch, capfd):
    """`hrnas search --devices 2` end to end on the CPU: forked ranks, one NNI experiment, one run folder."""
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    run = tmp_path / "run"
    assert main([*ARGS, "--devices", "2", "--accelerator", "cpu", "--out", str(run), "--json"]) == 0
    result = json.loads(capfd.readouterr().out)
    assert result["devices"]["world_size"] == 2 and result["devices"]["accelerator"] == "cpu"
    assert sorted(p.name for p in run.iterdir()) == [
        "arch.json",
        "model.safetensors",
        "nni",
        "result.json",
        "search_checkpoint.pt",
    ]
    assert len(list((run / "nni").iterdir())) == 1  # one NNI experiment: the ranks did not run their own
    assert load_searched_model(run).cost(tuple(result["input_size"])).macs == result["macs"]


def test_cli_logging_keeps_nni_life_cycle_off_the_console_but_not_its_warnings():
    import logging

    from nni_hrnas.logs import setup_cli_logging

    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Collect()
    logging.getLogger("nni").addHandler(handler)  # where NNI's console handler sits
    try:
        setup_cli_logging()
        logging.getLogger("nni.nas.experiment.experiment").info("Experiment initialized successfully.")
        logging.getLogger("nni.experiment.experiment").info("Experiment stopped")
        config = logging.getLogger("nni.nas.experiment.config.experiment")
        config.warning("`training_service` will be ignored for sequential execution engine.")
        config.warning("another warning")
    finally:
        logging.getLogger("nni").removeHandler(handler)
    assert seen == ["another warning"]


def test_cli_logging_hides_lightnings_internal_warnings_but_not_others():
    import warnings

    from nni_hrnas.logs import setup_cli_logging

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setup_cli_logging()
        warnings.warn(
            "You are trying to `self.log()` but the `self.trainer` reference is not registered on the "
            "model yet.",
            UserWarning,
            stacklevel=2,
        )
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, stacklevel=2)
        warnings.warn("a warning the user should see", UserWarning, stacklevel=2)
    assert [str(w.message) for w in caught] == ["a warning the user should see"]
