"""`hrnas check`: what nnictl create would trip on, named with its fix before anything starts."""

import socket
from pathlib import Path

import pytest
import yaml

from nni_hrnas.cli import main
from nni_hrnas.config_check import check_config

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
ROOT_ENVS = ("CITYSCAPES_ROOT", "ADE20K_ROOT", "COCO_ROOT", "IMAGENET_ROOT", "KITTI_ROOT")


@pytest.fixture
def data_roots(tmp_path, monkeypatch):
    for name in ROOT_ENVS:
        monkeypatch.setenv(name, str(tmp_path))


@pytest.mark.parametrize("config", sorted(p.name for p in EXPERIMENTS.glob("*.yml")))
def test_shipped_configs_pass(config, data_roots):
    assert check_config(EXPERIMENTS / config) == []


def _variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load((EXPERIMENTS / "digits.yml").read_text())
    edit(data)
    path = tmp_path / "variant.yml"
    path.write_text(yaml.safe_dump(data))
    return path


TRIAL = "python -m nni_hrnas.trial --task digits_seg"


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c.update(maxTrialNumbr=3), "did you mean 'maxTrialNumber'"),
        (lambda c: c.update(trialConcurrency="two"), "trial_concurrency"),
        (lambda c: c["tuner"]["classArgs"].update(objectives="both"), "objectives must be one of"),
        (
            lambda c: c["tuner"]["classArgs"].update(storage="sqlite:////no/such/dir/x.db"),
            "cannot open Optuna storage",
        ),
        (
            lambda c: c["searchSpace"].update({"lambda": {"_type": "loguniform", "_value": [1e-2, 1e-4]}}),
            "'lambda': empty range",
        ),
        (
            lambda c: c["searchSpace"].update(eps={"_type": "uniform", "_value": [-0.1, 0.1]}),
            "'eps': must not be negative",
        ),
        (lambda c: c["searchSpace"].pop("eps"), "searchSpace has no ['eps']"),
        (lambda c: c.update(trialCommand="python -m nni_hrnas.trial --task digitz"), "digitz"),
        (
            lambda c: c.update(trialCommand="python -m nni_hrnas.trial --task cityscapes"),
            "export CITYSCAPES_ROOT=",
        ),
        (
            lambda c: c.update(trialCommand=f"{TRIAL} --accelerator cuda --devices 2", trialGpuNumber=1),
            "--devices 2, but trialGpuNumber: 1 gives each trial 1 GPU(s): set trialGpuNumber: 2",
        ),
        (
            lambda c: c.update(trialCommand=f"{TRIAL} --accelerator cuda"),
            "NNI gives the trial no GPU; set trialGpuNumber: 1",
        ),
        (
            lambda c: c.update(trialCommand=f"{TRIAL} --accelerator cpu", trialGpuNumber=1),
            "set trialGpuNumber: 0",
        ),
        (
            lambda c: (
                c.update(trialCommand=f"{TRIAL} --accelerator cuda --devices 2", trialGpuNumber=2),
                c["trainingService"].update(gpuIndices=[0]),
            ),
            "gpuIndices lists 1 GPU(s), fewer than trialGpuNumber: 2",
        ),
        (
            lambda c: c.update(trialCommand=f"{TRIAL} --precision fp8"),
            "trialCommand: invalid --precision 'fp8'",
        ),
        (lambda c: c.update(trialCommand=f"{TRIAL} --num-nodes 2"), "an nnictl trial runs on one machine"),
        (lambda c: (c.update(trialGpuNumber=1), c["trainingService"].pop("useActiveGpu")), "use_active_gpu"),
    ],
)
def test_bad_configs_are_named_with_their_fix(tmp_path, monkeypatch, edit, expected):
    monkeypatch.delenv("CITYSCAPES_ROOT", raising=False)
    problems = check_config(_variant(tmp_path, edit))
    assert len(problems) == 1 and expected in problems[0], problems


def test_a_port_in_use_and_the_command_line(tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["check", str(EXPERIMENTS / "digits.yml"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"port {port} is in use" in err and f"nnictl stop --port {port}" in err
    assert main(["check", str(EXPERIMENTS / "digits.yml"), "--port", str(port)]) == 0  # free again
    bad = tmp_path / "bad.yml"
    bad.write_text("experimentName: [unclosed\n")
    assert main(["check", str(bad)]) == 2
    assert "is not valid YAML" in capsys.readouterr().err


def test_a_gpu_request_this_machine_cannot_meet_is_a_warning():
    import torch

    from nni_hrnas.config_check import gpu_warnings

    have = torch.cuda.device_count()
    assert gpu_warnings({"trialGpuNumber": 0}) == []
    (warning,) = gpu_warnings({"trialGpuNumber": have + 1})
    assert f"trialGpuNumber: {have + 1}, but this machine has {have} CUDA GPU(s)" in warning
