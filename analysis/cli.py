"""``hrnas report RESULTS... -o report.html``: the command-line entry point of the analysis."""

from __future__ import annotations

import argparse
import sys

from analysis.pareto import ReferencePoint
from analysis.report import write_report


def build_parser(prog: str = "hrnas report") -> argparse.ArgumentParser:
    """The flags of ``hrnas report`` (also ``python -m analysis``)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="Collect HR-NAS results (run folders, compare folders, NNI experiment directories, "
        "Optuna "
        "storages) into one table and write a self-contained HTML report (plotly.js embedded: it "
        "opens with no network) with Pareto fronts, hypervolumes, architectures, trajectories and "
        "lambda/eps study views, plus the table as CSV and Parquet. Sources that cannot be read are "
        "listed in the report instead of failing it.",
        epilog="Exit status: 0 when the report includes at least one result, 1 when it could include none "
        "(the report is still written and says why), 2 on bad arguments.",
    )
    p.add_argument(
        "results",
        nargs="+",
        metavar="RESULTS",
        help="a run folder, a compare folder, an NNI experiment directory (or the NNI root, or its "
        "db/nni.sqlite), an Optuna storage URL (sqlite:///x.db, postgresql://...), an Optuna "
        "SQLite or journal file, or any folder holding these",
    )
    p.add_argument(
        "-o", "--output", default="report.html", help="the HTML file to write (default: report.html)"
    )
    p.add_argument("--csv", default=None, help="where to write the table as CSV (default: next to the HTML)")
    p.add_argument(
        "--parquet", default=None, help="where to write the table as Parquet (default: next to the HTML)"
    )
    p.add_argument("--no-table-files", action="store_true", help="write neither CSV nor Parquet")
    p.add_argument(
        "--ref-metric",
        type=float,
        default=None,
        help="hypervolume reference: the metric (default: the worst metric of each task)",
    )
    p.add_argument(
        "--ref-macs",
        type=float,
        default=None,
        help="hypervolume reference: MACs (default: the most MACs of each task)",
    )
    p.add_argument(
        "--paper-points",
        nargs="?",
        const="paper",
        default=None,
        metavar="CSV",
        help="draw reported results from the literature as a layer on the Pareto figures: the "
        "built-in points (HR-NAS and Lite-HRNet, matched by dataset name in the task), or a CSV "
        "with columns dataset, model, metric, macs[, params, source]",
    )
    p.add_argument(
        "--arch",
        default=None,
        metavar="ROWS",
        help="table rows (comma-separated, at most two) whose architectures to draw (default: the "
        "best-metric and the fewest-MACs front points of the HR-NAS runs)",
    )
    p.add_argument("--title", default="HR-NAS results", help="the report's title")
    return p


def report_main(argv: list[str] | None = None) -> int:
    """Run ``hrnas report``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.ref_metric is None) != (args.ref_macs is None):
        parser.error("--ref-metric and --ref-macs go together")
    ref = None
    if args.ref_metric is not None:
        ref = ReferencePoint(args.ref_metric, args.ref_macs, "given on the command line")
    rows = None
    if args.arch:
        try:
            rows = [int(v) for v in args.arch.split(",") if v.strip()]
        except ValueError:
            parser.error("--arch takes comma-separated row numbers")
    csv = False if args.no_table_files else (args.csv or True)
    parquet = False if args.no_table_files else (args.parquet or True)
    rep = write_report(
        args.results,
        args.output,
        csv=csv,
        parquet=parquet,
        ref=ref,
        reference_points=args.paper_points,
        arch_rows=rows,
        title=args.title,
    )
    for p in rep.problems:
        print(str(p), file=sys.stderr)
    print(
        f"wrote {rep.html} ({rep.rows} result rows, {len(rep.figures)} figures, "
        f"{len(rep.problems)} problems)",
        file=sys.stderr,
    )
    for extra in (rep.csv, rep.parquet):
        if extra is not None:
            print(f"wrote {extra}", file=sys.stderr)
    return 0 if rep.rows else 1


def main() -> None:
    """``python -m analysis``: :func:`report_main`, its status as the exit status."""
    sys.exit(report_main())
