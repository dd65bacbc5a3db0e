"""Plotly figures: Pareto fronts (paper Fig. 1 style), hypervolumes, architectures per searching
block and several tasks' architectures side by side (paper Fig. 4), search trajectories and
lambda/eps study views.

Every function returns a ``plotly.graph_objects.Figure``; none of them writes files.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from analysis.collect import BASELINE_NAMES, _optuna, baseline_label, baseline_mask, run_label, trajectories
from analysis.pareto import MIN_FRONT_POINTS, ReferencePoint, pareto_mask
from search_spaces import labels

if TYPE_CHECKING:
    import optuna

PALETTE = qualitative.Plotly
KERNEL_COLORS = {"k3": "#1f77b4", "k5": "#ff7f0e", "k7": "#2ca02c"}
REMOVED_COLOR = "rgba(150,150,150,0.35)"
TOKEN_COLOR = "#9467bd"
#: bar patterns telling side-by-side architectures apart (the first one plain)
HATCHES = ("", "/", ".", "x", "\\", "-", "|", "+")
#: Open marker symbols of the reference networks (never joined into a front).
BASELINE_SYMBOLS = {
    "uniform": "diamond-open",
    "hand_slimmed": "triangle-up-open",
    "random": "square-open",
    "supernet": "star-diamond-open",
}
BASELINE_COLOR = "#333333"


def macs_scale(values: Iterable[float | None]) -> tuple[float, str]:
    """A divisor and unit (G or M) for MACs axes."""
    vals = np.asarray([v for v in values if v is not None and not pd.isna(v)], dtype=float)
    top = float(vals.max()) if vals.size else 0.0
    if top >= 1e9:
        return 1e9, "G"
    if top >= 1e6:
        return 1e6, "M"
    return 1.0, ""


def macs_title(unit: str) -> str:
    """The MACs axis title for ``unit`` (from :func:`macs_scale`)."""
    return f"MACs ({unit}; the paper's 'FLOPs')" if unit else "MACs (the paper's 'FLOPs')"


def _metric_title(table: pd.DataFrame) -> str:
    names = [n for n in table.get("metric_name", pd.Series(dtype=object)).dropna().unique()]
    return " / ".join(map(str, names)) if names else "metric (higher is better)"


def strategy_colors(strategies: Iterable[object]) -> dict[str, str]:
    """One colour per strategy, HR-NAS first, so that a strategy keeps its colour across figures."""
    ordered = sorted({str(s) for s in strategies}, key=lambda s: (s != "hrnas", s))
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(ordered)}


def _hover(row: pd.Series, scale: float, unit: str) -> str:
    bits = [
        f"<b>{run_label(row)}</b>",
        f"metric {row['metric']:.4g}",
        f"MACs {row['macs'] / scale:.4g}{unit}",
    ]
    if not pd.isna(row.get("params")):
        bits.append(f"params {row['params'] / 1e6:.3g}M")
    if not pd.isna(row.get("eps")):
        bits.append(f"eps {row['eps']:.3g}")
    bits.append(f"{row.get('kind')}: {row.get('source')}")
    return "<br>".join(bits)


def pareto_figure(
    table: pd.DataFrame,
    *,
    title: str = "Accuracy vs MACs",
    ref: ReferencePoint | None = None,
    reference_points: pd.DataFrame | None = None,
    reference_note: str | None = None,
) -> go.Figure:
    """Metric vs MACs, bubble size = params, one series per strategy, each strategy's front (when it
    has at least two points) as a highlighted staircase; reference networks (see
    :func:`analysis.collect.baseline_mask`) as labelled open markers; optionally the hypervolume
    reference point and literature points."""
    data = table[table["metric"].notna() & table["macs"].notna()].copy()
    data["macs"] = data["macs"].astype(float)
    all_macs = list(data["macs"])
    if reference_points is not None:
        all_macs += list(reference_points["macs"])
    scale, unit = macs_scale(all_macs)
    is_base = baseline_mask(data)
    baselines, data = data[is_base], data[~is_base]
    params = data["params"].astype(float)
    pmax = float(params.max()) if params.notna().any() else 1.0
    if reference_points is not None and reference_points["params"].notna().any():
        pmax = max(pmax, float(reference_points["params"].max()))
    bubbles = _Bubbles(scale=scale, unit=unit, pmax=pmax, sizeref=2.0 * pmax / (42.0**2))
    colors = strategy_colors(data["strategy"].fillna("?"))
    fig = go.Figure()
    fronts = 0
    for strat, group in sorted(
        data.groupby(data["strategy"].fillna("?")), key=lambda kv: (kv[0] != "hrnas", kv[0])
    ):
        fronts += _strategy_traces(fig, str(strat), group, colors[str(strat)], bubbles)
    middle = (min(all_macs, default=0.0) + max(all_macs, default=0.0)) / 2
    _baseline_traces(fig, baselines, middle, bubbles)
    if ref is not None:
        _hv_reference_trace(fig, ref, scale)
    if reference_points is not None and len(reference_points):
        _literature_trace(fig, reference_points, bubbles)
    notes = ["bubble area = parameters"]
    if fronts:
        notes.append("outlined bubbles and lines: each strategy's Pareto front")
    if len(baselines):
        notes.append("open symbols: reference networks trained from scratch, labelled with their budget")
    subtitle = "; ".join(notes)
    if reference_note:
        subtitle += f"<br>{reference_note}"
    fig.update_layout(
        title=dict(text=f"{title}<br><sup>{subtitle}</sup>"),
        xaxis_title=macs_title(unit),
        yaxis_title=_metric_title(table),
        template="plotly_white",
        height=560,
        legend=dict(groupclick="togglegroup"),
    )
    return fig


@dataclass(frozen=True)
class _Bubbles:
    """The Pareto figure's MACs axis (``scale``, ``unit``) and bubble sizing (area ~ parameters)."""

    scale: float
    unit: str
    pmax: float  # the largest parameter count; a point without one is drawn at a quarter of it
    sizeref: float


