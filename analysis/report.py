"""One self-contained HTML report (plotly.js embedded: it opens with no network) plus the results
table as CSV and Parquet.

The report always gets written: sources that cannot be read, figures that cannot be drawn and
tables that cannot be saved are listed in a "Could not include" section instead.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.offline

from analysis import figures as F
from analysis.collect import Collection, Problem, baseline_mask, collect
from analysis.paper import PAPER_NOTE, load_points, points_for
from analysis.pareto import MIN_FRONT_POINTS, ReferencePoint, default_reference, front_table, pareto_mask

FIGURE_CLASS = "hrnas-figure"
COMPARISON = "Architectures per task"
SECTIONS = [
    "Pareto fronts",
    "Hypervolume",
    "Architectures",
    COMPARISON,
    "Search trajectories",
    "lambda / eps studies",
]
HV_OMITTED = (
    f"Hypervolume not shown: it compares Pareto fronts, and no strategy has {MIN_FRONT_POINTS} or more "
    "search results with a metric and MACs in any task (reference networks are not counted)."
)


@dataclass
class Report:
    """What :func:`write_report` wrote and what it could not include."""

    html: Path
    csv: Path | None
    parquet: Path | None
    figures: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0


def export_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table with the dict/list columns as JSON text, ready for CSV and Parquet."""
    out = table.copy()
    for col in ("arch", "arch_max", "trajectory"):
        if col in out.columns:
            out[col] = [
                None if v is None or (isinstance(v, float) and pd.isna(v)) else json.dumps(v)
                for v in out[col]
            ]
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].astype("string")
    return out


def add_front_column(table: pd.DataFrame) -> pd.DataFrame:
    """``on_front``: the row is on its strategy's Pareto front within its task (never for the
    reference networks)."""
    table = table.copy()
    table["on_front"] = False
    ok = table["metric"].notna() & table["macs"].notna() & ~baseline_mask(table)
    for _, idx in (
        table[ok].groupby([table["task"].fillna("?"), table["strategy"].fillna("?")]).groups.items()
    ):
        sub = table.loc[idx]
        table.loc[idx, "on_front"] = pareto_mask(sub["metric"], sub["macs"].astype(float))
    return table


