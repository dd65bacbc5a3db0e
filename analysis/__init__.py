"""Analysis of HR-NAS results: collect them into one table, Pareto fronts and hypervolume, plotly
figures and a self-contained HTML report (``hrnas report``)."""

from analysis.collect import COLUMNS, Collection, Problem, collect, trajectories
from analysis.pareto import ReferencePoint, default_reference, front_table, hypervolume_2d, pareto_mask
from analysis.report import Report, write_report

__all__ = [
    "COLUMNS",
    "Collection",
    "Problem",
    "ReferencePoint",
    "Report",
    "collect",
    "default_reference",
    "front_table",
    "hypervolume_2d",
    "pareto_mask",
    "trajectories",
    "write_report",
]
