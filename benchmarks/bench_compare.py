"""HR-NAS against NNI's strategies under one equal budget: the Pareto hypervolume of each.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_compare.py [--task digits_seg] [--budget 16000img]
           [--strategies hrnas,random,evolution,tpe,spos,darts] [--out runs/bench-compare] [--json]
       python benchmarks/bench_compare.py --results DIR [DIR ...]   (figures from finished runs, e.g. run
           in parallel with different --strategies; a later folder's strategy replaces an earlier one's)
       python benchmarks/bench_compare.py --across-seeds DIR [DIR ...]   (one finished comparison per
           seed, same task and budget: each strategy's hypervolume and best metric, mean and sd)

Every strategy runs through ``hrnas compare`` on the same space, data and budget, and every
architecture it returns is trained from scratch with the same fixed schedule (see
nni_hrnas/compare.py). The budget is counted in images seen (search and evaluation together), so
the figures do not depend on the machine's speed or on other load. The hypervolume of each
strategy's (metric up, MACs down) points is measured against one fixed reference point: the
supernet's MACs and a metric of 0 (``--ref-metric``, e.g. the score of a trivial predictor), so
every architecture cheaper than the supernet and better than the reference adds area. The figure is HR-NAS's hypervolume / the best NNI strategy's (goal >= 1.1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def hypervolumes(table: pd.DataFrame, supernet_macs: float, ref_metric: float = 0.0) -> pd.DataFrame:
    """Per-strategy points, front size, hypervolume and best metric against (ref_metric, supernet MACs)."""
    from analysis.pareto import ReferencePoint, front_table

    ref = ReferencePoint(
        float(ref_metric), float(supernet_macs), f"metric {ref_metric:g} and the supernet's MACs"
    )
    return front_table(table, ref).set_index("strategy")


def summarize(table: pd.DataFrame, supernet_macs: float, ref_metric: float = 0.0) -> dict:
    """The hypervolume table and HR-NAS's ratio to the best other strategy."""
    fronts = hypervolumes(table, supernet_macs, ref_metric)
    others = fronts.drop(index="hrnas", errors="ignore")
    best_other = others["hypervolume"].idxmax() if len(others) else None
    ratio = None
    if "hrnas" in fronts.index and best_other is not None and others.loc[best_other, "hypervolume"] > 0:
        ratio = float(fronts.loc["hrnas", "hypervolume"] / others.loc[best_other, "hypervolume"])
    budget_used = table.groupby("strategy")["budget_used"].last()
    fronts = fronts.assign(budget_used=budget_used)
    return {
        "supernet_macs": supernet_macs,
        "ref_metric": ref_metric,
        "best_nni_strategy": best_other,
        "hv_ratio": ratio,
        "goal": 1.1,
        "table": json.loads(fronts.to_json(orient="index")),
    }


def _supernet_macs(task: str) -> int:
    """The MACs of the largest network of ``task``'s compare space: the reference point's cost."""
    from nni_hrnas.compare import Comparison

    space = Comparison.space_for(task)
    return space.freeze(space.max_sample()).cost().macs


