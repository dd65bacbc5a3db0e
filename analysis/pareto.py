"""Pareto fronts and exact two-objective hypervolume for (metric up, MACs down).

The hypervolume is the area of the region that the front dominates inside the box bounded by a
reference point (a metric no better than ``ref_metric`` and MACs no lower than ``ref_macs``). It is
computed with an exact O(n log n) sweep; tests check it against ``moocore`` on random fronts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

#: The fewest points that make a Pareto front or a hypervolume worth drawing: one point's "front" is
#: the point itself, and its hypervolume only measures the distance to the reference point.
MIN_FRONT_POINTS = 2


def pareto_mask(metric: ArrayLike, macs: ArrayLike) -> np.ndarray:
    """True where a point is not dominated (higher metric is better, fewer MACs are better).

    A point is dominated when another is at least as good in both objectives and strictly better in
    one; duplicates of a front point are all kept. NaNs are never on the front.
    """
    metric = np.asarray(metric, dtype=float)
    macs = np.asarray(macs, dtype=float)
    if metric.shape != macs.shape:
        raise ValueError("metric and macs must have the same shape")
    mask = np.zeros(metric.shape, dtype=bool)
    ok = np.flatnonzero(np.isfinite(metric) & np.isfinite(macs))
    if ok.size == 0:
        return mask
    order = ok[np.lexsort((-metric[ok], macs[ok]))]  # MACs ascending, then metric descending
    best_before = -np.inf  # best metric among points with strictly fewer MACs
    i = 0
    while i < order.size:
        j = i
        while j + 1 < order.size and macs[order[j + 1]] == macs[order[i]]:
            j += 1
        group = order[i : j + 1]
        top = metric[group[0]]
        if top > best_before:
            mask[group[metric[group] == top]] = True
        best_before = max(best_before, top)
        i = j + 1
    return mask


def hypervolume_2d(metric: ArrayLike, macs: ArrayLike, ref_metric: float, ref_macs: float) -> float:
    """Exact area dominated by the points, bounded by the reference point (ref_metric, ref_macs).

    Points that do not strictly beat the reference in both objectives add nothing.
    """
    metric = np.asarray(metric, dtype=float).ravel()
    macs = np.asarray(macs, dtype=float).ravel()
    keep = np.isfinite(metric) & np.isfinite(macs) & (metric > ref_metric) & (macs < ref_macs)
    if not keep.any():
        return 0.0
    m, c = metric[keep], macs[keep]
    order = np.lexsort((-m, c))
    area = 0.0
    best = ref_metric  # best metric seen so far, sweeping MACs upwards
    for k in order:
        if m[k] > best:
            area += (ref_macs - c[k]) * (m[k] - best)
            best = m[k]
    return float(area)


@dataclass(frozen=True)
class ReferencePoint:
    """The point every hypervolume is measured against, stated in the report."""

    metric: float
    macs: float
    how: str = "given"

    def describe(self, metric_name: str = "metric") -> str:
        """One line for the report: the point and where it came from."""
        return f"{metric_name} = {self.metric:.4g}, MACs = {self.macs:.4g} ({self.how})"


def default_reference(table: pd.DataFrame, margin: float = 0.05) -> ReferencePoint | None:
    """The nadir of all points in ``table`` (the worst metric and the most MACs seen), pushed out
    by ``margin`` of each objective's range so that the extreme points still count.

    Using one reference for every strategy of a task keeps their hypervolumes comparable.
    """
    ok = table["metric"].notna() & table["macs"].notna()
    if not ok.any():
        return None
    metric = table.loc[ok, "metric"].astype(float)
    macs = table.loc[ok, "macs"].astype(float)

    def pad(values: pd.Series) -> float:
        spread = float(values.max() - values.min())
        return margin * (spread if spread > 0 else max(abs(float(values.max())), 1e-12))

    how = (
        f"worst metric and most MACs among all points of this task, pushed out by {margin:.0%} of their range"
    )
    return ReferencePoint(float(metric.min()) - pad(metric), float(macs.max()) + pad(macs), how)


def front_table(table: pd.DataFrame, ref: ReferencePoint | None = None, by: str = "strategy") -> pd.DataFrame:
    """Per group (strategy by default): points, front size, hypervolume and its share of the box.

    ``hypervolume`` is in metric x MACs units; ``hv_share`` divides it by the area of the box
    between the reference point and the ideal point (best metric, fewest MACs over ``table``), so
    1.0 would mean one point that is best in both objectives.
    """
    ok = table["metric"].notna() & table["macs"].notna()
    data = table[ok]
    ref = ref or default_reference(table)
    cols = [
        by,
        "points",
        "front",
        "hypervolume",
        "hv_share",
        "best_metric",
        "fewest_macs",
        "ref_metric",
        "ref_macs",
    ]
    if ref is None or data.empty:
        return pd.DataFrame(columns=cols)
    ideal_metric = float(data["metric"].max())
    ideal_macs = float(data["macs"].astype(float).min())
    box = max(ideal_metric - ref.metric, 0.0) * max(ref.macs - ideal_macs, 0.0)
    rows = []
    for key, group in data.groupby(by, sort=True, dropna=False):
        m = group["metric"].to_numpy(float)
        c = group["macs"].to_numpy(float)
        hv = hypervolume_2d(m, c, ref.metric, ref.macs)
        rows.append(
            {
                by: key,
                "points": len(group),
                "front": int(pareto_mask(m, c).sum()),
                "hypervolume": hv,
                "hv_share": hv / box if box > 0 else float("nan"),
                "best_metric": float(m.max()),
                "fewest_macs": float(c.min()),
                "ref_metric": ref.metric,
                "ref_macs": ref.macs,
            }
        )
    return pd.DataFrame(rows, columns=cols)
