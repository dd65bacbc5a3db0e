"""benchmarks/bench_compare.py: the per-strategy hypervolume over seeds, against hand-computed areas."""

import math

import pandas as pd
import pytest
from bench_scripts import load_benchmark


def _table(points: dict[str, list[tuple[float, int]]]) -> pd.DataFrame:
    rows = [
        {"strategy": name, "metric": metric, "macs": macs, "budget_used": "1 s, 10 images"}
        for name, pts in points.items()
        for metric, macs in pts
    ]
    return pd.DataFrame(rows)


def test_across_seeds_gives_each_strategy_the_mean_and_sd_of_its_hypervolumes():
    seed0 = _table({"hrnas": [(0.5, 10)], "random": [(0.4, 20), (0.6, 60)]})
    seed1 = _table({"hrnas": [(0.3, 50)], "random": [(0.2, 0), (0.1, 30)]})
    stats = load_benchmark("bench_compare").across_seeds([seed0, seed1], supernet_macs=100)
    # by hand, against (metric 0, 100 MACs): hrnas 0.5 * 90 = 45 and 0.3 * 50 = 15; random's union of
    # boxes 0.6 * 40 + 0.4 * (60 - 20) = 40, then 0.2 * 100 = 20 (its second point is dominated)
    assert stats.loc["hrnas", "hv_mean"] == pytest.approx(30)
    assert stats.loc["hrnas", "hv_sd"] == pytest.approx(15 * math.sqrt(2))
    assert stats.loc["random", "hv_mean"] == pytest.approx(30)
    assert stats.loc["random", "hv_sd"] == pytest.approx(10 * math.sqrt(2))
    assert stats.loc["random", "best_metric_mean"] == pytest.approx(0.4)
    assert stats.loc["hrnas", "largest_hv_in"] == 1 == stats.loc["random", "largest_hv_in"]
    # a reference metric moves every box's floor: hrnas (0.5 - 0.25) * 90 and nothing for seed 1's 0.3 at 50
    shifted = load_benchmark("bench_compare").across_seeds([seed0, seed1], supernet_macs=100, ref_metric=0.25)
    assert shifted.loc["hrnas", "hv_mean"] == pytest.approx((0.25 * 90 + 0.05 * 50) / 2)
