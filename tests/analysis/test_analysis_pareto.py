import numpy as np
import pandas as pd
import pytest

from analysis.pareto import ReferencePoint, default_reference, front_table, hypervolume_2d, pareto_mask


def brute_mask(metric, macs):
    n = len(metric)
    out = np.ones(n, dtype=bool)
    for i in range(n):
        for j in range(n):
            if metric[j] >= metric[i] and macs[j] <= macs[i] and (metric[j] > metric[i] or macs[j] < macs[i]):
                out[i] = False
    return out


@pytest.mark.parametrize("seed", range(20))
def test_pareto_mask_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    # coarse values force ties in either objective and duplicates
    metric = rng.integers(0, 8, n).astype(float)
    macs = rng.integers(0, 8, n).astype(float)
    np.testing.assert_array_equal(pareto_mask(metric, macs), brute_mask(metric, macs))


def test_pareto_mask_ignores_nan():
    mask = pareto_mask([0.5, np.nan, 0.7], [1.0, 0.1, np.nan])
    assert mask.tolist() == [True, False, False]


@pytest.mark.parametrize("seed", range(200))
def test_hypervolume_matches_moocore(seed):
    moocore = pytest.importorskip(
        "moocore", reason="moocore is the independent hypervolume reference ([dev])"
    )
    rng = np.random.default_rng(1000 + seed)
    n = int(rng.integers(1, 80))
    kind = seed % 4
    if kind == 0:  # scattered points, most of them dominated
        metric, macs = rng.uniform(0.3, 0.8, n), rng.uniform(1e8, 3e9, n)
    elif kind == 1:  # a true trade-off front plus noise
        macs = np.sort(rng.uniform(1e8, 3e9, n))
        metric = 0.5 + 0.3 * np.log(macs / 1e8) / np.log(30) + rng.normal(0, 0.01, n)
    elif kind == 2:  # many ties and duplicates
        metric, macs = rng.integers(0, 6, n) / 10, rng.integers(1, 6, n) * 1e8
    else:  # some points outside the reference box
        metric, macs = rng.uniform(0, 1, n), rng.uniform(0, 10, n)
    ref_metric = float(np.quantile(metric, 0.2)) if kind == 3 else float(metric.min()) - 0.01
    ref_macs = float(np.quantile(macs, 0.8)) if kind == 3 else float(macs.max()) * 1.1
    ours = hypervolume_2d(metric, macs, ref_metric, ref_macs)
    outside = (metric < ref_metric) | (macs > ref_macs)
    pts = np.column_stack([-metric, macs])[~outside]  # moocore minimises; drop points beyond the ref
    theirs = moocore.hypervolume(pts, ref=[-ref_metric, ref_macs]) if len(pts) else 0.0
    assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)
    # only the front matters
    mask = pareto_mask(metric, macs)
    assert hypervolume_2d(metric[mask], macs[mask], ref_metric, ref_macs) == pytest.approx(ours, rel=1e-12)


def test_hypervolume_by_hand():
    # two points: (metric 0.8, 1 GMAC), (0.9, 2 GMAC) against (0.5, 3 GMAC)
    hv = hypervolume_2d([0.8, 0.9, 0.6], [1.0, 2.0, 2.5], 0.5, 3.0)
    assert hv == pytest.approx((3 - 1) * (0.8 - 0.5) + (3 - 2) * (0.9 - 0.8))
    assert hypervolume_2d([], [], 0.0, 1.0) == 0.0
    assert hypervolume_2d([0.4], [5.0], 0.5, 3.0) == 0.0


def test_front_table_per_strategy():
    df = pd.DataFrame(
        {
            "strategy": ["a", "a", "b", "b"],
            "metric": [0.8, 0.9, 0.7, 0.85],
            "macs": pd.array([100, 200, 50, 300], dtype="Int64"),
        }
    )
    ref = default_reference(df, margin=0.0)
    assert ref == ReferencePoint(0.7, 300.0, ref.how)
    ft = front_table(df, ref).set_index("strategy")
    assert ft.loc["a", "front"] == 2
    assert ft.loc["a", "hypervolume"] == pytest.approx((300 - 100) * 0.1 + (300 - 200) * 0.1)
    assert ft.loc["b", "hypervolume"] == pytest.approx(0.0)
    box = (0.9 - 0.7) * (300 - 50)
    assert ft.loc["a", "hv_share"] == pytest.approx(ft.loc["a", "hypervolume"] / box)
    # the default pushes the nadir out by 5% of the range: every strategy's extremes count
    ref = default_reference(df)
    assert ref.metric == pytest.approx(0.7 - 0.05 * 0.2) and ref.macs == pytest.approx(300 + 0.05 * 250)
    assert (front_table(df)["hypervolume"] > 0).all()
    single = default_reference(df.iloc[:1])
    assert single.metric < 0.8 and single.macs > 100 and front_table(df.iloc[:1])["hv_share"].iloc[0] == 1.0
