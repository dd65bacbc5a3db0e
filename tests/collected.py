"""Field-by-field checks of ``analysis.collect`` rows against what a real producer wrote.

The producers' own tests (``hrnas search --out``, ``hrnas compare``, ``hrnas study``, nnictl) call these
on the folders they made, so the analysis reads real output, not only hand-written fixtures.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest


def collect_rows(source) -> pd.DataFrame:
    """``analysis.collect(source)``: its table, after checking that nothing could not be read."""
    from analysis import collect

    collection = collect(source)
    assert not collection.errors, [str(p) for p in collection.errors]
    return collection.table


def assert_metric(value, name: str = "metric") -> None:
    """A real metric: finite and within [0, 1] (accuracy, mIoU and AP all are)."""
    assert value is not None and math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0, (name, value)


def assert_row_is_the_result(row, result: dict, run_dir: Path | None = None) -> None:
    """A collected row holds the producer's ``result.json`` (or final result) values, field by field."""
    assert row["metric"] == pytest.approx(result.get("metric", result.get("default")), rel=1e-12)
    assert_metric(row["metric"])
    assert row["macs"] == result["macs"] and row["params"] == result["params"]
    for key in ("task", "preset", "metric_name", "strategy"):
        if key in result:
            assert row[key] == result[key], key
    for key in ("lambda", "eps", "search_seconds"):
        if key in result:
            assert row[key] == pytest.approx(result[key], rel=1e-12), key
    if "seed" in result:
        assert row["seed"] == result["seed"]
    if "search_cost" in result:
        cost = result["search_cost"]
        for key in ("wall_seconds", "epochs", "images_seen", "mac_epochs"):
            assert row[f"cost_{key}"] == pytest.approx(cost[key], rel=1e-12), key
    if "arch" in result:
        assert row["arch"] == result["arch"]
    if "arch_max" in result:
        assert row["arch_max"] == result["arch_max"]
    if "trajectory" in result:
        got = [(t["epoch"], t["macs"]) for t in row["trajectory"]]
        assert got == [(t["epoch"], t["macs"]) for t in result["trajectory"]]
    if run_dir is not None:
        assert Path(row["run_dir"]).resolve() == Path(run_dir).resolve()
