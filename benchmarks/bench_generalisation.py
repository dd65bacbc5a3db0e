"""How far a searched network fits its training images beyond its validation images.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/bench_generalisation.py RUN [RUN ...] [--json]

Each ``RUN`` is a folder ``hrnas search`` wrote. Its network (``model.safetensors``, the weights the
search hands over) is evaluated with its task's metric on the data the search trained on, the
search's (train, val) sizes for the seed of the run:

* ``val``: the validation images the search reported its metric on; it must equal ``result.json``'s
  ``metric`` to round-off (checked: a run whose weights do not give its reported metric is an error);
* ``train``: the training images as stored (digits_seg's training-time shift left out, so that
  the figure is the images the network had every epoch to fit).

A large train-minus-val gap on a task with a few hundred training images says the search's last
epochs fit the training images rather than learn more; what a longer schedule can still gain there
is bounded by the data, not by the schedule. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
from pathlib import Path

import torch


def measure(run_dir: Path) -> dict:
    """The run's reported metric and its network's metric on the search's val and train data."""
    from nni_hrnas.baselines import recipe_datasets
    from nni_hrnas.run_folder import RunFolder
    from nni_hrnas.strategy.loop import evaluate
    from nni_hrnas.tasks.registry import get_task

    folder = RunFolder(run_dir)
    result = folder.load_result()
    spec = get_task(result.task)
    train, val = recipe_datasets(result.task, "search", seed=result.seed)
    module = spec.make_evaluator(
        None, datasets=(train, val), seed=result.seed, enable_progress_bar=False, logger=False
    ).module
    model = folder.load_model()
    # plain loaders: every image once (the task's training loader shuffles and drops a last partial batch)
    loader = torch.utils.data.DataLoader
    batch = spec.search.batch_size or spec.train.batch_size
    metric_val = evaluate(module, model, loader(val, batch_size=batch))
    if abs(metric_val - result.metric) > 5e-4:  # the search evaluates channels-last: other round-off
        raise SystemExit(
            f"{run_dir}: its weights score {metric_val:.6f} on the search's validation images, "
            f"result.json says {result.metric:.6f}; was the folder written by another version?"
        )
    if getattr(train, "shift", 0):
        train = copy.copy(train)
        train.shift = 0
    metric_train = evaluate(module, model, loader(train, batch_size=batch))
    scored = [p for p in result.trajectory or [] if p.get("metric") is not None]
    best = max(scored, key=lambda p: p["metric"]) if scored else None
    return {
        "run": str(run_dir),
        "task": result.task,
        "seed": result.seed,
        "metric_name": result.metric_name,
        "macs": result.macs,
        "params": result.params,
        "train_images": len(train),
        "val_images": len(val),
        "val": metric_val,
        "train": metric_train,
        # the best the search's metric was at an epoch's end (the weights handed over are the last)
        "best_val": best["metric"] if best else None,
        "best_val_epoch": best["epoch"] if best else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", type=Path, nargs="+", help="run folders that hrnas search wrote")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    args = parser.parse_args(argv)
    from nni_hrnas.logs import setup_cli_logging
    from nni_hrnas.run_folder import RunFolderError

    setup_cli_logging()
    rows = []
    for run in args.runs:
        try:
            rows.append(measure(run))
        except (FileNotFoundError, RunFolderError) as exc:
            parser.error(f"{run}: {exc}; pass a folder that hrnas search wrote")
    for row in rows:
        if args.json:
            print(json.dumps(row))
            continue
        print(
            f"{row['task']} seed {row['seed']} ({row['macs'] / 1e6:.2f} M MACs, {row['params']:,} params): "
            f"{row['metric_name']} train {row['train']:.3f} ({row['train_images']} images), "
            f"val {row['val']:.3f} ({row['val_images']}); best val {row['best_val']:.3f} "
            f"after epoch {row['best_val_epoch']}"
        )
    if len(rows) > 1 and not args.json:
        gaps = [r["train"] - r["val"] for r in rows]
        print(
            f"train - val over {len(rows)} runs: {statistics.mean(gaps):.3f} +- {statistics.stdev(gaps):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
