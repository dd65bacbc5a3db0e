"""``--space`` reaches the network every command builds: a study's searches and a comparison's space;
and every command builds the same default space of a task (digits_seg's: 3x3 paths, no transformer).

Checked on the built modules (which transformers and depthwise kernels are there), not on the parsed dict.
"""

from __future__ import annotations

import argparse

import optuna
import pytest
from torch import nn

from nni_hrnas import compare as compare_module
from nni_hrnas.cli import main as hrnas
from nni_hrnas.search import SearchSettings, build_search, search_space
from nni_hrnas.settings import add_arguments, from_args
from nni_hrnas.tasks.registry import get_task
from nni_hrnas.train import space_config
from nni_hrnas.tuning import study as study_module
from nni_hrnas.tuning.study import StudySettings
from search_spaces.ops import LightweightTransformer

#: the opposite of digits_seg's default space on both keys it sets
OVERRIDES = ["--space", "transformer=true", "--space", "kernels=3,5"]


def _depthwise_kernels(net: nn.Module) -> set[int]:
    return {
        m.kernel_size[0]
        for m in net.modules()
        if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1 and m.kernel_size[0] > 1
    }


def _has_transformer(net: nn.Module) -> bool:
    return any(isinstance(m, LightweightTransformer) for m in net.modules())


def _assert_overridden(net: nn.Module) -> None:
    assert _has_transformer(net)
    assert _depthwise_kernels(net) == {3, 5}


def _assert_default(net: nn.Module) -> None:
    """digits_seg's default space: Table 6's multi-branch row, 3x3 paths only and no transformer."""
    assert not _has_transformer(net)
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
    _assert_default(build_search(SearchSettings(task="digits_seg"), tmp_path / "default")[0])  # the control


def test_a_comparison_searches_the_overridden_space():
    space = compare_module.Comparison.space_for("digits_seg", {"transformer": True, "kernels": (3, 5)})
    _assert_overridden(space)


def test_every_command_builds_the_same_default_space_and_a_space_flag_refines_it_key_by_key():
    searched = search_space(SearchSettings(task="digits_seg"))
    _assert_default(searched)
    spec = get_task("digits_seg")
    assert compare_module.Comparison.space_for("digits_seg").config == searched.config  # hrnas compare
    assert space_config(spec, None, []) == searched.config  # hrnas train (its supernet, its --arch)
    # one key given: the other keeps the task's value (transformer back, still 3x3 paths only)
    refined = search_space(SearchSettings(task="digits_seg", space={"transformer": True}))
    assert _has_transformer(refined) and _depthwise_kernels(refined) == {3}
    # the paper's whole space, named in full: the preset itself
    whole = search_space(SearchSettings(task="digits_seg", space={"kernels": (3, 5, 7), "transformer": True}))
    assert _has_transformer(whole) and _depthwise_kernels(whole) == {3, 5, 7}
    # another preset is not narrowed by the task: tiny keeps its own kernels and transformer
    tiny = search_space(SearchSettings(task="digits_seg", preset="tiny"))
    assert _has_transformer(tiny) and _depthwise_kernels(tiny) == {3, 5, 7}


@pytest.mark.parametrize("command", ["study", "compare"])
def test_a_bad_space_key_is_one_line(command, tmp_path, capsys):
    extra = ["--n-trials", "1"] if command == "study" else ["--budget", "10s"]
    argv = [command, "--task", "digits_seg", *extra, "--out", str(tmp_path / "out"), "--space", "nosuch=1"]
    assert hrnas(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nosuch" in err and "known fields" in err, err
    assert not (tmp_path / "out").exists()
