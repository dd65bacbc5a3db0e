"""The ablation tables of ``hrnas ablate`` (the paper's Tables 6, 7 and 8) as an HTML report section.

An ablation compares a few named variants, one row each (a row per seed when there are several):
a table says it, a Pareto front of single points would not. The page uses the HTML report's style
(:mod:`analysis.report`).
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from pathlib import Path

import pandas as pd

from analysis.figures import macs_scale
from analysis.report import _CSS

#: the columns a table must have (``hrnas ablate`` writes them; more are shown as they are)
REQUIRED = ("variant", "params", "macs", "metric")


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """One row per variant in first-seen order: params and MACs, the metric's mean (and its standard
    deviation and seeds when there are several), the mean wall time; skipped rows keep their note."""
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"an ablation table needs the columns {', '.join(REQUIRED)}; missing {missing}")
    rows = []
    for variant, group in table.groupby("variant", sort=False):
        done = group[group["metric"].notna()]
        row = {"variant": variant}
        if done.empty:
            notes = group["note"].dropna() if "note" in group else pd.Series(dtype=str)
            row["note"] = notes.iloc[0] if len(notes) else "no result"
        else:
            row.update(params=done["params"].iloc[0], macs=done["macs"].iloc[0], metric=done["metric"].mean())
            if len(done) > 1:
                row.update(metric_std=done["metric"].std(), seeds=len(done))
            if "wall_seconds" in done:
                row["wall_seconds"] = done["wall_seconds"].mean()
        rows.append(row)
    return pd.DataFrame(rows)


def ablation_section(title: str, table: pd.DataFrame, note: str = "") -> str:
    """An ``<h2>`` section: ``note``, then the variants' table (params in M, MACs scaled, metric)."""
    view = summarize(table)
    metric = (
        str(table["metric_name"].dropna().iloc[0])
        if "metric_name" in table and table["metric_name"].notna().any()
        else "metric"
    )
    unit = ""
    if "macs" in view and view["macs"].notna().any():
        scale, unit = macs_scale(view["macs"].dropna())
        view["macs"] = view["macs"].astype(float) / scale
    if "params" in view:
        view["params"] = view["params"].astype(float) / 1e6
    view = view.rename(
        columns={
            "macs": f"MACs ({unit})",
            "params": "params (M)",
            "metric": metric,
            "metric_std": f"{metric} std",
            "wall_seconds": "wall (s)",
        }
    )
    body = view.to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.4g}", border=0)
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if note:
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append(f"<div class='tablewrap'>{body}</div>")
    return "\n".join(parts)


def write_ablation_report(
    out_html: str | os.PathLike, title: str, sections: list[str], sources: list[str] = ()
) -> Path:
    """A self-contained page of ``sections`` (from :func:`ablation_section`); returns its path."""
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    made = f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
    page = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>Made {made}"
        + (" from " + ", ".join(f"<code>{html.escape(str(s))}</code>" for s in sources) if sources else "")
        + ". MACs are multiply-accumulates, which the HR-NAS paper calls FLOPs.</p>",
        *sections,
        "</body></html>",
    ]
    out_html.write_text("\n".join(page), encoding="utf-8")
    return out_html