def _strategy_traces(fig: go.Figure, strat: str, group: pd.DataFrame, color: str, bubbles: _Bubbles) -> bool:
    """One strategy's points (front points outlined) and its front as a staircase; True if it has a front."""
    scale = bubbles.scale
    sizes = group["params"].astype(float).fillna(bubbles.pmax / 4).to_numpy()
    mask = pareto_mask(group["metric"], group["macs"])
    if mask.sum() < MIN_FRONT_POINTS:
        mask[:] = False  # a one-point "front" is no front
    fig.add_trace(
        go.Scatter(
            x=group["macs"] / scale,
            y=group["metric"],
            mode="markers",
            name=f"{strat}",
            legendgroup=strat,
            text=[_hover(r, scale, bubbles.unit) for _, r in group.iterrows()],
            hovertemplate="%{text}<extra></extra>",
            marker=dict(
                size=sizes,
                sizemode="area",
                sizeref=bubbles.sizeref,
                sizemin=4,
                color=color,
                opacity=0.45,
                line=dict(width=np.where(mask, 2, 0), color="black"),
            ),
        )
    )
    if not mask.any():
        return False
    front = group[mask].sort_values(["macs", "metric"])
    fig.add_trace(
        go.Scatter(
            x=front["macs"] / scale,
            y=front["metric"],
            mode="lines",
            line=dict(color=color, width=3, shape="hv"),
            name=f"{strat} front",
            legendgroup=strat,
            hoverinfo="skip",
        )
    )
    return True


def _baseline_traces(fig: go.Figure, baselines: pd.DataFrame, middle: float, bubbles: _Bubbles) -> None:
    """Reference networks as open symbols, one trace per kind, labelled on the side facing the middle."""
    scale, unit = bubbles.scale, bubbles.unit
    for strat, group in baselines.groupby("strategy", sort=False):
        fig.add_trace(
            go.Scatter(
                x=group["macs"] / scale,
                y=group["metric"],
                mode="markers+text",
                name=BASELINE_NAMES[str(strat)],
                legendgroup=f"baseline {strat}",
                text=[baseline_label(r, "<br>") for _, r in group.iterrows()],
                textposition=["middle left" if x > middle else "middle right" for x in group["macs"]],
                cliponaxis=False,
                textfont=dict(size=11, color=BASELINE_COLOR),
                customdata=[_hover(r, scale, unit) for _, r in group.iterrows()],
                hovertemplate="%{customdata}<extra></extra>",
                marker=dict(
                    symbol=BASELINE_SYMBOLS[str(strat)],
                    size=16,
                    color=BASELINE_COLOR,
                    line=dict(width=2, color=BASELINE_COLOR),
                ),
            )
        )


def _hv_reference_trace(fig: go.Figure, ref: ReferencePoint, scale: float) -> None:
    """The hypervolume reference point as a cross."""
    fig.add_trace(
        go.Scatter(
            x=[ref.macs / scale],
            y=[ref.metric],
            mode="markers",
            name="HV reference",
            marker=dict(symbol="x-thin", size=14, line=dict(width=3, color="black")),
            hovertemplate=f"hypervolume reference<br>{ref.describe()}<extra></extra>",
        )
    )


