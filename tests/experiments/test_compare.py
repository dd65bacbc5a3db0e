"""`hrnas compare`: budgets, bad input, and a smoke-scale run of HR-NAS against two NNI strategies."""

import json

import pandas as pd
import pytest
from collected import assert_metric, assert_row_is_the_result, collect_rows

from nni_hrnas.cli import main
from nni_hrnas.compare import Budget, CompareError, CompareSettings, Comparison, parse_budget
from nni_hrnas.tasks import get_task


@pytest.mark.parametrize(
    "text, budget",
    [
        ("20m", Budget(seconds=1200)),
        ("90s", Budget(seconds=90)),
        ("1.5h", Budget(seconds=5400)),
        ("50000img", Budget(images=50000)),
    ],
)
def test_parse_budget(text, budget):
    assert parse_budget(text) == budget


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"budget": "0m"}, "positive"),
        ({"budget": "soon"}, "expected e.g. 20m"),
        ({"budget": "1m", "strategies": ["hrnas", "enas"]}, "choose from"),
        ({"budget": "1m", "strategies": []}, "choose from"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(CompareError, match=message):
        CompareSettings(task="digits_seg", **kwargs)


def test_every_strategy_is_evaluated_with_the_search_batch_and_learning_rate(tmp_path, monkeypatch):
    # the search's learning rate is set for its small batches; with the plain recipe's batch of 32 at
    # that rate, a 10-epoch evaluation left the digits_seg supernet at 0.23 mIoU (README)
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    spec = get_task("digits_seg")
    evaluator = Comparison(CompareSettings(task="digits_seg", budget="1m", out=str(tmp_path))).evaluator(1)
    assert evaluator.train_dataloaders.batch_size == 8 != spec.train.batch_size
    assert evaluator.module.optim_config["learning_rate"] == 1e-2
    assert evaluator.module.optim_config["optimizer"] == "adamw"


@pytest.mark.slow
def test_spos_stays_within_an_image_budget(tmp_path, monkeypatch):
    """Three evaluations' worth of images: the supernet, the ranking's BN recalibrations and the one
    evaluation all fit. Training the supernet on 70% of it, as before, ran a third over."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    settings = CompareSettings(task="digits_seg", budget="1img", eval_epochs=1, out=str(tmp_path / "cmp"))
    comparison = Comparison(settings)
    budget = 3 * comparison.train_images  # one evaluation trains once over the training images
    comparison.settings.parsed_budget = Budget(images=budget)
    rows = comparison.run_one_shot("spos")
    assert rows  # the supernet's front has at least one network, and one evaluation is set aside for it
    images_used = int(rows[-1]["budget_used"].split(", ")[1].removesuffix(" images"))
    assert budget - comparison.train_images < images_used <= budget


@pytest.mark.slow
def test_smoke_compare_writes_one_table_and_a_report(tmp_path, monkeypatch, capfd):
    capsys = capfd  # file-descriptor level: NNI's engines print to the process's stdout
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # NNI's default experiment folder lives there
    monkeypatch.setenv(
        "HRNAS_CACHE", str(tmp_path / "cache")
    )  # the digits cache is not NNI's: kept out of HOME
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    out = tmp_path / "cmp"
    assert (
        main(
            [
                "compare",
                "--task",
                "digits_seg",
                "--budget",
                "768img",
                "--strategies",
                "hrnas,random,spos",
                "--eval-epochs",
                "1",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)  # stdout holds our JSON and nothing else
    assert not (tmp_path / "home").exists() and (out / "nni").is_dir()  # NNI's folders stay inside --out
    table = pd.read_csv(out / "results.csv")
    assert set(table["strategy"]) == {"hrnas", "random", "spos"} == set(summary["strategies"])
    space = Comparison.space_for("digits_seg")  # the task's space (3x3 paths, no transformer)
    for _, row in table.iterrows():
        net = space.freeze(json.loads(row["arch"]))  # every architecture is a valid sample of the space
        assert net.cost().macs == row["macs"] and net.cost().params == row["params"]
        assert_metric(row["metric"])
    # the analysis reads this real compare folder: each results.csv row, field by field
    collected = collect_rows(out)
    compare_rows = collected[collected["kind"] == "compare"]
    assert len(compare_rows) == len(table)
    for (_, got), (_, want) in zip(compare_rows.iterrows(), table.iterrows(), strict=True):
        assert_row_is_the_result(got, {**want.to_dict(), "arch": json.loads(want["arch"])})
        assert got["budget"] == want["budget"]
    # the report's results table lists every row of this comparison (not only a page holding plotly.js)
    results = (out / "report.html").read_text().split("<h2>Results</h2>", 1)[1]
    for _, row in table.iterrows():
        assert f"<td>{row['strategy']}</td>" in results and f"<td>{row['metric']:.4g}</td>" in results
    # the table is never overwritten; --resume keeps what is there and runs only what is missing
    assert (
        main(
            [
                "compare",
                "--task",
                "digits_seg",
                "--budget",
                "768img",
                "--strategies",
                "hrnas",
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "pass --resume" in capsys.readouterr().err
    assert (
        main(
            [
                "compare",
                "--task",
                "digits_seg",
                "--budget",
                "1024img",
                "--strategies",
                "hrnas",
                "--out",
                str(out),
                "--resume",
            ]
        )
        == 2
    )
    assert "same --task and --budget" in capsys.readouterr().err
    assert (
        main(
            [
                "compare",
                "--task",
                "digits_seg",
                "--budget",
                "768img",
                "--strategies",
                "hrnas,random",
                "--eval-epochs",
                "1",
                "--out",
                str(out),
                "--resume",
                "--json",
            ]
        )
        == 0
    )
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), table)  # both were done: nothing rerun
