"""The searched network against the obvious alternatives, at equal MACs (issue: "the searched
network must beat the obvious alternative").

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_baselines.py [--tasks digits_seg,digits_cls,digits_kp]
        [--seeds 0,1,2] [--random 8] [--out runs/bench-baselines] [--json]
    python benchmarks/bench_baselines.py --summary runs/bench-baselines   # the table of a finished run
    # a variant of the search against the same baselines, equal-epoch rows only:
    OMP_NUM_THREADS=2 python benchmarks/bench_baselines.py --tasks digits_kp --random 0
        --search lambda=3e-4 --budgets epochs --out runs/kp-lambda3e-4

For each task and seed, one default ``hrnas search`` (its output network, metric, MACs and wall
time W), then these, each trained from scratch on the search's data with the search's recipe
(``--recipe task``: the task's own batch size, optimizer and schedule instead):

* equal wall time: (a) the supernet with every width scaled by one factor to the same MACs
  (within 3%), (a') the network slimmed by hand: one 3x3 path a block, no transformers, scaled
  by one factor to the same MACs (skipped where it is the uniform network: 3x3 paths only, no
  transformers), (b) the best of ``--random`` random architectures of the space at the same MACs,
  each trained for as many whole epochs as fit in W (fitted from a probe, then from the
  training's own epoch times; full LR schedule);
  ``--random 0`` skips (b);
* equal epochs (the search's epochs): the searched architecture retrained from scratch, (a), (a'), (b);
* for every network: training seconds per image per million MACs, and inference latency at
  batch 1 and 32 (median of repeats, inference mode) per million MACs.

Rows go to ``OUT/rows.jsonl`` as they finish (a killed run keeps what it measured; running it
again with the same ``--out`` skips measured rows), and ``--summary`` prints mean and standard deviation over seeds. The
equal-time rows are also written as ``OUT/<task>-seed<s>/baselines/results.csv`` for
``hrnas report``. Run it alone on the machine: every figure here is a wall time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import torch


def _latency_per_mmac(net: torch.nn.Module, input_size, macs: int, batch: int, repeats: int = 20) -> float:
    from nni_hrnas.latency import inference_runner, time_latency

    x = torch.randn(batch, *input_size)
    return (
        time_latency(inference_runner(net.eval(), x), warmup=3, repeats=repeats).median / batch / (macs / 1e6)
    )


def _search_overrides(pairs: list[str]) -> dict:
    """``SearchSettings`` keyword arguments from ``KEY=VALUE`` pairs (public names, JSON values:
    ``shrink_epochs=6``, ``lambda=3e-4``; a repeatable flag's pairs collected in order, as
    ``space=kernels=3 space=transformer=false``), checked as ``hrnas search`` checks its flags."""
    from nni_hrnas.search import SearchSettings
    from nni_hrnas.settings import from_args, public_name, settings_of, unknown_keys

    repeatable = {public_name(f.name) for f, meta in settings_of(SearchSettings) if meta.action == "append"}
    values: dict = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"--search {pair!r}: expected KEY=VALUE, e.g. --search shrink_epochs=6")
        if key in repeatable:
            values.setdefault(key, []).append(text)
            continue
        try:
            values[key] = json.loads(text)
        except json.JSONDecodeError:
            values[key] = text
    unknown = unknown_keys(SearchSettings, values)
    if unknown:
        raise SystemExit(f"--search: unknown setting(s) {', '.join(unknown)}; see hrnas search --help")
    try:
        return from_args(SearchSettings, values, public=True)
    except ValueError as exc:  # a bad value, as hrnas search words it
        raise SystemExit(f"--search: {exc}") from None


def _measure(
    task: str,
    seed: int,
    random_count: int,
    recipe: str,
    out: Path,
    done: set[tuple],
    write,
    overrides: dict,
    budgets: tuple[str, ...],
) -> None:
    from nni_hrnas import baselines
    from nni_hrnas.search import SearchSettings, load_searched_model, run_search, search_space
    from nni_hrnas.tasks.registry import get_task

    spec = get_task(task)
    input_size = spec.input_size(False)
    sizes = spec.search.data_sizes
    datasets = spec.make_datasets(seed=seed, smoke=False, **({"sizes": tuple(sizes)} if sizes else {}))
    run_dir = out / f"{task}-seed{seed}"

    def row(kind: str, budget: str, run, **extra) -> None:
        key = (task, seed, kind, budget)
        if key in done:
            return
        net = space.freeze(run.arch) if kind != "hrnas" else load_searched_model(run_dir)
        record = dict(
            task=task,
            seed=seed,
            kind=kind,
            budget=budget,
            metric=run.metric,
            macs=run.macs,
            params=run.params,
            epochs=run.epochs,
            train_seconds=run.seconds,
            train_seconds_per_mmac=run.train_seconds_per_mmac,
            latency1_per_mmac=_latency_per_mmac(net, input_size, run.macs, 1),
            latency32_per_mmac=_latency_per_mmac(net, input_size, run.macs, 32),
            arch=run.arch,
            **extra,
        )
        write(record)
        done.add(key)

    settings = SearchSettings(
        task=task,
        seed=seed,
        out=str(run_dir),
        smoke=False,
        resume=(run_dir / "search_checkpoint.pt").exists(),
        **overrides,
    )
    space = search_space(settings)  # the baselines slim the space the search searches (--search space=...)
    if (run_dir / "result.json").exists():
        result = json.loads((run_dir / "result.json").read_text())
    else:
        result = run_search(settings)
    wall = float(result["run_seconds"])
    epochs = int(result["epochs"])
    searched = baselines.TrainedRun(
        "hrnas",
        result["arch"],
        result["macs"],
        result["params"],
        result["metric"],
        epochs,
        wall,
        wall / max(result["search_cost"]["images_seen"], 1) / (result["macs"] / 1e6),
    )
    row(
        "hrnas",
        "search",
        searched,
        macs_max=result["macs_max"],
        shrink_epochs=result.get("shrink_epochs"),
        search_overrides=overrides,
    )

    uniform = baselines.uniform_sample(space, result["macs"], input_size)
    hand_slimmed = baselines.hand_slimmed_sample(space, result["macs"], input_size)
    # in a space of 3x3 paths without transformers (the digits tasks' defaults) the two are one
    # network, and training it twice measures nothing new
    hand_slimmed_archs = [] if hand_slimmed == uniform else [hand_slimmed]
    if not hand_slimmed_archs:
        print(
            f"{task} seed {seed}: the hand-slimmed network is the uniform one in this space; not trained twice",
            file=sys.stderr,
        )
    randoms = baselines.random_samples(space, result["macs"], input_size, random_count, seed=seed)
    time_rows, budget = [], f"same time as the search ({wall:.0f} s)"
    for kind, archs in (("uniform", [uniform]), ("hand_slimmed", hand_slimmed_archs), ("random", randoms)):
        if not archs or "time" not in budgets or (task, seed, kind, "time") in done:
            continue
        fits: list[list[int]] = []  # each candidate's epochs, training by training (a refit adds one)
        runs = []
        for a in archs:
            fits.append([])
            runs.append(
                baselines.train_for_time(
                    task,
                    space,
                    a,
                    wall,
                    name=kind,
                    seed=seed,
                    datasets=datasets,
                    recipe=recipe,
                    on_epochs=fits[-1].append,
                )
            )
        best = max(runs, key=lambda r: r.metric)
        row(
            kind,
            "time",
            best,
            candidates=len(runs),
            candidate_metrics=[r.metric for r in runs],
            candidate_epoch_fits=fits,
        )
        time_rows.append((kind, best, budget))
    for kind, archs in (
        ("hrnas_retrained", [result["arch"]]),
        ("uniform", [uniform]),
        ("hand_slimmed", hand_slimmed_archs),
        ("random", randoms),
    ):
        if not archs or "epochs" not in budgets or (task, seed, kind, "epochs") in done:
            continue
        runs = [
            baselines.train_architecture(
                task, space, a, epochs, name=kind, seed=seed, datasets=datasets, recipe=recipe
            )
            for a in archs
        ]
        best = max(runs, key=lambda r: r.metric)
        row(kind, "epochs", best, candidates=len(runs), candidate_metrics=[r.metric for r in runs])
    if time_rows:  # beside the rows of earlier runs of this benchmark (another --random, say)
        folder = run_dir / "baselines"
        earlier = folder / baselines.BASELINES_CSV
        kept = pd.read_csv(earlier) if earlier.exists() else pd.DataFrame(columns=["strategy"])
        baselines.write_baselines(folder, task, spec.metric, time_rows)
        fresh = pd.read_csv(earlier)
        merged = pd.concat([kept[~kept["strategy"].isin(fresh["strategy"])], fresh], ignore_index=True)
        merged.to_csv(earlier, index=False)


def _summary(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["task"], r["budget"], r["kind"]), []).append(r)
    table = []
    for (task, budget, kind), rs in sorted(groups.items()):
        metrics = [r["metric"] for r in rs]
        table.append(
            dict(
                task=task,
                budget=budget,
                kind=kind,
                seeds=len(rs),
                metric_mean=statistics.fmean(metrics),
                metric_std=statistics.stdev(metrics) if len(metrics) > 1 else 0.0,
                macs_mean=statistics.fmean(r["macs"] for r in rs),
                epochs=[r["epochs"] for r in rs],
                train_s_per_mmac=statistics.fmean(r["train_seconds_per_mmac"] for r in rs),
                lat1_per_mmac=statistics.fmean(r["latency1_per_mmac"] for r in rs),
                lat32_per_mmac=statistics.fmean(r["latency32_per_mmac"] for r in rs),
            )
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", default="digits_seg,digits_cls,digits_kp")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument(
        "--random", type=int, default=8, help="random architectures per seed (best one counts)"
    )
    parser.add_argument(
        "--recipe",
        default="search",
        choices=("search", "task"),
        help="how the alternatives are trained: the search's recipe (batch, optimizer, schedule: "
        "the default, the same as the searched network's) or the task's own",
    )
    parser.add_argument(
        "--search",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a search setting other than the task's default, repeatable (shrink_epochs=6, "
        "warmup_epochs=3, lambda=3e-4): a variant of the search measured against the same baselines",
    )
    parser.add_argument(
        "--budgets",
        default="time,epochs",
        help="which baselines to train: time (the search's wall time), epochs (its epochs), or both",
    )
    parser.add_argument("--out", default="runs/bench-baselines")
    parser.add_argument("--summary", metavar="OUT", help="print the summary of a finished run and exit")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    if args.summary:
        path = Path(args.summary) / "rows.jsonl"
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        table = _summary(rows)
        if args.json:
            print(json.dumps(table))
        else:
            for t in table:
                print(
                    f"{t['task']:<11}{t['budget']:<7}{t['kind']:<16} n={t['seeds']}  {t['metric_mean']:.4f} "
                    f"+- {t['metric_std']:.4f}  {t['macs_mean'] / 1e6:6.2f} M MACs  epochs {t['epochs']}  "
                    f"train {t['train_s_per_mmac'] * 1e3:.3f} ms/img/MMAC  "
                    f"lat b1 {t['lat1_per_mmac'] * 1e3:.3f} b32 {t['lat32_per_mmac'] * 1e3:.3f} ms/MMAC"
                )
        return 0

    from nni_hrnas.logs import setup_cli_logging
    from nni_hrnas.search import _stdout_to_stderr

    setup_cli_logging()  # the commands' logs: ours on stderr, not Lightning's device lines and tips
    overrides = _search_overrides(args.search)
    budgets = tuple(b for b in args.budgets.split(",") if b)
    if not budgets or set(budgets) - {"time", "epochs"}:
        parser.error(f"--budgets {args.budgets!r}: expected time, epochs or time,epochs")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows_path = out / "rows.jsonl"
    done = set()
    if rows_path.exists():
        for line in rows_path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done.add((r["task"], r["seed"], r["kind"], r["budget"]))

    def write(record: dict) -> None:
        with rows_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        print(
            f"{time.strftime('%H:%M:%S')} {record['task']} seed {record['seed']} {record['kind']:<16}"
            f"{record['budget']:<7} metric {record['metric']:.4f} MACs {record['macs'] / 1e6:.2f} M "
            f"epochs {record['epochs']}",
            file=sys.stderr,
            flush=True,
        )

    with _stdout_to_stderr():
        for task in args.tasks.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                _measure(task, seed, args.random, args.recipe, out, done, write, overrides, budgets)
    return main(["--summary", str(out)] + (["--json"] if args.json else []))


if __name__ == "__main__":
    sys.exit(main())