def _literature_trace(fig: go.Figure, rp: pd.DataFrame, bubbles: _Bubbles) -> None:
    """Networks reported in papers as named stars, sized by parameters like the searched ones."""
    fig.add_trace(
        go.Scatter(
            x=rp["macs"] / bubbles.scale,
            y=rp["metric"],
            mode="markers+text",
            name="reported (papers)",
            text=rp["model"],
            textposition="top center",
            customdata=np.stack([rp["source"].astype(str), rp["params"].fillna(0) / 1e6], axis=-1),
            hovertemplate="%{text}<br>metric %{y:.4g}<br>MACs %{x:.4g}"
            + bubbles.unit
            + "<br>params %{customdata[1]:.3g}M<br>%{customdata[0]}<extra></extra>",
            marker=dict(
                symbol="star",
                color="rgba(0,0,0,0.75)",
                size=rp["params"].fillna(bubbles.pmax / 4).to_numpy(),
                sizemode="area",
                sizeref=bubbles.sizeref,
                sizemin=8,
            ),
        )
    )


def hypervolume_figure(
    fronts: pd.DataFrame, ref: ReferencePoint, *, title: str = "Hypervolume", metric_name: str = "metric"
) -> go.Figure:
    """One bar per strategy: the share of the reference box its front dominates (hover: raw area)."""
    colors = strategy_colors(fronts["strategy"])
    scale, unit = macs_scale([ref.macs])
    fig = go.Figure(
        go.Bar(
            x=fronts["strategy"].astype(str),
            y=fronts["hv_share"],
            marker_color=[colors[str(s)] for s in fronts["strategy"]],
            text=[f"{v:.3f}" for v in fronts["hv_share"]],
            textposition="outside",
            customdata=np.stack([fronts["hypervolume"] / scale, fronts["points"], fronts["front"]], axis=-1),
            hovertemplate=(
                "%{x}<br>share of box %{y:.4f}<br>hypervolume %{customdata[0]:.4g} "
                + metric_name
                + " x "
                + (unit or "")
                + "MACs<br>%{customdata[1]} points, %{customdata[2]} on the front"
                "<extra></extra>"
            ),
        )
    )
    fig.update_layout(
        title=dict(
            text=f"{title}<br><sup>reference point: {ref.describe(metric_name)}; bar = hypervolume / "
            "area between the reference and the ideal point</sup>"
        ),
        yaxis_title="hypervolume (share of the box)",
        template="plotly_white",
        height=420,
        yaxis=dict(rangemode="tozero"),
    )
    return fig


# ----------------------------------------------------------------------------------------------
# Architectures


def parse_arch(arch: dict[str, Any], arch_max: dict[str, Any] | None = None) -> pd.DataFrame:
    """One row per searching block: where it sits (row, stage, position) and its kept/max units.

    Columns ``k{K}`` / ``k{K}_max`` for every kernel size found (3, 5 and 7 if none is), ``tok`` / ``tok_max``.
    """
    blocks: dict[str, dict[str, Any]] = {}
    kernels: set[str] = set()
    for label, value in arch.items():
        try:
            name, choice = labels.split_label(str(label))
        except ValueError:
            continue
        b = blocks.get(name)
        if b is None:
            place = labels.parse_block(name)
            if place.kind in ("parallel", "fusion"):  # fusion blocks sit before their stage's n0
                order, prefix = (1, "n") if place.kind == "parallel" else (0, "fuse←b")
                row, stage, pos = f"branch {place.branch}", place.stage, (order, place.index)
                short = f"{prefix}{place.index}"
            elif place.kind == "cls_branch":
                row, stage, pos, short = "head", 5, (1, place.branch), f"cls b{place.branch}"
            elif place.kind == "cls_down":
                row, stage, pos, short = "head", 5, (2, place.index), f"cls d{place.index}"
            else:
                row, stage, pos, short = "head", 5, (0, 0), "head"
            b = blocks[name] = {
                "block": name,
                "row": row,
                "stage": stage,
                "order": pos[0],
                "index": pos[1],
                "short": short,
            }
        if not labels.is_tokens(choice):
            kernels.add(choice)
        b[choice] = value
        if arch_max is not None and label in arch_max:
            b[choice + "_max"] = arch_max[label]
    choices = [*sorted(kernels or {"k3", "k5", "k7"}, key=labels.kernel_size), labels.TOKENS]
    cols = ["block", "row", "stage", "order", "index", "short", *choices, *(c + "_max" for c in choices)]
    df = pd.DataFrame(list(blocks.values()), columns=cols)
    df = df.sort_values(["row", "stage", "order", "index"], kind="stable").reset_index(drop=True)
    return df


def panel_rows(parsed: Iterable[pd.DataFrame]) -> list[str]:
    """The rows of :func:`parse_arch` frames in drawing order: branches from the finest, the head last."""
    return sorted({r for blocks in parsed for r in blocks["row"]}, key=lambda r: (r == "head", r))