def _task_groups(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    if table.empty:
        return []
    key = (
        table["task"].fillna("unknown task").astype(str)
        + " · "
        + table["metric_name"].fillna("metric").astype(str)
    )
    if table["metric_name"].isna().all():
        key = table["task"].fillna("unknown task").astype(str)
    return [(str(k), g) for k, g in table.groupby(key, sort=True)]


def hypervolume_rows(ok: pd.DataFrame) -> pd.DataFrame:
    """The search results of one task whose hypervolumes are worth comparing: all of them when some
    strategy has at least :data:`MIN_FRONT_POINTS` points, none otherwise (reference networks never)."""
    searched = ok[~baseline_mask(ok)]
    sizes = searched.groupby(searched["strategy"].fillna("?")).size()
    return searched if len(sizes) and sizes.max() >= MIN_FRONT_POINTS else searched.iloc[:0]


def _pick_archs(group: pd.DataFrame, rows: list[int] | None) -> list[tuple[str, dict, dict | None]]:
    """Up to two architectures: given rows, else the best-metric and the fewest-MACs front points of
    the HR-NAS runs (or of all runs when none is HR-NAS)."""
    return [_arch_entry(i, group.loc[i]) for i in _pick_rows(group, rows)]


def _pick_rows(group: pd.DataFrame, rows: list[int] | None = None) -> list[int]:
    """The table rows :func:`_pick_archs` draws."""
    has_arch = group[group["arch"].map(_has_arch)]
    if rows:
        chosen = [r for r in rows if r in has_arch.index][:2]
    else:
        with_max = has_arch[has_arch["arch_max"].map(lambda a: isinstance(a, dict))]
        pool = with_max if not with_max.empty else has_arch  # removed units can only be drawn with maxima
        ours = pool[pool["strategy"] == "hrnas"]
        pool = ours if not ours.empty else pool
        pool = pool[pool["metric"].notna() & pool["macs"].notna()]
        if pool.empty:
            chosen = list(has_arch.index[:1])
        else:
            front = pool[pareto_mask(pool["metric"], pool["macs"].astype(float))]
            chosen = [front["metric"].idxmax(), front["macs"].astype(float).idxmin()]
            chosen = list(dict.fromkeys(chosen))
    return chosen


def _arch_entry(i: int, row: pd.Series, prefix: str = "") -> tuple[str, dict, dict | None]:
    """(name, arch, arch_max or None) of table row ``i``, named by its label, metric and MACs."""
    name = f"{prefix}#{i} {F.run_label(row)}"
    if not pd.isna(row["metric"]) and not pd.isna(row["macs"]):
        scale, unit = F.macs_scale([row["macs"]])
        name += f" ({row['metric']:.3g}, {row['macs'] / scale:.3g}{unit} MACs)"
    return name, row["arch"], row["arch_max"] if isinstance(row["arch_max"], dict) else None


def _has_arch(arch: Any) -> bool:
    return isinstance(arch, dict) and bool(arch)


def _searched_archs(table: pd.DataFrame) -> pd.DataFrame:
    """The search results with an architecture (reference networks left out)."""
    return table[table["arch"].map(_has_arch) & ~baseline_mask(table)]


def compared_archs(table: pd.DataFrame) -> list[tuple[str, dict, dict | None]]:
    """What the task comparison (paper Fig. 4) draws: with searches of several tasks, one
    architecture per task (its first pick of :func:`_pick_archs`: the best-metric front point);
    with one task, every search result with an architecture, most MACs first; nothing unless there
    are at least two. Reference networks never; at most :data:`analysis.figures.MAX_COMPARED`."""
    groups = _task_groups(_searched_archs(table))
    if len(groups) > 1:
        out = [_arch_entry(i, g.loc[i], f"{task}: ") for task, g in groups for i in _pick_rows(g)[:1]]
    elif groups:
        order = groups[0][1]["macs"].astype(float).sort_values(ascending=False, na_position="last").index
        out = [_arch_entry(i, groups[0][1].loc[i]) for i in order]
    else:
        out = []
    return out[: F.MAX_COMPARED] if len(out) > 1 else []


Figure = tuple[str, str, go.Figure]  # (section, title, figure)


@dataclass
class _FigureContext:
    """What every per-task figure builder reads (the report's options) and the problems and
    hypervolume tables they add to."""

    ref: ReferencePoint | None
    points: pd.DataFrame | None  # literature points, or None when none are drawn
    arch_rows: list[int] | None
    problems: list[Problem] = field(default_factory=list)
    hv_tables: list[pd.DataFrame] = field(default_factory=list)


def build_figures(
    coll: Collection,
    *,
    ref: ReferencePoint | None = None,
    reference_points: Any = None,
    arch_rows: list[int] | None = None,
) -> tuple[list[Figure], list[Problem], pd.DataFrame]:
    """(section, title, figure) for everything that can be drawn, problems, and the per-strategy
    hypervolume table of every task."""
    ctx = _FigureContext(ref=ref, points=None, arch_rows=arch_rows)
    if reference_points is not None and reference_points is not False:
        try:
            ctx.points = load_points(None if reference_points is True else reference_points)
        except Exception as err:  # noqa: BLE001
            ctx.problems.append(Problem(str(reference_points), f"reference points not drawn: {err}"))
    figs: list[Figure] = []
    for task, group in _task_groups(coll.table):
        for builder in _TASK_FIGURES:
            figs.extend(builder(task, group, ctx))
    figs.extend(_comparison_figures(coll.table, ctx))
    figs.extend(_study_figures(coll, ctx))
    hv = pd.concat(ctx.hv_tables, ignore_index=True) if ctx.hv_tables else pd.DataFrame()
    figs.sort(key=lambda f: SECTIONS.index(f[0]))  # stable: tasks keep their order inside a section
    return figs, ctx.problems, hv


def _pareto_figures(task: str, group: pd.DataFrame, ctx: _FigureContext) -> list[Figure]:
    """The task's metric-vs-MACs figure and, when a reference point exists, its hypervolume figure."""
    ok = group[group["metric"].notna() & group["macs"].notna()]
    if ok.empty:
        ctx.problems.append(Problem(task, "no row has both a metric and MACs: no Pareto figure", "warning"))
        return []
    searched = hypervolume_rows(ok)
    tref = (ctx.ref or default_reference(searched)) if len(searched) else None
    points = ctx.points
    rp = points_for(task, points, float(ok["metric"].max())) if points is not None else None
    note = PAPER_NOTE if rp is not None and len(rp) else None
    if points is not None and (rp is None or not len(rp)):
        ctx.problems.append(
            Problem(
                task,
                "no reference points for this task (they are matched by the dataset name in the task)",
                "warning",
            )
        )
    title = f"{task}: metric vs MACs"
    pareto = F.pareto_figure(ok, title=title, ref=tref, reference_points=rp, reference_note=note)
    figs = [("Pareto fronts", title, pareto)]
    if tref is not None:
        fronts = front_table(searched, tref)
        mname = str(ok["metric_name"].dropna().iloc[0]) if ok["metric_name"].notna().any() else "metric"
        hv_fig = F.hypervolume_figure(
            fronts, tref, title=f"{task}: hypervolume per strategy", metric_name=mname
        )
        figs.append(("Hypervolume", f"{task}: hypervolume", hv_fig))
        fronts.insert(0, "task", task)
        fronts["reference"] = tref.describe(mname)
        ctx.hv_tables.append(fronts)
    return figs


def _architecture_figures(task: str, group: pd.DataFrame, ctx: _FigureContext) -> list[Figure]:
    """Up to two of the task's architectures side by side (see :func:`_pick_archs`)."""
    archs = _pick_archs(group, ctx.arch_rows)
    if not archs:
        return []
    figs = []
    try:
        fig = F.architecture_figure(archs, title=f"{task}: searched architecture per block")
        figs.append(("Architectures", f"{task}: architecture", fig))
    except Exception as err:  # noqa: BLE001
        ctx.problems.append(Problem(task, f"architecture figure not drawn ({type(err).__name__}: {err})"))
    if all(a[2] is None for a in archs):
        ctx.problems.append(
            Problem(
                task, "the supernet's maxima (arch_max) are unknown: removed units are not drawn", "warning"
            )
        )
    return figs


def _trajectory_figures(task: str, group: pd.DataFrame, ctx: _FigureContext) -> list[Figure]:
    traj = F.trajectory_figure(group, title=f"{task}: search trajectory")
    return [("Search trajectories", f"{task}: trajectory", traj)] if traj is not None else []


def _lambda_eps_figures(task: str, group: pd.DataFrame, ctx: _FigureContext) -> list[Figure]:
    study = F.lambda_eps_figure(group, title=f"{task}: lambda / eps")
    return [("lambda / eps studies", f"{task}: lambda / eps", study)] if study is not None else []


#: The figures drawn for every task, in this order (their problems are reported in this order too).
_TASK_FIGURES = (_pareto_figures, _architecture_figures, _trajectory_figures, _lambda_eps_figures)


def _comparison_figures(table: pd.DataFrame, ctx: _FigureContext) -> list[Figure]:
    """Several tasks' (or one task's several) architectures side by side (see :func:`compared_archs`)."""
    archs = compared_archs(table)
    if not archs:
        return []
    several = len(_task_groups(_searched_archs(table))) > 1
    title = "architectures per task" if several else "searched architectures side by side"
    try:
        return [(COMPARISON, title, F.task_comparison_figure(archs, title=title))]
    except Exception as err:  # noqa: BLE001
        ctx.problems.append(Problem("report", f"{title}: not drawn ({type(err).__name__}: {err})"))
        return []


def _study_figures(coll: Collection, ctx: _FigureContext) -> list[Figure]:
    """Optuna's own figures of every Optuna study read."""
    table = coll.table
    figs: list[Figure] = []
    for name, st in coll.studies.items():
        mname = (
            table.loc[(table["kind"] == "optuna") & (table["experiment"] == name), "metric_name"]
            .dropna()
            .astype(str)
            .head(1)
            .tolist()
            or ["metric"]
        )[0]
        sfigs, skipped = F.optuna_figures(st, metric_name=mname)
        for title, fig in sfigs:
            figs.append(("lambda / eps studies", f"study {name}: {title}", fig))
        for reason in skipped:
            ctx.problems.append(Problem(f"study {name}", f"figure not drawn: {reason}", "warning"))
    return figs


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1280px;
color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:2em}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.problems li.error{color:#a00}.problems li.warning{color:#8a6d00}
.tablewrap{overflow-x:auto;max-height:560px;overflow-y:auto}.note{color:#555;font-size:.92em}
.hrnas-figure{margin:12px 0 28px 0}
"""

_TABLE_COLUMNS = [
    "kind",
    "strategy",
    "task",
    "experiment",
    "trial",
    "status",
    "lambda",
    "eps",
    "metric_name",
    "metric",
    "macs",
    "params",
    "latency_ms",
    "latency_setting",
    "search_seconds",
    "train_epochs",
    "train_seconds",
    "budget",
    "cost_epochs",
    "budget_used",
    "on_front",
    "source",
]


# shown when some row has them (training of references; latency measured by hrnas bench --record)
_TRAINING_COLUMNS = ["train_epochs", "train_seconds", "budget", "latency_ms", "latency_setting"]


def _table_html(table: pd.DataFrame) -> str:
    if table.empty:
        return "<p>No results could be included.</p>"
    view = table[[c for c in _TABLE_COLUMNS if c in table.columns]].copy()
    view = view.drop(columns=[c for c in _TRAINING_COLUMNS if c in view and view[c].isna().all()])
    scale, unit = F.macs_scale(view["macs"])
    view["macs"] = view["macs"].astype(float) / scale
    view["params"] = view["params"].astype(float) / 1e6
    if "train_epochs" in view:
        view["train_epochs"] = view["train_epochs"].astype(float)  # blank, not <NA>, where unknown
    view = view.rename(columns={"macs": f"MACs ({unit})", "params": "params (M)"})
    for col in view.columns:
        if view[col].dtype == object:
            view[col] = view[col].map(lambda v: "" if v is None else v)
    return view.to_html(index=True, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)


def render_html(
    coll: Collection,
    figs: list[tuple[str, str, go.Figure]],
    problems: list[Problem],
    hv: pd.DataFrame,
    table: pd.DataFrame,
    *,
    title: str,
    sources: list[str],
    files: list[str],
) -> str:
    """The report's HTML page: summary, what could not be included, figures, hypervolumes, results."""
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Made {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC from "
        f"{len(sources)} source(s): "
        + ", ".join(f"<code>{html.escape(s)}</code>" for s in sources)
        + f". {len(table)} result row(s). MACs are multiply-accumulates, which the HR-NAS paper calls "
        "FLOPs.</p>",
    ]
    if files:
        parts.append(
            "<p class='note'>Table files: "
            + ", ".join(f"<code>{html.escape(f)}</code>" for f in files)
            + "</p>"
        )
    if problems:
        parts.append("<h2 id='problems'>Could not include</h2><ul class='problems'>")
        for p in problems:
            parts.append(
                f"<li class='{html.escape(p.level)}'><b>{html.escape(p.level)}</b> "
                f"<code>{html.escape(p.source)}</code>: {html.escape(p.message)}</li>"
            )
        parts.append("</ul>")
    section = None
    for i, (sec, name, fig) in enumerate(figs):
        if sec != section:
            parts.append(f"<h2>{html.escape(sec)}</h2>")
            section = sec
        div = fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            div_id=f"fig{i}",
            config={"displaylogo": False, "responsive": True},
        )
        parts.append(f"<div class='{FIGURE_CLASS}' data-title='{html.escape(name, quote=True)}'>{div}</div>")
    if not hv.empty:
        parts.append("<h2>Hypervolume per strategy</h2><div class='tablewrap'>")
        parts.append(
            hv.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)
        )
        parts.append("</div>")
    elif (table["metric"].notna() & table["macs"].notna()).any():
        parts.append(f"<p class='note' id='hv-omitted'>{html.escape(HV_OMITTED)}</p>")
    parts.append("<h2>Results</h2><div class='tablewrap'>" + _table_html(table) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    sources: Iterable[str | os.PathLike] | Collection,
    out_html: str | os.PathLike,
    *,
    csv: str | os.PathLike | None | bool = True,
    parquet: str | os.PathLike | None | bool = True,
    ref: ReferencePoint | None = None,
    reference_points: Any = None,
    arch_rows: list[int] | None = None,
    title: str = "HR-NAS results",
) -> Report:
    """Collect ``sources`` (or use a :class:`Collection`), draw every figure and write the report.

    ``csv``/``parquet``: True for ``<report stem>.csv`` / ``.parquet`` next to the HTML, a path, or
    False for none. ``reference_points``: True for the built-in literature points, a CSV path, or
    None. ``ref``: the hypervolume reference point (default: each task's nadir, stated in the report).
    """
    if isinstance(sources, Collection):
        coll, names = sources, sorted({str(s) for s in sources.table["source"].dropna()})
    else:
        names = [os.fspath(s) for s in sources]
        coll = collect(names)
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    problems = list(coll.problems)
    table = add_front_column(coll.table)
    figs, fig_problems, hv = build_figures(
        coll, ref=ref, reference_points=reference_points, arch_rows=arch_rows
    )
    problems += fig_problems

    files: list[str] = []
    csv_path = out_html.with_suffix(".csv") if csv is True else (Path(csv) if csv else None)
    parquet_path = (
        out_html.with_suffix(".parquet") if parquet is True else (Path(parquet) if parquet else None)
    )
    exported = export_table(table)
    if csv_path is not None:
        exported.to_csv(csv_path, index=False)
        files.append(str(csv_path))
    if parquet_path is not None:
        try:
            exported.to_parquet(parquet_path, index=False)
            files.append(str(parquet_path))
        except ImportError as err:
            problems.append(
                Problem(str(parquet_path), f"Parquet not written: {err} (install pyarrow)", "warning")
            )
            parquet_path = None
    if table.empty:
        problems.insert(0, Problem("report", "no results could be included: see the problems below"))
    out_html.write_text(
        render_html(coll, figs, problems, hv, table, title=title, sources=names, files=files),
        encoding="utf-8",
    )
    return Report(out_html, csv_path, parquet_path, [name for _, name, _ in figs], problems, len(table))
