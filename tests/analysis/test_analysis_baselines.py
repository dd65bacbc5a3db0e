"""Reference networks ("baselines") next to a search, and reports of a single search run."""

import optuna
import pandas as pd
import pytest
from analysis_fixtures import (
    DEMO_BASELINES,
    make_optuna,
    write_baselines,
    write_compare,
    write_demo,
    write_sweep,
)

from analysis.collect import BASELINE_NAMES, BASELINES, baseline_mask, collect
from analysis.figures import BASELINE_SYMBOLS, lambda_eps_figure, log_lambda_axes, pareto_figure
from analysis.report import HV_OMITTED, build_figures, write_report


@pytest.fixture()
def demo(tmp_path):
    run = tmp_path / "demo"
    write_demo(run)
    return run


def _names(fig) -> list[str]:
    return [t.name for t in fig.data]


def _trace(fig, name: str):
    (trace,) = [t for t in fig.data if t.name == name]
    return trace


def test_collect_reads_baselines(demo, tmp_path):
    coll = collect([demo, demo / "baselines"])
    assert not coll.problems, coll.problems
    table = coll.table
    assert list(table["strategy"]) == ["hrnas"] + [b["strategy"] for b in DEMO_BASELINES]
    assert list(baseline_mask(table)) == [False] + [True] * len(DEMO_BASELINES)
    base = table[baseline_mask(table)]
    assert list(base["train_epochs"]) == [b["epochs"] for b in DEMO_BASELINES]
    assert list(base["train_seconds"]) == [b["train_seconds"] for b in DEMO_BASELINES]
    assert list(base["budget"]) == [b["budget"] for b in DEMO_BASELINES]
    assert set(base["task"]) == {"digits_seg"} and isinstance(base["arch"].iloc[0], dict)
    assert set(BASELINES) == set(BASELINE_NAMES) == set(BASELINE_SYMBOLS)
    # the search strategies of `hrnas compare` (NNI's 'random' among them) stay search results
    write_compare(tmp_path / "cmp", strategies=("hrnas", "random"))
    assert not baseline_mask(collect([tmp_path / "cmp"]).table).any()


def test_pareto_figure_draws_baselines_as_references(demo):
    table = collect([demo, demo / "baselines"]).table
    fig = pareto_figure(table)
    names = _names(fig)
    assert not [n for n in names if n.endswith("front")]  # one search point: no front line
    assert "Pareto front" not in fig.layout.title.text
    assert list(_trace(fig, "hrnas").y) == [0.24]  # the search result alone, no reference in it
    for strategy in ("uniform", "random", "supernet"):
        expected = [b for b in DEMO_BASELINES if b["strategy"] == strategy]
        trace = _trace(fig, BASELINE_NAMES[strategy])
        assert list(trace.y) == [b["metric"] for b in expected]
        assert list(trace.x) == pytest.approx([b["macs"] / 1e6 for b in expected])
        assert trace.marker.symbol == BASELINE_SYMBOLS[strategy] and trace.marker.symbol.endswith("-open")
        assert "text" in trace.mode
        for label, b in zip(trace.text, expected, strict=True):
            assert BASELINE_NAMES[strategy] in label and b["budget"] in label
            assert f"{b['epochs']} epochs" in label