def kernel_columns(blocks: pd.DataFrame) -> list[str]:
    """The kernel-path columns of a :func:`parse_arch` frame, smallest kernel first."""
    return [c for c in blocks.columns if labels.is_kernel_choice(c)]


def _num(v: Any) -> float:
    try:
        out = float(v)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if math.isnan(out) else out


def architecture_figure(
    archs: list[tuple[str, dict, dict | None]], *, title: str = "Searched architecture"
) -> go.Figure:
    """Channels kept per kernel size (stacked 3x3/5x5/7x7), removed units (grey, when the maxima are
    known) and tokens kept (diamonds, right axis) for every searching block, one row per branch
    (plus the head), grouped by stage. ``archs``: up to two (name, arch, arch_max) side by side."""
    archs = archs[:2]
    tags = ["A", "B"]
    parsed = [
        (tags[i] if len(archs) > 1 else "", parse_arch(arch, amax), amax is not None)
        for i, (_, arch, amax) in enumerate(archs)
    ]
    rows = panel_rows(p for _, p, _ in parsed)
    if not rows:
        fig = go.Figure()
        fig.update_layout(title="no searching blocks recognised in the architecture")
        return fig
    height = 300 * len(rows) + 220
    fig = make_subplots(
        rows=len(rows),
        cols=1,
        specs=[[{"secondary_y": True}]] * len(rows),
        subplot_titles=[r if r != "head" else "head blocks" for r in rows],
        vertical_spacing=min(120 / height, 0.9 / max(len(rows) - 1, 1)),
    )
    styles = [
        (_ArchStyle(name=name, full=full, hatch=HATCHES[a], first=a == 0, has_max=has_max), blocks)
        for a, ((name, blocks, has_max), (full, _, _)) in enumerate(zip(parsed, archs, strict=True))
    ]
    _architecture_axes(fig, len(rows), _block_panels(fig, styles, rows))
    names = "<br>".join(
        (f"{tags[i]} (right, hatched): " if i else (f"{tags[0]} (left): " if len(parsed) > 1 else "")) + name
        for i, (name, _, _) in enumerate(archs)
    )
    return _architecture_layout(fig, title, names, " (whisker up to the maximum)", 175, height)


def _block_panels(
    fig: go.Figure, styles: list[tuple[_ArchStyle, pd.DataFrame]], rows: list[str]
) -> dict[int, float]:
    """Every architecture's blocks in panels 1..len(rows) (one per row of :func:`parse_arch`): kept
    channels, removed channels (when the maxima are known) and tokens; returns each panel's highest
    token count (for its right axis)."""
    legend = _LegendOnce()
    tok_top: dict[int, float] = {}
    for style, blocks in styles:
        kernels = kernel_columns(blocks)
        for r, rowname in enumerate(rows, start=1):
            sub = blocks[blocks["row"] == rowname]
            if sub.empty:
                continue
            x = _block_axis(sub)
            base = _kept_channel_bars(fig, sub, x, kernels, style, legend, r)
            if style.has_max:
                _removed_channel_bar(fig, sub, x, kernels, base, style, legend, r)
            top = _token_markers(fig, sub, x, style, legend, r)
            if top is not None:
                tok_top[r] = max(tok_top.get(r, 0.0), top)
    return tok_top


class _LegendOnce:
    """Shows each legend group once over the whole figure (the first trace of the group)."""

    def __init__(self) -> None:
        self.shown: set[str] = set()

    def __call__(self, group: str) -> bool:
        new = group not in self.shown
        self.shown.add(group)
        return new


@dataclass(frozen=True)
class _ArchStyle:
    """How one of the (up to two) compared architectures is drawn."""

    name: str  # tag in trace names and legend groups ("" for a single architecture, else "A"/"B")
    full: str  # the architecture's full name, shown on hover
    hatch: str  # bar pattern: none for the first architecture, hatched for the second
    first: bool
    has_max: bool  # the space's maxima are known: removed units and token whiskers can be drawn

    def suffix(self) -> str:
        return f" ({self.name})" if self.name else ""


def _block_axis(sub: pd.DataFrame) -> list[list[str]]:
    """Two-level (stage, block) categories of one panel's blocks."""
    # plotly orders each level of a multicategory axis by first appearance: zero-width spaces keep
    # equal block labels of different stages apart (so fusion blocks stay before their stage's n0)
    return [
        [("stage " + str(s)) if s < 5 else "head" for s in sub["stage"]],
        [f"{short}{chr(0x200B) * int(s)}" for short, s in zip(sub["short"], sub["stage"], strict=True)],
    ]


