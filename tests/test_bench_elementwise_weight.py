"""benchmarks/bench_elementwise_weight.py: the fit of a training step's time to MACs and BN/activation elements."""

import math

import pytest
from bench_scripts import load_benchmark


def test_the_fit_recovers_a_weight_built_into_the_timings():
    bench = load_benchmark("bench_elementwise_weight")
    # 2 ms fixed, 0.4 ns per MAC, 40 ns per element: an element costs 100 MAC-equivalents
    points = [
        (m, e, 2e-3 + 0.4e-9 * m + 40e-9 * e)
        for m, e in [(2e7, 1.6e6), (2e7, 2.0e6), (5e7, 2.4e6), (9e7, 3.1e6), (9e7, 4.0e6)]
    ]
    fit = bench.fit_weight(points)
    assert math.isclose(fit["weight"], 100.0, rel_tol=1e-6)
    assert math.isclose(fit["a"], 2e-3, rel_tol=1e-6)
    assert fit["rms"] < 1e-12 < fit["rms_macs_only"]  # the elements explain what MACs alone cannot


def test_networks_of_equal_macs_and_elements_cannot_separate_the_two():
    bench = load_benchmark("bench_elementwise_weight")
    with pytest.raises(ValueError, match="at least 4 networks"):
        bench.fit_weight([(1e7, 1e5, 1e-3)] * 3)


def test_a_training_step_is_timed_for_each_network_and_fitted():
    bench = load_benchmark("bench_elementwise_weight")
    row = bench.measure("digits_seg", shares=(0.1, 0.3), random_count=1, rounds=1, steps=1)
    assert row["networks"] == 4 and len(row["points"]) == 4 and len(row["weight_per_round"]) == 1
    uniform, random_ = row["points"][0], row["points"][1]
    # both at the first share of the supernet's MACs (within 3%), their elements differ
    assert (
        math.isclose(uniform["macs"], random_["macs"], rel_tol=0.06)
        and uniform["norm_act"] != random_["norm_act"]
    )
    assert all(p["ms"] > 0 for p in row["points"])


def test_bad_shares_are_one_line(capsys):
    bench = load_benchmark("bench_elementwise_weight")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--shares", "0.1,x"])
    assert exc.value.code == 2 and "invalid --shares '0.1,x'" in capsys.readouterr().err