def across_seeds(tables: list[pd.DataFrame], supernet_macs: float, ref_metric: float = 0.0) -> pd.DataFrame:
    """One row per strategy: hypervolume, best metric and fewest MACs over the seeds (one table each),
    mean and sample standard deviation, and the seeds where the strategy has the largest hypervolume."""
    per_seed = [
        hypervolumes(table, supernet_macs, ref_metric).assign(seed=i) for i, table in enumerate(tables)
    ]
    frame = pd.concat(per_seed).reset_index()
    frame["wins"] = frame.groupby("seed")["hypervolume"].transform("max").eq(frame["hypervolume"])
    stats = frame.groupby("strategy").agg(
        seeds=("seed", "count"),
        hv_mean=("hypervolume", "mean"),
        hv_sd=("hypervolume", "std"),
        best_metric_mean=("best_metric", "mean"),
        best_metric_sd=("best_metric", "std"),
        fewest_macs_mean=("fewest_macs", "mean"),
        largest_hv_in=("wins", "sum"),
    )
    return stats.sort_values("hv_mean", ascending=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits_seg")
    parser.add_argument("--budget", default="16000img", help="per strategy (images seen, or wall clock)")
    parser.add_argument("--strategies", default="hrnas,random,evolution,tpe,spos,darts")
    parser.add_argument("--out", default="runs/bench-compare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hrnas-lambdas", type=int, default=3)
    parser.add_argument("--eval-epochs", type=int, help="the fixed schedule of every evaluation")
    parser.add_argument("--results", nargs="+", help="finished compare folders: recompute the figures only")
    parser.add_argument(
        "--across-seeds", nargs="+", metavar="DIR", help="one finished comparison per seed: mean and sd"
    )
    parser.add_argument(
        "--resume", action="store_true", help="keep the strategies already in OUT/results.csv"
    )
    parser.add_argument(
        "--ref-metric",
        type=float,
        default=0.0,
        help="the reference point's metric (default 0; e.g. the score of a trivial predictor)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from nni_hrnas.compare import CompareSettings, run_compare
    from nni_hrnas.search import _stdout_to_stderr

    if args.across_seeds:
        tables = [pd.read_csv(Path(folder) / "results.csv") for folder in args.across_seeds]
        merged = pd.concat(tables)
        if merged["task"].nunique() != 1 or merged["budget"].nunique() != 1:
            parser.error(
                f"the folders hold different tasks or budgets: {sorted(set(merged['task']))}, "
                f"{sorted(set(merged['budget']))}"
            )
        supernet_macs = _supernet_macs(str(merged["task"].iloc[0]))
        stats = across_seeds(tables, supernet_macs, args.ref_metric)
        if args.json:
            print(stats.to_json(orient="index"))
            return 0
        print(
            f"{merged['task'].iloc[0]}, budget {merged['budget'].iloc[0]} per strategy, {len(tables)} seeds; "
            f"reference: metric {args.ref_metric:g}, {supernet_macs:,} MACs"
        )
        print(stats.to_string(float_format=lambda v: f"{v:.4g}"))
        return 0
    if args.results:
        tables = [pd.read_csv(Path(folder) / "results.csv") for folder in args.results]
        table = tables[0]
        for later in tables[1:]:
            table = pd.concat(
                [table[~table["strategy"].isin(set(later["strategy"]))], later], ignore_index=True
            )
        if table["task"].nunique() != 1 or table["budget"].nunique() != 1:
            parser.error(
                f"the folders hold different tasks or budgets: {sorted(set(table['task']))}, "
                f"{sorted(set(table['budget']))}"
            )
        task = str(table["task"].iloc[0])
    else:
        settings = CompareSettings(
            task=args.task,
            budget=args.budget,
            out=args.out,
            seed=args.seed,
            strategies=args.strategies.split(","),
            hrnas_lambdas=args.hrnas_lambdas,
            **({"eval_epochs": args.eval_epochs} if args.eval_epochs else {}),
        )
        with _stdout_to_stderr():
            table = run_compare(settings, resume=args.resume)
        task = args.task
    supernet_macs = _supernet_macs(task)
    report = {
        "task": task,
        "budget": str(table["budget"].iloc[0]),
        **summarize(table, supernet_macs, args.ref_metric),
    }
    if args.json:
        print(json.dumps(report))
        return 0
    frame = pd.DataFrame(report["table"]).T[
        ["points", "front", "hypervolume", "best_metric", "fewest_macs", "budget_used"]
    ]
    print(
        f"{task}, budget {report['budget']} per strategy; reference: metric {args.ref_metric:g}, "
        f"{supernet_macs:,} MACs"
    )
    print(frame.to_string())
    if report["hv_ratio"] is not None:
        print(
            f"HR-NAS hypervolume / best NNI strategy ({report['best_nni_strategy']}): "
            f"{report['hv_ratio']:.2f} (goal >= 1.1)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