def _kept_channel_bars(
    fig: go.Figure,
    sub: pd.DataFrame,
    x: list,
    kernels: list[str],
    style: _ArchStyle,
    legend: _LegendOnce,
    r: int,
) -> np.ndarray:
    """Stacked bars of the channels kept per kernel size; returns the stack's height per block."""
    base = np.zeros(len(sub))
    for i, k in enumerate(kernels):
        kept = np.array([_num(v) for v in sub[k]])
        size = labels.kernel_size(k)
        fig.add_trace(
            go.Bar(
                x=x,
                y=kept,
                base=base.copy(),
                offsetgroup=style.name,
                name=f"{size}x{size} kept" + style.suffix(),
                legendgroup=f"{style.name}{k}",
                showlegend=legend(f"{style.name}{k}"),
                marker=dict(
                    color=KERNEL_COLORS.get(k, PALETTE[(i + 3) % len(PALETTE)]), pattern_shape=style.hatch
                ),
                customdata=np.stack([sub["block"], kept, [_num(v) for v in sub[k + "_max"]]], axis=-1),
                hovertemplate=f"{style.full}<br>%{{customdata[0]}} {size}x{size}: "
                "%{customdata[1]:.0f} of "
                "%{customdata[2]:.0f} channels<extra></extra>",
            ),
            row=r,
            col=1,
        )
        base = base + kept
    return base


def _removed_channel_bar(
    fig: go.Figure,
    sub: pd.DataFrame,
    x: list,
    kernels: list[str],
    base: np.ndarray,
    style: _ArchStyle,
    legend: _LegendOnce,
    r: int,
) -> None:
    """Grey bar on top of the kept channels: the depthwise channels the search removed."""
    total_max = np.array([sum(_num(sub.iloc[i][k + "_max"]) for k in kernels) for i in range(len(sub))])
    removed = np.clip(total_max - base, 0, None)
    fig.add_trace(
        go.Bar(
            x=x,
            y=removed,
            base=base.copy(),
            offsetgroup=style.name,
            name="removed channels" + style.suffix(),
            legendgroup=f"{style.name}removed",
            showlegend=legend(f"{style.name}removed"),
            marker=dict(color=REMOVED_COLOR, pattern_shape=style.hatch),
            customdata=np.stack([sub["block"], removed, total_max], axis=-1),
            hovertemplate=f"{style.full}<br>%{{customdata[0]}}: "
            "%{customdata[1]:.0f} of %{customdata[2]:.0f} "
            "depthwise channels removed<extra></extra>",
        ),
        row=r,
        col=1,
    )


def _token_markers(
    fig: go.Figure, sub: pd.DataFrame, x: list, style: _ArchStyle, legend: _LegendOnce, r: int
) -> float | None:
    """Diamonds of the transformer tokens kept (right axis), with a whisker up to the maximum; returns
    the panel's highest token count, or None when no block of the panel has tokens."""
    tok = np.array([v if v is not None and not pd.isna(v) else np.nan for v in sub["tok"]], dtype=float)
    if not np.isfinite(tok).any():
        return None
    tok_max = np.array(
        [_num(v) if v is not None and not pd.isna(v) else np.nan for v in sub["tok_max"]],
        dtype=float,
    )
    has_max = style.has_max
    err = np.where(np.isfinite(tok_max), tok_max - tok, 0.0) if has_max else None
    fig.add_trace(
        go.Scatter(
            x=x,
            y=tok,
            mode="markers",
            offsetgroup=style.name,
            name="tokens kept" + style.suffix(),
            legendgroup=f"{style.name}tok",
            showlegend=legend(f"{style.name}tok"),
            marker=dict(symbol="diamond" if style.first else "diamond-open", size=10, color=TOKEN_COLOR),
            error_y=dict(
                type="data",
                symmetric=False,
                array=err,
                arrayminus=np.zeros(len(sub)),
                color="rgba(148,103,189,0.5)",
                thickness=1.5,
                width=4,
            )
            if has_max
            else None,
            customdata=np.stack([sub["block"], tok, tok_max], axis=-1),
            hovertemplate=f"{style.full}<br>%{{customdata[0]}}: "
            "%{customdata[1]:.0f} tokens kept"
            + (" of %{customdata[2]:.0f}" if has_max else "")
            + "<extra></extra>",
        ),
        row=r,
        col=1,
        secondary_y=True,
    )
    top = np.nanmax(np.concatenate([tok, tok_max])) if np.isfinite(tok_max).any() else np.nanmax(tok)
    return float(top)


