"""Training and inference speed per MAC of the searched and the uniform network, timed side by side.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/bench_speed_per_mac.py ROWS.jsonl [--rounds 5] [--steps 30] [--json]

``ROWS.jsonl`` is what ``benchmarks/bench_baselines.py`` wrote (``OUT/rows.jsonl``, or a file of
``benchmarks/results/``). For each task and seed in it, the searched architecture (its
``hrnas_retrained`` row) and the uniform network of its MACs (its ``uniform`` row of the
``epochs`` budget) are rebuilt in the space the search searched and timed in alternation, ``--rounds``
times, so that a machine that slows down or speeds up during the run moves both alike:

* a training step at the search's batch size: forward, a loss over the output, backward and an
  AdamW step, channels-last as the search trains (the loss is the same for both networks: their
  outputs have the same shape);
* inference at batch 1 and 32, in inference mode.

Each figure is the median over rounds of each round's median of ``--steps`` timed calls, in
milliseconds per image per million MACs, and the searched network's ratio to the uniform one
(above 1: the searched network is slower per MAC), with the lowest and highest round's ratio.
``bench_baselines.py`` times whole epochs instead (validation and data loading included), which
on 2 cores moved by up to 7% between two trainings of the same network. Run it alone on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

import torch


def _networks(rows: list[dict]) -> dict[tuple[str, int], tuple[dict[str, dict], dict | None]]:
    """(task, seed) -> ({'hrnas': row, 'uniform': row}, the search's --space overrides) for the
    pairs the file holds."""
    pairs: dict[tuple[str, int], dict[str, dict]] = {}
    spaces: dict[tuple[str, int], dict | None] = {}
    for r in rows:
        key = (r["task"], r["seed"])
        if r["kind"] == "hrnas":
            spaces[key] = (r.get("search_overrides") or {}).get("space")
        kind = {"hrnas_retrained": "hrnas", "uniform": "uniform"}.get(r["kind"])
        if kind is not None and r["budget"] == "epochs":
            pairs.setdefault(key, {})[kind] = r
    return {key: (pair, spaces.get(key)) for key, pair in pairs.items() if len(pair) == 2}


def measure(rows: list[dict], rounds: int, steps: int) -> list[dict]:
    """Per task and seed, each network's ms per image per M MACs and the searched/uniform ratios."""
    from nni_hrnas.latency import inference_runner, time_latency, training_step_runner
    from nni_hrnas.search import SearchSettings, search_space
    from nni_hrnas.tasks.registry import get_task

    table = []
    for (task, seed), (pair, space_overrides) in sorted(_networks(rows).items()):
        spec = get_task(task)
        input_size = spec.input_size(False)
        space = search_space(SearchSettings(task=task, smoke=False, space=space_overrides))
        batch = spec.search.batch_size or spec.train.batch_size
        torch.manual_seed(seed)
        calls: dict[tuple[str, str], Callable[[], None]] = {}
        nets = {}
        for kind, row in pair.items():
            net = space.freeze(row["arch"])
            if net.cost(input_size).macs != row["macs"]:
                raise SystemExit(
                    f"{task} seed {seed} {kind}: the rebuilt network's MACs differ from the row's"
                )
            nets[kind] = net = net.to(memory_format=torch.channels_last)
            x = torch.randn(batch, *input_size).contiguous(memory_format=torch.channels_last)
            calls[kind, "train"] = training_step_runner(net, x)  # a training step at the search's batch size
            for b in (1, 32):  # inference, in inference mode
                x = torch.randn(b, *input_size).contiguous(memory_format=torch.channels_last)
                calls[kind, f"batch{b}"] = inference_runner(net, x)
        per_image = {"train": batch, "batch1": 1, "batch32": 32}
        timed: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            for kind, net in nets.items():  # alternate, so that drift reaches both networks alike
                for what, images in per_image.items():
                    net.train(what == "train")  # outside the timed calls
                    seconds = time_latency(calls[kind, what], warmup=3, repeats=steps).median
                    timed.setdefault((kind, what), []).append(seconds / images)
        row = dict(task=task, seed=seed, rounds=rounds, steps=steps, train_batch=batch)
        for what in ("train", "batch1", "batch32"):
            per_round = {
                kind: [s / (pair[kind]["macs"] / 1e6) * 1e3 for s in timed[kind, what]] for kind in nets
            }
            ratios = [h / u for h, u in zip(per_round["hrnas"], per_round["uniform"], strict=True)]
            row[what] = dict(
                hrnas_ms_per_mmac=statistics.median(per_round["hrnas"]),
                uniform_ms_per_mmac=statistics.median(per_round["uniform"]),
                ratio=statistics.median(ratios),
                ratio_min=min(ratios),
                ratio_max=max(ratios),
            )
        row.update(
            hrnas_macs=pair["hrnas"]["macs"],
            uniform_macs=pair["uniform"]["macs"],
            hrnas_params=sum(p.numel() for p in nets["hrnas"].parameters()),
            uniform_params=sum(p.numel() for p in nets["uniform"].parameters()),
        )
        table.append(row)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rows", type=Path, help="a bench_baselines.py rows file (JSON lines)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the two networks")
    parser.add_argument("--steps", type=int, default=30, help="timed calls per network, figure and round")
    parser.add_argument("--json", action="store_true", help="one JSON object per task and seed")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be at least 1")
    try:
        rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        parser.error(f"cannot read {args.rows}: {exc}; pass the rows.jsonl that bench_baselines.py wrote")
    from nni_hrnas.logs import setup_cli_logging

    setup_cli_logging()
    table = measure(rows, args.rounds, args.steps)
    if not table:
        parser.error(
            f"{args.rows} holds no hrnas_retrained and uniform rows of the epochs budget for one seed"
        )
    for row in table:
        if args.json:
            print(json.dumps(row))
            continue
        print(
            f"{row['task']} seed {row['seed']}: {row['hrnas_macs'] / 1e6:.2f} M vs {row['uniform_macs'] / 1e6:.2f} M MACs, "
            f"{row['hrnas_params']} vs {row['uniform_params']} params"
        )
        for what in ("train", "batch1", "batch32"):
            f = row[what]
            print(
                f"  {what:8s} ms/image/M MACs: searched {f['hrnas_ms_per_mmac']:.4f}, uniform "
                f"{f['uniform_ms_per_mmac']:.4f}; ratio {f['ratio']:.3f} ({f['ratio_min']:.3f}-{f['ratio_max']:.3f})"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