def test_fronts_and_hypervolume_leave_baselines_out(tmp_path):
    write_sweep(tmp_path / "sweep", n=4)
    # a reference network that would dominate every search point and widen the reference box
    best = max(collect([tmp_path / "sweep"]).table["metric"]) + 0.1
    write_baselines(
        tmp_path / "baselines",
        [
            {"strategy": "uniform", "metric": best, "macs": 1_000, "epochs": 3, "train_seconds": 9.0,
             "budget": "same epochs (3)"},
            {"strategy": "supernet", "metric": 0.01, "macs": 9_000_000_000, "epochs": 3, "train_seconds": 9.0,
             "budget": "same epochs (3)"},
        ],
    )  # fmt: skip
    coll = collect([tmp_path])
    searched = coll.table[~baseline_mask(coll.table)]
    figs, _, hv = build_figures(coll)
    pareto = next(f for s, _, f in figs if s == "Pareto fronts")
    assert len(_trace(pareto, "hrnas front").y) >= 2  # the reference network dominates nothing
    assert set(hv["strategy"]) == {"hrnas"} and hv["points"].tolist() == [4]
    assert hv["ref_macs"].iloc[0] < 9e9 and hv["ref_metric"].iloc[0] > 0.01  # nadir of the search only
    assert any(s == "Hypervolume" for s, _, _ in figs)
    lam = next(f for s, _, f in figs if s == "lambda / eps studies")
    assert sorted(lam.data[0].x) == sorted(searched["lambda"])


def test_single_run_report(demo, tmp_path):
    rep = write_report([demo, demo / "baselines"], tmp_path / "demo.html", title="demo")
    text = rep.html.read_text()
    assert rep.rows == 1 + len(DEMO_BASELINES) and not rep.problems
    assert [f.split(": ", 1)[1] for f in rep.figures] == ["metric vs MACs", "architecture", "trajectory"]
    assert "<h2>Hypervolume</h2>" not in text and "Hypervolume per strategy</h2>" not in text
    assert text.count("id='hv-omitted'") == 1 and HV_OMITTED.split(":")[0] in text
    assert "lambda / eps" not in text and "HV reference" not in text
    assert "best random architecture at the same MACs" in text  # the baseline traces are in the page
    results = text[text.index("<h2>Results</h2>") :]
    for column in ("train_epochs", "train_seconds", "budget"):
        assert f"<th>{column}</th>" in results
    assert "same epochs (6)" in results and "210.5" in results and "&lt;NA&gt;" not in results
    exported = pd.read_csv(rep.csv)
    assert exported["on_front"].tolist() == [True] + [False] * len(DEMO_BASELINES)  # references: no front
    coll = collect([demo, demo / "baselines"])
    assert build_figures(coll)[2].empty
    again = write_report(coll, tmp_path / "x.html", csv=False, parquet=False).html.read_text()
    assert "id='hv-omitted'" in again


def test_search_report_without_baselines_has_no_training_columns(tmp_path):
    write_sweep(tmp_path / "sweep", n=3)
    text = write_report([tmp_path / "sweep"], tmp_path / "r.html", csv=False, parquet=False).html.read_text()
    assert "Hypervolume per strategy</h2>" in text and "hv-omitted" not in text
    for column in ("train_epochs", "train_seconds", "budget"):
        assert f"<th>{column}</th>" not in text


def test_lambda_axes_are_logarithmic(tmp_path):
    write_sweep(tmp_path / "sweep", n=3)
    table = collect([tmp_path]).table
    fig = lambda_eps_figure(table)
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis2.type == "log"
    assert lambda_eps_figure(table.iloc[:1]) is None  # one lambda: no lambda view
    assert lambda_eps_figure(table.assign(**{"lambda": 0.3})) is None
    zero = table.copy()
    zero.loc[zero.index[0], "lambda"] = 0.0  # not drawable on a log axis: left out, and said so
    fig = lambda_eps_figure(zero)
    assert len(fig.data[0].x) == 2 and "lambda <= 0" in fig.layout.title.text
    assert lambda_eps_figure(zero.iloc[:2]) is None


def test_optuna_lambda_axes_are_logarithmic(tmp_path):
    study = make_optuna(f"sqlite:///{tmp_path / 's.sqlite3'}", n=6)
    fig = optuna.visualization.plot_slice(
        study, params=["lambda"], target=lambda t: t.values[0], target_name="mIoU"
    )
    assert fig.layout.xaxis.title.text == "lambda" and fig.layout.xaxis.type != "log"
    assert log_lambda_axes(fig).layout.xaxis.type == "log"
    assert log_lambda_axes(pareto_figure(collect([tmp_path]).table)).layout.xaxis.type != "log"