def _architecture_axes(fig: go.Figure, n_rows: int, tok_top: dict[int, float]) -> None:
    """Channels on the left axis, tokens on the right of every panel, both from zero."""
    for r in range(1, n_rows + 1):
        fig.update_yaxes(title_text="depthwise channels", row=r, col=1, secondary_y=False, rangemode="tozero")
        fig.update_yaxes(
            title_text="tokens",
            row=r,
            col=1,
            secondary_y=True,
            rangemode="tozero",
            showgrid=False,
            tickformat="d",
            range=[0, tok_top[r] * 1.08] if tok_top.get(r) else None,
        )


# ----------------------------------------------------------------------------------------------
# Architectures of several tasks side by side (paper Fig. 4)

#: the most architectures :func:`task_comparison_figure` draws side by side (one bar pattern each)
MAX_COMPARED = len(HATCHES)
SUMMARY_COLUMNS = [
    "name",
    "row",
    "channels",
    "channels_max",
    "channel_share",
    "tokens",
    "tokens_max",
    "token_share",
]


def branch_summary(archs: list[tuple[str, dict, dict | None]]) -> pd.DataFrame:
    """Where each architecture keeps its units: one row per (architecture ``name``, :func:`parse_arch`
    row: ``branch b`` or ``head``) with the depthwise channels and tokens kept, the supernet's
    (``*_max``, NaN without the maxima) and the share kept (NaN where the maxima are unknown or the
    row has none, e.g. tokens of a branch without transformers).

    Shares count units, not MACs: the analysis does not rebuild the space or its cost model. Within
    one branch every block runs at one resolution, so the share of its channels kept is close to the
    share of its kernel-path MACs kept."""
    out = []
    for name, arch, amax in archs:
        blocks = parse_arch(arch, amax)
        kernels = kernel_columns(blocks)
        for row in panel_rows([blocks]):
            sub = blocks[blocks["row"] == row]
            out.append(
                {"name": name, "row": row, **_kept(sub, kernels, "channel"), **_kept(sub, ["tok"], "token")}
            )
    return pd.DataFrame(out, columns=SUMMARY_COLUMNS)


def _kept(sub: pd.DataFrame, columns: list[str], unit: str) -> dict[str, float]:
    """``{unit}s`` kept over ``columns``, their maximum and the share kept (see :func:`branch_summary`)."""
    kept = sum(_num(v) for c in columns for v in sub[c])
    maxima = [_num(v) for c in columns for v in sub[c + "_max"] if v is not None and not pd.isna(v)]
    top = float(sum(maxima)) if maxima else math.nan
    return {f"{unit}s": kept, f"{unit}s_max": top, f"{unit}_share": kept / top if top > 0 else math.nan}


def branch_title(row: str) -> str:
    """A :func:`parse_arch` row with its resolution: ``branch 1 (1/8)``, ``head``."""
    if not row.startswith("branch "):
        return row
    return f"{row} (1/{4 * 2 ** int(row.split()[1])})"


def task_comparison_figure(
    archs: list[tuple[str, dict, dict | None]], *, title: str = "Architectures per task"
) -> go.Figure:
    """Paper Fig. 4: up to :data:`MAX_COMPARED` architectures (typically one per task) side by side
    per searching block, one panel per branch and the head (3x3/5x5/7x7 channels kept, removed
    units, tokens, as :func:`architecture_figure`), and a last panel: per branch, the share of the
    supernet's depthwise channels (bars) and tokens (diamonds) each keeps (:func:`branch_summary`)."""
    archs = archs[:MAX_COMPARED]
    parsed = [parse_arch(arch, amax) for _, arch, amax in archs]
    rows = panel_rows(parsed)
    if not rows:
        fig = go.Figure()
        fig.update_layout(title="no searching blocks recognised in the architectures")
        return fig
    n = len(rows) + 1
    height = 300 * n + 220
    fig = make_subplots(
        rows=n,
        cols=1,
        specs=[[{"secondary_y": True}]] * n,
        subplot_titles=[*(branch_title(r) if r != "head" else "head blocks" for r in rows), _SUMMARY_TITLE],
        vertical_spacing=min(120 / height, 0.9 / (n - 1)),
    )
    styles = [
        (_ArchStyle(name=_tag(i), full=name, hatch=HATCHES[i], first=i == 0, has_max=amax is not None), p)
        for i, ((name, _, amax), p) in enumerate(zip(archs, parsed, strict=True))
    ]
    _architecture_axes(fig, len(rows), _block_panels(fig, styles, rows))
    summary = branch_summary(archs)
    for i, ((name, _, _), (style, _)) in enumerate(zip(archs, styles, strict=True)):
        own = summary[summary["name"] == name]
        _channel_share_bars(fig, own, style, PALETTE[i % len(PALETTE)], n)
        _token_share_markers(fig, own, style, PALETTE[i % len(PALETTE)], n)
    fig.update_yaxes(title_text="share kept", range=[0, 1.05], row=n, col=1, secondary_y=False)
    names = "<br>".join(
        f"{_tag(i)}{' (hatched ' + HATCHES[i] + ')' if i else ''}: {a[0]}" for i, a in enumerate(archs)
    )
    return _architecture_layout(fig, title, names, "", 175 + 18 * len(archs), height)


