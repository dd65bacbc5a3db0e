import numpy as np
import pandas as pd
import pytest
from analysis_fixtures import make_optuna, sample_arch, space_max, write_compare, write_sweep

from analysis.collect import collect
from analysis.figures import (
    architecture_figure,
    hypervolume_figure,
    lambda_eps_figure,
    optuna_figures,
    pareto_figure,
    parse_arch,
    trajectory_figure,
)
from analysis.paper import PAPER_POINTS, load_points, points_for
from analysis.pareto import default_reference, front_table, pareto_mask


def test_parse_arch_layout():
    maxima = space_max()
    maxima.update({"cls_b0_k3": 8, "cls_d1_k5": 4, "not_a_block": 3})
    df = parse_arch(maxima, maxima)
    assert "not_a_block" not in set(df["block"])
    assert set(df["row"]) == {"branch 0", "branch 1", "branch 2", "branch 3", "head"}
    b0s2 = df[(df["row"] == "branch 0") & (df["stage"] == 2)]
    assert list(b0s2["block"]) == ["f2_o0_i0", "f2_o0_i1", "p2_b0_n0", "p2_b0_n1"]  # fusion first
    head = df[df["row"] == "head"]
    assert list(head["block"]) == ["head", "cls_b0", "cls_d1"]
    p = df.set_index("block").loc["p3_b3_n2"]
    assert p["k3_max"] == 4 * 144 and p["tok_max"] == 64
    assert pd.isna(df.set_index("block").loc["f1_o1_i0", "tok"])  # fusion blocks have no transformer


def _traces(fig, prefix):
    return [t for t in fig.data if (t.name or "").startswith(prefix)]


def test_architecture_figure_one_and_two():
    maxima = space_max()
    rng = np.random.default_rng(0)
    a, b = sample_arch(rng, 0.7, maxima), sample_arch(rng, 0.3, maxima)
    fig = architecture_figure([("big", a, maxima)])
    kept = sum(float(np.nansum(t.y)) for t in fig.data if t.type == "bar" and "kept" in t.name)
    removed = sum(float(np.nansum(t.y)) for t in _traces(fig, "removed"))
    total_max = sum(v for k, v in maxima.items() if not k.endswith("_tok"))
    assert kept == pytest.approx(sum(v for k, v in a.items() if not k.endswith("_tok")))
    assert kept + removed == pytest.approx(total_max)
    toks = [t for t in fig.data if t.type == "scatter"]
    assert np.nansum([np.nansum(np.asarray(t.y, dtype=float)) for t in toks]) == sum(
        v for k, v in a.items() if k.endswith("_tok")
    )
    # two side by side: offset groups A and B, each with its own legend entries once
    fig2 = architecture_figure([("big", a, maxima), ("small", b, None)])
    assert {t.offsetgroup for t in fig2.data} == {"A", "B"}
    assert not [t for t in fig2.data if t.offsetgroup == "B" and (t.name or "").startswith("removed")]
    legend = [t.name for t in fig2.data if t.showlegend]
    assert len(legend) == len(set(legend))
    assert "big" in fig2.layout.title.text and "small" in fig2.layout.title.text


def test_pareto_and_hypervolume_figures(tmp_path):
    write_sweep(tmp_path / "s", n=6)
    write_compare(tmp_path / "c")
    table = collect([tmp_path]).table
    ref = default_reference(table)
    fig = pareto_figure(table, ref=ref)
    names = [t.name for t in fig.data]
    assert {"hrnas", "hrnas front", "random", "darts", "HV reference"} <= set(names)
    hr = table[table["strategy"] == "hrnas"]
    front = fig.data[names.index("hrnas front")]
    mask = pareto_mask(hr["metric"], hr["macs"].astype(float))
    assert sorted(front.y) == sorted(hr["metric"][mask])
    assert "FLOPs" in fig.layout.xaxis.title.text
    bubbles = fig.data[names.index("hrnas")]
    assert list(bubbles.marker.size) == list(hr["params"].astype(float))
    fronts = front_table(table, ref)
    hv = hypervolume_figure(fronts, ref, metric_name="mIoU")
    assert list(hv.data[0].y) == list(fronts["hv_share"])
    assert "reference point" in hv.layout.title.text


def test_reference_points_layer(tmp_path):
    ade = points_for("seg_ade20k", PAPER_POINTS, ours_max_metric=0.4)
    assert len(ade) == 4 and (ade["metric"] < 1).all()  # percentages scaled to our fractions
    assert points_for("ade20k", PAPER_POINTS, 40.0)["metric"].gt(30).all()
    assert points_for(None, PAPER_POINTS).empty and points_for("digits_seg", PAPER_POINTS).empty
    own = tmp_path / "points.csv"
    own.write_text("dataset,model,metric,macs\ncityscapes,Mine,74.0,2e9\n")
    mine = points_for("cityscapes", load_points(own))
    assert list(mine["model"]) == ["Mine"] and mine["params"].isna().all()
    with pytest.raises(ValueError, match="lacks columns"):
        load_points(own.with_name("bad.csv")) if own.with_name("bad.csv").write_text("a,b\n1,2\n") else None
    table = pd.DataFrame(
        {
            "strategy": ["hrnas"],
            "metric": [0.33],
            "macs": pd.array([2_000_000_000], dtype="Int64"),
            "params": pd.array([3_000_000], dtype="Int64"),
            "metric_name": ["mIoU"],
        }
    )
    fig = pareto_figure(table, reference_points=ade, reference_note="note")
    layer = [t for t in fig.data if t.name == "reported (papers)"][0]
    assert list(layer.text) == list(ade["model"])


def test_trajectory_and_lambda_eps(tmp_path):
    write_sweep(tmp_path / "s", n=3)
    table = collect([tmp_path]).table
    fig = trajectory_figure(table)
    assert len(fig.data) == 6 and list(fig.data[0].x) == [0, 5, 10, 15, 20]  # epochs of the prune steps
    assert trajectory_figure(table.assign(trajectory=None)) is None
    # a two-phase search: evaluations after the last prune step keep its step number, at later epochs
    two_phase = [
        {"step": s, "epoch": e, "macs": m, "params": 1, "metric": v, "units_removed": 0, "lambda": 0.0}
        for s, e, m, v in [
            (0, 0, 90, None),
            (1, 1, 40, 0.1),
            (2, 2, 20, 0.2),
            (2, 3, 20, 0.3),
            (2, 4, 20, 0.4),
        ]
    ]
    fig = trajectory_figure(table.head(1).assign(trajectory=[two_phase]))
    assert list(fig.data[0].x) == [0, 1, 2, 3, 4] and list(fig.data[1].y)[-3:] == [0.2, 0.3, 0.4]
    lam = lambda_eps_figure(table)
    assert sorted(lam.data[0].x) == sorted(table["lambda"])
    assert lambda_eps_figure(table.assign(**{"lambda": np.nan})) is None


@pytest.mark.parametrize("mode", ["two", "single"])
def test_optuna_figures(tmp_path, mode):
    study = make_optuna(f"sqlite:///{tmp_path / 's.sqlite3'}", mode=mode, n=6)
    figs, skipped = optuna_figures(study, metric_name="mIoU")
    titles = [t for t, _ in figs]
    assert ("Optuna Pareto front" in titles) == (mode == "two")
    assert "Optuna optimisation history (metric)" in titles
    assert "Optuna parameter importances (metric)" in titles, skipped
