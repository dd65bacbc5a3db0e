"""What the search's widths add to its choice of paths: the searched architecture's paths, each at one
fraction of its maximum width (``nni_hrnas.baselines.same_paths_sample``), trained from scratch with the
search's recipe for the search's epochs, beside the searched architecture retrained the same way.

Usage (after ``bench_baselines.py ... --budgets epochs --out DIR``, on its run folders):
    OMP_NUM_THREADS=2 python benchmarks/bench_same_paths.py --task digits_seg --seeds 0,1,2,3,4 \\
        --search target_macs=1300000 --search min_path_width=8 --runs DIR

Rows go to ``DIR/same_paths.jsonl``; compare them with ``DIR/rows.jsonl``'s ``hrnas_retrained`` rows.
Run it alone on the machine: the rows carry training times.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_baselines import _search_overrides  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", required=True)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--search", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--runs", required=True, help="a bench_baselines.py --out folder")
    args = parser.parse_args(argv)

    from nni_hrnas import baselines
    from nni_hrnas.search import SearchSettings, search_space
    from nni_hrnas.tasks.registry import get_task

    spec = get_task(args.task)
    input_size = spec.input_size(False)
    overrides = _search_overrides(args.search)
    runs = Path(args.runs)
    for seed in (int(s) for s in args.seeds.split(",")):
        result = json.loads((runs / f"{args.task}-seed{seed}" / "result.json").read_text())
        space = search_space(SearchSettings(task=args.task, seed=seed, smoke=False, **overrides))
        arch = baselines.same_paths_sample(space, result["arch"], result["macs"], input_size)
        run = baselines.train_architecture(
            args.task,
            space,
            arch,
            int(result["epochs"]),
            name="same_paths",
            seed=seed,
            recipe="search",  # the search's data and recipe (baselines.recipe_datasets)
        )
        row = dict(
            task=args.task,
            seed=seed,
            kind="same_paths",
            budget="epochs",
            metric=run.metric,
            macs=run.macs,
            epochs=run.epochs,
            train_seconds=run.seconds,
            train_seconds_per_mmac=run.train_seconds_per_mmac,
            arch=arch,
            searched_arch=result["arch"],
        )
        with open(runs / "same_paths.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"{args.task} seed {seed} same_paths metric {run.metric:.4f} MACs {run.macs / 1e6:.2f} M",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
