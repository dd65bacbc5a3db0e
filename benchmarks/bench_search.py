"""Wall time of a full HR-NAS search against plain training of the same supernet, side by side.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_search.py [--task digits_seg] [--epochs N] [--json]

Both runs use the same task, data, batch size, optimizer, schedule and epochs (the search's
defaults for the task: its record's ``search`` in nni_hrnas.tasks.registry.TASKS). Plain training is the NNI Lightning
evaluator fitting the unpruned supernet (what a user would run without the search); the search
is `run_search` (penalty, BN recalibration, pruning, EMA evaluation, checkpoints every epoch).
The ratio search / plain is the figure (goal <= 0.8: the network shrinks as it goes).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits_seg")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lambda", dest="lambda_", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="keep the search's run folder here (e.g. for bench_latency.py)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from nni_hrnas.search import SearchSettings, _stdout_to_stderr, build_search, run_search

    with tempfile.TemporaryDirectory() as tmp, _stdout_to_stderr():  # NNI logs to stdout
        settings = SearchSettings(
            task=args.task,
            epochs=args.epochs,
            lambda_=args.lambda_,
            seed=args.seed,
            out=args.out or str(Path(tmp) / "run"),
            smoke=False,
        )
        # plain training of the same supernet, same data and optimizer, same epochs
        space, evaluator, _ = build_search(settings)
        torch.manual_seed(args.seed)
        supernet = space.freeze(space.max_sample())
        start = time.perf_counter()
        evaluator.evaluate(supernet)
        plain_seconds = time.perf_counter() - start
        plain_metric = evaluator.module.history[-1] if getattr(evaluator.module, "history", None) else None

        start = time.perf_counter()
        result = run_search(settings)
        search_seconds = time.perf_counter() - start

    report = {
        "task": args.task,
        "epochs": settings.epochs,
        "threads": torch.get_num_threads(),
        "plain_seconds": plain_seconds,
        "search_seconds": search_seconds,
        "search_loop_seconds": result["search_seconds"],
        "ratio": search_seconds / plain_seconds,
        "goal": 0.8,
        "plain_metric": plain_metric,
        "search_metric": result["metric"],
        "metric_name": result["metric_name"],
        "macs_before": result["macs_max"],
        "macs_after": result["macs"],
        "macs_trajectory": [t["macs"] for t in result["trajectory"]],
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{args.task}, {settings.epochs} epochs, {report['threads']} threads: plain training "
            f"{plain_seconds:.1f} s, HR-NAS search {search_seconds:.1f} s -> ratio {report['ratio']:.2f} "
            f"(goal <= 0.8); MACs {report['macs_before']:,} -> {report['macs_after']:,}; "
            f"{report['metric_name']} plain {plain_metric} vs searched {result['metric']:.4f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
