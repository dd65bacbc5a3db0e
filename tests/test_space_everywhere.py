"""``--space`` reaches the network every command builds: a study's searches and a comparison's space.

Checked on the built modules (no transformer left, only 3x3 depthwise convs), not on the parsed dict.
"""

from __future__ import annotations

import argparse

import optuna
import pytest
from torch import nn

from nni_hrnas import compare as compare_module
from nni_hrnas.cli import main as hrnas
from nni_hrnas.search import SearchSettings, build_search
from nni_hrnas.settings import add_arguments, from_args
from nni_hrnas.tuning import study as study_module
from nni_hrnas.tuning.study import StudySettings
from search_spaces.ops import LightweightTransformer

OVERRIDES = ["--space", "transformer=false", "--space", "kernels=3"]


def _depthwise_kernels(net: nn.Module) -> set[int]:
    return {
        m.kernel_size[0]
        for m in net.modules()
        if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1 and m.kernel_size[0] > 1
    }


def _assert_overridden(net: nn.Module) -> None:
    assert not any(isinstance(m, LightweightTransformer) for m in net.modules())
    assert _depthwise_kernels(net) == {3}


def test_a_study_searches_the_overridden_space(monkeypatch, tmp_path):
    """The search a study's trial runs is built from the study's ``--space``."""
    parser = argparse.ArgumentParser()
    add_arguments(parser, StudySettings)
    args = parser.parse_args(["--task", "digits_seg", "--out", str(tmp_path), *OVERRIDES])
    settings = StudySettings(**from_args(StudySettings, args))
    captured = []

    class Stop(Exception):
        pass

    def fake_run_search(search_settings, **kwargs):
        captured.append(search_settings)
        raise Stop

    monkeypatch.setattr(study_module, "run_search", fake_run_search)
    trial = optuna.create_study(directions=["maximize", "minimize"]).ask()
    with pytest.raises(Stop):
        study_module.make_objective(settings)(trial)
    _assert_overridden(build_search(captured[0], tmp_path / "run")[0])
    default = build_search(SearchSettings(task="digits_seg"), tmp_path / "default")[0]  # the control
    assert any(isinstance(m, LightweightTransformer) for m in default.modules())
    assert _depthwise_kernels(default) == {3, 5, 7}


def test_a_comparison_searches_the_overridden_space():
    space = compare_module.Comparison.space_for("digits_seg", {"transformer": False, "kernels": (3,)})
    _assert_overridden(space)


@pytest.mark.parametrize("command", ["study", "compare"])
def test_a_bad_space_key_is_one_line(command, tmp_path, capsys):
    extra = ["--n-trials", "1"] if command == "study" else ["--budget", "10s"]
    argv = [command, "--task", "digits_seg", *extra, "--out", str(tmp_path / "out"), "--space", "nosuch=1"]
    assert hrnas(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nosuch" in err and "known fields" in err, err
    assert not (tmp_path / "out").exists()
