"""``--space KEY=VALUE``: overrides reach the built network, bad keys are one-line errors, run folders reload."""

from __future__ import annotations

import json

import pytest
import torch

from nni_hrnas.cli import main as hrnas
from search_spaces import ConfigError, HRNASNetwork, choice_maxima, get_preset
from search_spaces.config import parse_space_overrides
from search_spaces.ops import LightweightTransformer


def _built(preset: str, items: list[str]) -> HRNASNetwork:
    config = get_preset(preset, **parse_space_overrides(items))
    with torch.device("meta"):
        return HRNASNetwork(config, choice_maxima(config))


def test_overrides_reach_the_built_modules():
    default = _built("digits_seg", [])
    assert any(block.transformer is None for _, block in default.searching_blocks())  # placement 'identity'
    net = _built("digits_seg", ["kernels=3,5", "transformer.placement=all", "granularity=4"])
    blocks = [block for _, block in net.searching_blocks()]
    assert all(set(block.paths) == {"k3", "k5"} for block in blocks)
    assert all(block.transformer is not None for block in blocks)
    no_transformer = _built("digits_seg", ["transformer=false"])
    assert not any(isinstance(m, LightweightTransformer) for m in no_transformer.modules())
    single = _built("digits_seg", ["kernels=7"])
    assert all(set(block.paths) == {"k7"} for _, block in single.searching_blocks())


@pytest.mark.parametrize(
    "item, message",
    [
        ("nosuch=1", "invalid nosuch=1: unknown field"),
        ("transformer.nosuch=2", "invalid transformer.nosuch=2: unknown field"),
        ("kernels=4", "invalid kernels=(4,)"),
        ("granularity", "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_are_one_line_errors(item, message, capsys):
    assert hrnas(["flops", "--preset", "digits_seg", "--space", item]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    with pytest.raises((ConfigError, ValueError)):
        get_preset("digits_seg", **parse_space_overrides([item]))


def test_flops_reports_the_overridden_space(capsys):
    assert hrnas(["flops", "--preset", "digits_seg", "--json"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert hrnas(["flops", "--preset", "digits_seg", "--json", "--space", "transformer=false"]) == 0
    bare = json.loads(capsys.readouterr().out)
    assert bare["transformer"] is False and full["transformer"] is True and bare["macs"] < full["macs"]


def test_a_search_of_an_overridden_space_reloads_from_its_run_folder_alone(tmp_path, monkeypatch, capfd):
    from nni_hrnas.search import load_searched_model
    from nni_hrnas.search import main as search

    monkeypatch.setenv("HRNAS_SMOKE", "1")
    run = tmp_path / "run"
    assert (
        search(
            [
                "search",
                "--task",
                "digits_seg",
                "--preset",
                "tiny",
                "--epochs",
                "1",
                "--space",
                "kernels=3",
                "--space",
                "transformer=false",
                "--out",
                str(run),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capfd.readouterr().out)
    model = load_searched_model(run)  # no --space here: the run folder holds the whole config
    blocks = [block for _, block in model.searching_blocks()]
    assert all(set(block.paths) <= {"k3"} and block.transformer is None for block in blocks)
    assert model.cost(tuple(result["input_size"])).macs == result["macs"]
