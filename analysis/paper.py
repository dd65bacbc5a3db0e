"""Reference points reported in the literature, drawn as an optional layer on the Pareto figures.

These numbers were transcribed by hand from the papers' tables and were NOT checked against the
PDFs in this repository: verify them before citing. ``macs`` are the papers' "FLOPs" (which are
multiply-accumulates); ``metric`` is in percent as printed. Users can pass their own CSV with the
same columns (dataset, model, metric, macs, params, source).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_POINTS = pd.DataFrame(
    [
        # Ding et al., HR-NAS, CVPR 2021, Table 1 (Cityscapes val, 512x1024).
        ("cityscapes", "HR-NAS-A (paper)", 74.2, 1.91e9, 2.2e6, "HR-NAS, CVPR 2021, Tab. 1"),
        ("cityscapes", "HR-NAS-B (paper)", 75.9, 2.2e9, 3.9e6, "HR-NAS, CVPR 2021, Tab. 1"),
        # Yu et al., Lite-HRNet, CVPR 2021 (Cityscapes val, 512x1024).
        ("cityscapes", "Lite-HRNet-18", 73.8, 1.95e9, 1.1e6, "Lite-HRNet, CVPR 2021"),
        ("cityscapes", "Lite-HRNet-30", 75.3, 3.02e9, 1.8e6, "Lite-HRNet, CVPR 2021"),
        # Ding et al., HR-NAS, CVPR 2021 (ImageNet top-1, 224x224).
        ("imagenet", "HR-NAS-A (paper)", 76.6, 267e6, 5.5e6, "HR-NAS, CVPR 2021"),
        ("imagenet", "HR-NAS-B (paper)", 77.3, 325e6, 6.4e6, "HR-NAS, CVPR 2021"),
    ],
    columns=["dataset", "model", "metric", "macs", "params", "source"],
)
PAPER_NOTE = (
    "Reference points transcribed from the papers' tables (not re-checked here; verify before citing); "
    "their 'FLOPs' are MACs."
)


def load_points(spec: str | Path | None) -> pd.DataFrame:
    """``None``/'paper' gives the built-in points; anything else is read as a CSV of points."""
    if spec is None or str(spec) == "paper":
        return PAPER_POINTS.copy()
    table = pd.read_csv(spec)
    missing = {"dataset", "model", "metric", "macs"} - set(table.columns)
    if missing:
        raise ValueError(f"reference points CSV {spec} lacks columns {sorted(missing)}")
    if "params" not in table.columns:
        table["params"] = float("nan")
    if "source" not in table.columns:
        table["source"] = str(spec)
    return table


def points_for(task: str | None, points: pd.DataFrame, ours_max_metric: float | None = None) -> pd.DataFrame:
    """The points whose dataset names the task (e.g. 'cityscapes' for task 'seg_cityscapes').

    When our metrics are fractions (all <= 1) and the points are percentages, the points are
    divided by 100 so both share one axis.
    """
    if task is None:
        return points.iloc[0:0]
    task = str(task).lower()
    sel = points[[str(d).lower() in task for d in points["dataset"]]].copy()
    if ours_max_metric is not None and ours_max_metric <= 1.0 and (sel["metric"] > 1.0).any():
        sel["metric"] = sel["metric"] / 100.0
    return sel