def _architecture_layout(
    fig: go.Figure, title: str, names: str, token_note: str, top: int, height: int
) -> go.Figure:
    """The layout both architecture figures share: the title with its legend of marks, grouped bars."""
    fig.update_layout(
        title=dict(
            text=f"{title}<br><sup>{names}<br>stacked bars: depthwise channels kept per kernel size, grey: "
            f"removed units; diamonds: transformer tokens kept{token_note}</sup>"
        ),
        margin=dict(t=top),
        barmode="group",
        scattermode="group",
        template="plotly_white",
        height=height,
        legend=dict(orientation="h", y=-60 / height),
    )
    return fig


_SUMMARY_TITLE = "share of the supernet kept per branch: depthwise channels (bars), tokens (diamonds)"


def _tag(i: int) -> str:
    return chr(ord("A") + i)


def _channel_share_bars(fig: go.Figure, own: pd.DataFrame, style: _ArchStyle, color: str, r: int) -> None:
    """One architecture's share of each branch's depthwise channels kept (summary panel)."""
    fig.add_trace(
        go.Bar(
            x=[branch_title(row) for row in own["row"]],
            y=own["channel_share"],
            offsetgroup=style.name,
            name="share of channels kept" + style.suffix(),
            legendgroup=f"{style.name}share",
            marker=dict(color=color, pattern_shape=style.hatch),
            customdata=np.stack([own["channels"], own["channels_max"]], axis=-1),
            hovertemplate=f"{style.full}<br>%{{x}}: %{{customdata[0]:.0f}} of %{{customdata[1]:.0f}} "
            "depthwise channels kept (%{y:.1%})<extra></extra>",
        ),
        row=r,
        col=1,
    )


def _token_share_markers(fig: go.Figure, own: pd.DataFrame, style: _ArchStyle, color: str, r: int) -> None:
    """One architecture's share of each branch's tokens kept (summary panel; none where a branch has no tokens)."""
    fig.add_trace(
        go.Scatter(
            x=[branch_title(row) for row in own["row"]],
            y=own["token_share"],
            mode="markers",
            offsetgroup=style.name,
            name="share of tokens kept" + style.suffix(),
            legendgroup=f"{style.name}share",
            marker=dict(symbol="diamond", size=11, color=color, line=dict(width=1, color="black")),
            customdata=np.stack([own["tokens"], own["tokens_max"]], axis=-1),
            hovertemplate=f"{style.full}<br>%{{x}}: %{{customdata[0]:.0f}} of %{{customdata[1]:.0f}} "
            "tokens kept (%{y:.1%})<extra></extra>",
        ),
        row=r,
        col=1,
    )


# ----------------------------------------------------------------------------------------------
# Trajectories and studies


def trajectory_figure(table: pd.DataFrame, *, title: str = "Search trajectory") -> go.Figure | None:
    """MACs and metric by epoch, one line per run (None when no run has a trajectory).

    The x axis is the epoch, not the prune step: a search with a training phase evaluates its
    final architecture at several epochs after its last prune step.
    """
    traj = trajectories(table)
    if traj.empty:
        return None
    scale, unit = macs_scale(traj["macs"])
    colors = strategy_colors(traj["strategy"].fillna("?"))
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("MACs by epoch", "metric of the EMA network by epoch")
    )
    for label, run in traj.groupby("label", sort=True):
        run = run.assign(x=run["epoch"].fillna(run["step"])).sort_values(["x", "step"])
        color = colors[str(run["strategy"].iloc[0] if run["strategy"].notna().any() else "?")]
        extra = np.stack([run["step"].fillna(-1), run["units_removed"].fillna(-1)], axis=-1)
        hover = (
            f"{label}<br>epoch %{{x}} (prune step %{{customdata[0]}})<br>%{{y:.4g}}"
            "<br>units removed %{customdata[1]}<extra></extra>"
        )
        # left panel: MACs (with the legend entry), right panel: metric (gaps joined over unevaluated epochs)
        panels = ((run["macs"] / scale, {}), (run["metric"], {"showlegend": False, "connectgaps": True}))
        for col, (y, options) in enumerate(panels, start=1):
            fig.add_trace(
                go.Scatter(
                    x=run["x"],
                    y=y,
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    line=dict(color=color),
                    customdata=extra,
                    hovertemplate=hover,
                    **options,
                ),
                row=1,
                col=col,
            )
    fig.update_xaxes(title_text="epoch")
    fig.update_yaxes(title_text=macs_title(unit), row=1, col=1)
    fig.update_yaxes(title_text=_metric_title(table), row=1, col=2)
    fig.update_layout(title=title, template="plotly_white", height=460)
    return fig


