"""`hrnas flops`: totals and breakdowns as JSON, clear errors for bad input."""

import json

import pytest

from nni_hrnas.cli import main
from search_spaces import HRNASSpace


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_flops_json_matches_the_space(capsys):
    out = run_json(capsys, "flops", "--preset", "digits_seg", "--json")
    space = HRNASSpace.from_preset("digits_seg")
    net = space.freeze(space.max_sample())
    assert out["macs"] == net.cost().macs and out["params"] == sum(p.numel() for p in net.parameters())
    assert sum(v["macs"] for v in out["branches"].values()) == out["macs"]
    assert sum(v["macs"] for v in out["stages"].values()) == out["macs"]
    assert {"stem", "b0", "b3", "head"} <= set(out["branches"])


def test_flops_input_size_and_no_transformer(capsys):
    full = run_json(capsys, "flops", "--preset", "cityscapes", "--input", "3x512x1024", "--json")
    half = run_json(capsys, "flops", "--preset", "cityscapes", "--input", "3x256x512", "--json")
    plain = run_json(capsys, "flops", "--preset", "cityscapes", "--no-transformer", "--json")
    assert half["macs"] < full["macs"] / 3.9  # conv MACs scale with the area; transformers do not
    assert plain["macs"] < full["macs"] and plain["params"] < full["params"]


def test_flops_of_an_arch_file(tmp_path, capsys):
    space = HRNASSpace.from_preset("tiny")
    arch = {label: values[len(values) // 2] for label, values in space.choices().items()}
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    out = run_json(capsys, "flops", "--preset", "tiny", "--arch", str(tmp_path / "arch.json"), "--json")
    assert out["macs"] == space.freeze(arch).cost().macs


def test_flops_human_output_says_macs(capsys):
    assert main(["flops", "--preset", "tiny"]) == 0
    text = capsys.readouterr().out
    assert "MACs" in text and "FLOPs" in text and "per branch" in text


@pytest.mark.parametrize("argv, message", [
    (["flops", "--preset", "cityscapes", "--input", "3x500x1024"], "multiples of 32"),
    (["flops", "--preset", "cityscapes", "--input", "1x512x1024"], "3 input channels"),
])
def test_flops_bad_input(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_flops_unknown_preset(capsys):
    with pytest.raises(SystemExit):
        main(["flops", "--preset", "pascal"])
    assert "invalid choice" in capsys.readouterr().err
