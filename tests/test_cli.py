"""`hrnas flops`: totals and breakdowns as JSON, clear errors for bad input."""

import csv
import json
import os
import subprocess
import sys

import pytest

from nni_hrnas.cli import build_parser, main
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


def test_flops_of_a_task_is_the_space_its_search_builds(capsys):
    from nni_hrnas.search import SearchSettings, search_space

    out = run_json(capsys, "flops", "--task", "digits_seg", "--json")
    space = search_space(SearchSettings(task="digits_seg"))
    net = space.freeze(space.max_sample())
    assert out["macs"] == net.cost().macs and out["params"] == sum(p.numel() for p in net.parameters())
    assert not out["transformer"]  # digits_seg's space: 3x3 paths only, no transformer
    assert out["macs"] < run_json(capsys, "flops", "--preset", "digits_seg", "--json")["macs"] / 3
    # --space still refines it: the transformer back
    back = run_json(capsys, "flops", "--task", "digits_seg", "--space", "transformer=true", "--json")
    assert back["transformer"] and back["macs"] > out["macs"]
    assert main(["flops"]) == 2
    assert "--preset NAME or --task NAME" in capsys.readouterr().err


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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["flops", "--preset", "cityscapes", "--input", "3x500x1024"], "multiples of 32"),
        (["flops", "--preset", "cityscapes", "--input", "1x512x1024"], "3 input channels"),
    ],
)
def test_flops_bad_input(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_flops_unknown_preset(capsys):
    with pytest.raises(SystemExit):
        main(["flops", "--preset", "pascal"])
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "1.5", "-0.1", "nan", "ten"])
def test_demo_refuses_a_budget_share_outside_0_1(value, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--target-share", value])
    assert exc.value.code == 2
    assert f"expected a share in (0, 1] such as 0.1, or none, got {value!r}" in capsys.readouterr().err


def test_demo_budget_share_none_means_no_budget():
    args = build_parser().parse_args(["demo", "--target-share", "None"])
    assert args.target_share is None


def test_demo_refuses_zero_epochs_in_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["demo", "--epochs", "0", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "hrnas demo: error: invalid epochs=0: expected an integer >= 1"
    assert not (tmp_path / "demo").exists()


@pytest.mark.slow
def test_demo_prints_the_search_against_its_alternatives_and_writes_the_report(tmp_path):
    """`hrnas demo` at smoke scale, with no flag: the README's budget of a tenth of the supernet's
    MACs, its minimum path width of 8 and half the learning rate for the final architecture. The
    summary compares the searched network with the supernet and the uniformly slimmed network trained
    for the same time, and nothing of Lightning's notices."""
    out = tmp_path / "demo"
    env = dict(os.environ, HRNAS_SMOKE="1", OMP_NUM_THREADS="1")
    env.pop("CI", None)  # Lightning's notices are on outside CI: they must still not reach the output
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from nni_hrnas.cli import main; sys.exit(main())",
            "demo",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "Tip:" not in text and "GPU available" not in text and "TPU available" not in text
    result = json.loads((out / "result.json").read_text())
    assert 0.0 <= result["metric"] <= 1.0
    # the budget asked for: a tenth of the supernet's MACs. The search lands at most target_tolerance
    # (5%) above it, or just under it: at smoke scale its one prune step takes 90% of the supernet at
    # once, removing whole paths under 8 channels, and then puts back units while the budget holds
    # (before it did, the step landed 10-15% under)
    assert result["target_macs"] == round(0.1 * result["macs_max"])
    assert 0.98 * result["target_macs"] <= result["macs"] <= 1.05 * result["target_macs"]
    assert "10% of the supernet's):" in proc.stdout
    assert result["min_path_width"] == 8  # the flag reached the search: no path of 1-7 channels is left
    assert not [width for width in result["arch"].values() if 0 < width < 8], result["arch"]
    assert result["final_lr_scale"] == 0.5 and result["shrink_epochs"] < result["epochs"]
    rows = {r["strategy"]: r for r in csv.DictReader((out / "baselines" / "results.csv").open())}
    assert set(rows) == {"supernet", "uniform"}
    assert int(rows["supernet"]["macs"]) == result["macs_max"]
    assert abs(int(rows["uniform"]["macs"]) - result["macs"]) <= 0.03 * result["macs"]
    for row in rows.values():
        assert 0.0 <= float(row["metric"]) <= 1.0 and int(row["epochs"]) >= 1
        assert f"{float(row['metric']):.4f}" in proc.stdout
    assert f"miou {result['metric']:.4f}" in proc.stdout
    assert "supernet slimmed uniformly to the same MACs" in proc.stdout
    html = (out / "report.html").read_text()
    assert "supernet slimmed uniformly to the same MACs" in html


def _arch_file(tmp_path, edit):
    space = HRNASSpace.from_preset("tiny")
    arch = dict(space.max_sample())
    text = edit(arch)
    path = tmp_path / "arch.json"
    path.write_text(text if isinstance(text, str) else json.dumps(arch))
    return path


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda a: '{"p0_b0_n0_k3": 8,', "not valid JSON (line 1, column"),
        (lambda a: "[1, 2]", "expected a mapping of choice labels to widths"),
        (lambda a: a.update(p0_b0_n0_k9=8), "'p0_b0_n0_k9'"),
        (lambda a: a.update(p0_b0_n0_k33=8), "did you mean 'p0_b0_n0_k3'?"),
        (lambda a: a.pop("p0_b0_n0_k3"), "missing e.g. ['p0_b0_n0_k3']"),
        (lambda a: a.update(p0_b0_n0_k3="8"), "allowed: 0..8"),
        (lambda a: a.update(p0_b0_n0_k3=True), "allowed: 0..8"),
        (lambda a: a.update(p0_b0_n0_k3=9), "allowed: 0..8"),
    ],
)
def test_bad_arch_file_is_one_clear_line(tmp_path, capsys, edit, message):
    path = _arch_file(tmp_path, edit)
    assert main(["flops", "--preset", "tiny", "--arch", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and str(path) in err and "Traceback" not in err and len(err.splitlines()) == 1
