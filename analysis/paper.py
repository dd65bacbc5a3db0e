"""Reference points reported in the literature, drawn as an optional layer on the Pareto figures.

Built in: ADE20K val (512x512, single scale) results of HR-NAS-A/B (Ding et al., CVPR 2021) and of
LR-ASPP with MobileNetV3 (Howard et al., ICCV 2019), as tabulated by later lightweight-segmentation
papers that compare against them; the HR-NAS PDF itself was not available here, so check the
numbers before citing them. ``macs`` are the papers' "GFLOPs" (multiply-accumulates); ``metric``
is in percent as printed. Users pass their own CSV (columns dataset, model, metric, macs[, params,
source]) for other data sets, e.g. Cityscapes or ImageNet.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

PAPER_POINTS = pd.DataFrame(
    [
        ("ade20k", "HR-NAS-A (paper)", 33.2, 1.4e9, 2.5e6, "HR-NAS, CVPR 2021"),
        ("ade20k", "HR-NAS-B (paper)", 34.9, 2.2e9, 3.9e6, "HR-NAS, CVPR 2021"),
        ("ade20k", "LR-ASPP MobileNetV3-Large", 33.1, 2.0e9, 3.2e6, "MobileNetV3, ICCV 2019"),
        ("ade20k", "LR-ASPP MobileNetV3-Large-reduce", 32.3, 1.3e9, 1.6e6, "MobileNetV3, ICCV 2019"),
    ],
    columns=["dataset", "model", "metric", "macs", "params", "source"],
)
PAPER_NOTE = (
    "Reported points (ADE20K val, 512x512) as tabulated in later papers; verify before citing. "
    "Their 'FLOPs' are MACs."
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
