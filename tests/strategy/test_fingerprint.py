"""The resume fingerprint: derived from the strategy's settings, and older checkpoints still resume."""

from __future__ import annotations

import inspect
import types

import pytest
import torch

from nni_hrnas.strategy import CheckpointError, DeviceSettings, ProgressiveShrinking
from nni_hrnas.strategy.checkpoint import save_checkpoint
from nni_hrnas.strategy.progressive import NOT_IN_FINGERPRINT, fingerprint_defaults
from nni_hrnas.strategy.run_state import read_resumable

# The fingerprint as checkpoints written before it was derived hold it (listed by hand then).
OLD_KEYS = {
    "config",
    "lambda",
    "eps",
    "prune_every",
    "warmup_epochs",
    "epochs",
    "target_macs",
    "seed",
    "input_size",
    "ema_decay",
    "recalibration_batches",
    "path_overhead",
    "shrink_epochs",
    "world_size",
}


def _fingerprint(**kwargs) -> dict:
    strategy = ProgressiveShrinking(input_size=(3, 32, 32), **kwargs)
    strategy._space = types.SimpleNamespace(config="the space's config")
    return strategy._fingerprint(epochs=4)


def test_every_setting_but_the_excluded_is_in_the_fingerprint():
    settings = [n for n in inspect.signature(ProgressiveShrinking.__init__).parameters if n != "self"]
    fingerprint = _fingerprint()
    assert set(fingerprint) == OLD_KEYS | {
        "target_tolerance",
        "unit_cost",
        "elementwise_weight",
        "min_path_width",
        "final_lr_scale",
    }
    assert set(fingerprint) - {"config", "world_size"} == {
        n.rstrip("_") for n in settings if n not in NOT_IN_FINGERPRINT
    }
    assert (
        fingerprint["lambda"] == 1.4e-4
        and fingerprint["epochs"] == 4
        and fingerprint["input_size"] == [3, 32, 32]
    )
    # each setting that changes the search changes the fingerprint; the excluded ones do not
    changed = {
        "lambda_": 0.5,
        "eps": 0.01,
        "prune_every": 2,
        "warmup_epochs": 1.5,
        "target_macs": 1e6,
        "ema_decay": 0.9,
        "recalibration_batches": 3,
        "seed": 7,
        "target_tolerance": 0.1,
        "path_overhead": 5.0,
        "elementwise_weight": 20.0,
        "min_path_width": 4,
        "shrink_epochs": 2,
        "final_lr_scale": 0.5,
    }
    for name, value in changed.items():
        assert _fingerprint(**{name: value})[name.rstrip("_")] != fingerprint[name.rstrip("_")], name
    assert _fingerprint(resume=True, devices=DeviceSettings(precision="bf16-mixed")) == fingerprint
    assert _fingerprint(devices=DeviceSettings(accelerator="cpu", devices=2))["world_size"] == 2


def test_a_checkpoint_from_before_a_setting_was_fingerprinted_resumes_at_its_default(tmp_path):
    path = tmp_path / "search_checkpoint.pt"
    old = {k: v for k, v in _fingerprint().items() if k in OLD_KEYS}
    save_checkpoint(path, {"fingerprint": old, "weights": torch.ones(2)})
    assert fingerprint_defaults()["target_tolerance"] == 0.05
    payload = read_resumable(path, _fingerprint(), fingerprint_defaults())
    assert torch.equal(payload["weights"], torch.ones(2))
    with pytest.raises(CheckpointError, match="target_tolerance: checkpoint 0.05 vs now 0.1"):
        read_resumable(path, _fingerprint(target_tolerance=0.1), fingerprint_defaults())
    with pytest.raises(CheckpointError, match="eps"):
        read_resumable(path, _fingerprint(eps=0.01), fingerprint_defaults())