def log_lambda_axes(fig: go.Figure) -> go.Figure:
    """Every axis titled 'lambda' on a logarithmic scale (lambda spans decades)."""
    fig.for_each_xaxis(lambda ax: ax.update(type="log") if ax.title.text == "lambda" else None)
    fig.for_each_yaxis(lambda ax: ax.update(type="log") if ax.title.text == "lambda" else None)
    return fig


def lambda_eps_figure(table: pd.DataFrame, *, title: str = "lambda / eps study") -> go.Figure | None:
    """Metric and MACs against lambda (log axis), coloured by log10(eps), for the search results
    that have lambda; None unless they hold at least two distinct positive lambdas."""
    data = table[table["lambda"].notna() & table["metric"].notna() & ~baseline_mask(table)].copy()
    dropped = int((data["lambda"] <= 0).sum())
    data = data[data["lambda"] > 0]
    if data["lambda"].nunique() < 2:
        return None
    if dropped:
        title += f"<br><sup>{dropped} run(s) with lambda <= 0 not shown on the log axis</sup>"
    scale, unit = macs_scale(data["macs"])
    eps = np.log10(data["eps"].where(data["eps"] > 0))
    fig = make_subplots(rows=1, cols=2, subplot_titles=("metric vs lambda", "MACs vs lambda"))
    hover = [_hover(r, scale, unit) for _, r in data.iterrows()]
    marker = dict(
        size=10,
        color=eps,
        colorscale="Viridis",
        showscale=bool(eps.notna().any()),
        colorbar=dict(title="log10 eps"),
        line=dict(width=0.5, color="black"),
    )
    panels = (
        ("metric", data["metric"], marker),
        ("MACs", data["macs"].astype(float) / scale, {**marker, "showscale": False}),
    )
    for col, (name, y, panel_marker) in enumerate(panels, start=1):
        fig.add_trace(
            go.Scatter(
                x=data["lambda"],
                y=y,
                mode="markers",
                marker=panel_marker,
                text=hover,
                hovertemplate="%{text}<extra></extra>",
                name=name,
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(title_text="lambda")
    fig.update_yaxes(title_text=_metric_title(table), row=1, col=1)
    fig.update_yaxes(title_text=macs_title(unit), row=1, col=2)
    fig.update_layout(title=title, template="plotly_white", height=440, showlegend=False)
    return log_lambda_axes(fig)


def optuna_figures(
    study: optuna.Study, *, metric_name: str = "metric"
) -> tuple[list[tuple[str, go.Figure]], list[str]]:
    """Optuna's own plots that fit the study: Pareto front, parameter importances, history.

    Returns (figures as (title, figure), reasons for the plots that could not be drawn).
    """
    vis = _optuna().visualization
    TrialState = _optuna().trial.TrialState

    figs: list[tuple[str, go.Figure]] = []
    skipped: list[str] = []
    two = len(study.directions) == 2
    names = list(study.metric_names or [])
    macs_idx = 1
    if two and names and re.search("mac|flop", str(names[0]), re.IGNORECASE):
        macs_idx = 0
    metric_idx = 1 - macs_idx if two else 0
    target_names = [metric_name, "MACs"] if macs_idx == 1 else ["MACs", metric_name]
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]

    def target(t):
        return t.values[metric_idx]

    def attempt(name: str, make) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fig = make()
            fig.update_layout(template="plotly_white", title=f"study {study.study_name}: {name}")
            figs.append((name, log_lambda_axes(fig)))
        except Exception as err:  # noqa: BLE001 - Optuna raises several kinds for unsuitable studies
            skipped.append(f"{name}: {type(err).__name__}: {err}")

    if two:
        attempt("Optuna Pareto front", lambda: vis.plot_pareto_front(study, target_names=target_names))
    varying = {k for t in complete for k in t.params}
    if len(complete) >= 2 and varying:
        attempt(
            "Optuna parameter importances (metric)",
            lambda: vis.plot_param_importances(study, target=target, target_name=metric_name),
        )
    else:
        skipped.append("parameter importances: needs at least two finished trials with parameters")
    attempt(
        "Optuna optimisation history (metric)",
        lambda: vis.plot_optimization_history(study, target=target if two else None, target_name=metric_name),
    )
    return figs, skipped
