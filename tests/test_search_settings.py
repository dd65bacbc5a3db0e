"""Each search setting declared once: its flag, its parsing, its check and its way to the strategy
all come from the SearchSettings field (nni_hrnas.settings derives them)."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from nni_hrnas.search import SearchError, SearchSettings, add_search_arguments, search_kwargs
from nni_hrnas.strategy import ProgressiveShrinking
from search_spaces.config import parse_space_overrides

#: The flags of `hrnas search` at 0a5253d (README, "Searching"), before they were derived.
SEARCH_FLAGS = {
    "--task",
    "--preset",
    "--space",
    "--lambda",
    "--eps",
    "--target-macs",
    "--epochs",
    "--prune-every",
    "--warmup-epochs",
    "--shrink-epochs",
    "--batch-size",
    "--path-overhead",
    "--elementwise-weight",
    "--latency-batch",
    "--latency-runtime",
    "--seed",
    "--data-root",
    "--out",
    "--resume",
    "--json",
    "--accelerator",
    "--devices",
    "--num-nodes",
    "--precision",
    "--no-channels-last",
    "--unit-cost",  # added by issue 12
    "--min-path-width",  # added by issue 10
    "--final-lr-scale",  # added by issue 10
}
#: The flags of `python -m nni_hrnas.trial` at 0a5253d.
TRIAL_FLAGS = {
    "--task",
    "--preset",
    "--epochs",
    "--seed",
    "--data-root",
    "--threads",
    "--accelerator",
    "--devices",
    "--num-nodes",
    "--precision",
    "--no-channels-last",
}
#: What build_search handed ProgressiveShrinking by name at 0a5253d (besides input_size, checkpoint_dir,
#: on_epoch_end and devices, which it computes).
FORWARDED = {
    "lambda_",
    "eps",
    "prune_every",
    "warmup_epochs",
    "epochs",
    "shrink_epochs",
    "target_macs",
    "ema_decay",
    "elementwise_weight",
    "recalibration_batches",
    "seed",
    "resume",
    "path_overhead",
    "unit_cost",  # added by issue 12
    "min_path_width",  # added by issue 10
    "final_lr_scale",  # added by issue 10
}


def flags_of(parser: argparse.ArgumentParser) -> set[str]:
    return {
        flag for action in parser._actions for flag in action.option_strings if flag not in ("-h", "--help")
    }


def settings_from(*argv: str) -> SearchSettings:
    args = add_search_arguments(argparse.ArgumentParser()).parse_args(["--task", "digits_seg", *argv])
    return SearchSettings(**search_kwargs(args))


def values(settings: SearchSettings) -> dict:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def test_the_search_flags_are_the_documented_ones():
    assert flags_of(add_search_arguments(argparse.ArgumentParser())) == SEARCH_FLAGS


def test_no_flag_given_is_the_task_default(monkeypatch):
    monkeypatch.delenv("HRNAS_SMOKE", raising=False)
    assert values(settings_from()) == values(SearchSettings(task="digits_seg"))


@pytest.mark.parametrize(
    "flag, text, name, value",
    [
        # another preset: the task's own space overrides (digits_seg's: 3x3 paths, no transformer) go
        ("--preset", "tiny", "preset", "tiny"),
        # --space refines the task's overrides key by key: kernels given, the transformer still off
        ("--space", "kernels=3,5", "space", {**parse_space_overrides(["kernels=3,5"]), "transformer": False}),
        ("--lambda", "0.01", "lambda_", 0.01),
        ("--eps", "0.002", "eps", 0.002),
        ("--target-macs", "5e6", "target_macs", 5e6),
        ("--epochs", "4", "epochs", 4),
        ("--prune-every", "2", "prune_every", 2),
        ("--warmup-epochs", "0.5", "warmup_epochs", 0.5),
        ("--shrink-epochs", "2", "shrink_epochs", 2),
        ("--batch-size", "4", "batch_size", 4),
        ("--path-overhead", "2e6", "path_overhead", 2e6),
        ("--unit-cost", "paper", "unit_cost", "paper"),
        ("--elementwise-weight", "30", "elementwise_weight", 30.0),
        ("--min-path-width", "4", "min_path_width", 4),
        ("--final-lr-scale", "0.5", "final_lr_scale", 0.5),
        ("--latency-batch", "4", "latency_batch", 4),
        ("--latency-runtime", "onnxruntime", "latency_runtime", "onnxruntime"),
        ("--seed", "3", "seed", 3),
        ("--data-root", "/data", "data_root", "/data"),
        ("--out", "runs/x", "out", "runs/x"),
        ("--accelerator", "cpu", "accelerator", "cpu"),
        ("--precision", "bf16-mixed", "precision", "bf16-mixed"),
        ("--no-channels-last", None, "channels_last", False),
    ],
)
def test_each_flag_sets_its_setting_and_nothing_else(flag, text, name, value, monkeypatch):
    monkeypatch.delenv("HRNAS_SMOKE", raising=False)
    got = values(settings_from(flag, *([text] if text is not None else [])))
    expected = {**values(SearchSettings(task="digits_seg")), name: value}
    if flag == "--preset":
        expected["space"] = None
    assert got == expected


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lambda_": -1}, "invalid lambda=-1: expected a number >= 0"),
        ({"eps": 0}, "invalid eps=0: expected 0 < eps < 1"),
        ({"epochs": 0}, "invalid epochs=0: expected an integer >= 1"),
        ({"epochs": 2.5}, "invalid epochs=2.5: expected an integer >= 1"),
        ({"prune_every": 0}, "invalid prune_every=0: expected an integer >= 1"),
        ({"warmup_epochs": -1.0}, "invalid warmup_epochs=-1.0: expected a number >= 0"),
        (
            {"shrink_epochs": 0},
            "invalid shrink_epochs=0: expected an integer >= 1 (epochs of pruning before the final",
        ),
        ({"target_macs": 0}, "invalid target_macs=0: expected a positive number of MACs"),
        ({"final_lr_scale": 0}, "invalid final_lr_scale=0: expected a positive factor"),
        # shrinking throughout (the paper's schedule): there are no epochs after shrinking to scale
        (
            {"epochs": 4, "shrink_epochs": 4, "final_lr_scale": 0.5, "smoke": False},
            "invalid final_lr_scale=0.5: it scales the epochs that train the final architecture, and "
            "this search shrinks for all 4; set --shrink-epochs below --epochs",
        ),
        ({"seed": -1}, "invalid seed=-1: expected an integer >= 0"),
        ({"batch_size": 0}, "invalid batch_size=0: expected an integer >= 1"),
        (
            {"path_overhead": -1.0},
            "invalid path_overhead=-1.0: expected a number of MAC-equivalents >= 0, or 'auto'",
        ),
        ({"latency_batch": 0}, "invalid latency_batch=0: expected an integer >= 1"),
        ({"unit_cost": "flops"}, "invalid unit_cost='flops': expected exact or paper"),
        ({"latency_runtime": "tflite"}, "invalid latency_runtime='tflite': expected torch or onnxruntime"),
        ({"resume": True}, "invalid resume=True: --resume needs --out RUN_DIR"),
        ({"preset": "nosuch"}, "invalid preset='nosuch': known presets:"),
    ],
)
def test_each_declared_check_names_the_setting(kwargs, message):
    with pytest.raises(SearchError) as error:
        SearchSettings(task="digits_seg", **kwargs)
    assert message in str(error.value)


def test_the_tasks_final_learning_rate_applies_only_where_the_final_architecture_trains():
    """digits_seg's default final_lr_scale (0.5) scales the epochs after shrinking; a search that shrinks
    throughout has none, so it gets 1 instead of the error an explicit 0.5 gets (above)."""
    assert SearchSettings(task="digits_seg", smoke=False).final_lr_scale == 0.5
    assert SearchSettings(task="digits_seg", epochs=4, shrink_epochs=2, smoke=False).final_lr_scale == 0.5
    throughout = SearchSettings(task="digits_seg", epochs=4, shrink_epochs=4, smoke=False)
    assert throughout.final_lr_scale == 1.0
    assert SearchSettings(task="kitti_sim", smoke=False).final_lr_scale == 1.0


def test_the_strategy_gets_every_forwarded_setting_by_name():
    settings = SearchSettings(task="digits_seg", shrink_epochs=2, target_macs=3e6, smoke=False)
    kwargs = settings.strategy_kwargs()
    assert set(kwargs) == FORWARDED
    strategy = ProgressiveShrinking(**kwargs)
    for name in FORWARDED:
        assert getattr(strategy, name) == getattr(settings, name), name


def test_the_trial_takes_the_search_flags_and_the_tuners_parameters(tmp_path, monkeypatch):
    from nni_hrnas.trial import build_parser, trial_settings

    monkeypatch.delenv("HRNAS_SMOKE", raising=False)
    flags = flags_of(build_parser())
    assert TRIAL_FLAGS <= flags
    assert flags == SEARCH_FLAGS - {"--out", "--resume", "--json"} | {"--threads"}
    args = build_parser().parse_args(["--task", "digits_seg", "--epochs", "4", "--lambda", "0.5"])
    # a tuner's quniform gives 2.0 for an int setting: taken as 2, as the flag would give it
    settings = trial_settings(args, {"lambda": 0.02, "eps": 0.004, "shrink_epochs": 2.0}, tmp_path / "search")
    expected = {
        **values(SearchSettings(task="digits_seg")),
        "epochs": 4,
        "lambda_": 0.02,
        "eps": 0.004,
        "shrink_epochs": 2,
        "out": str(tmp_path / "search"),
    }
    assert values(settings) == expected  # the tuner's lambda over the flag's
    assert type(settings.shrink_epochs) is int
    with pytest.raises(SearchError, match=r"\['lamda'\], which name no search setting"):
        trial_settings(args, {"lambda": 0.02, "eps": 0.004, "lamda": 1}, tmp_path / "search")
    with pytest.raises(SystemExit, match="searchSpace must define lambda and eps"):
        trial_settings(args, {"lambda": 0.02}, tmp_path / "search")
