"""Supernet training throughput of the search loop on Lightning Fabric, side by side in one run.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_fabric.py [--task digits_seg] [--images 256] [--epochs 2]
       [--repeats 2] [--json]

Measured, alternating, each ``--repeats`` times after one warm-up (the median is reported):

* ``plain``: a plain PyTorch loop over the same supernet, data, optimizer, schedule and penalty
  (what the search loop did before Fabric: training step, L1 penalty, truncated gradient, EMA);
* ``fabric``: the search's own loop (``ProgressiveShrinking`` on Fabric, one CPU process) with its
  prune steps switched off, so that both time training alone; goal ``fabric / plain >= 0.95``;
* ``fabric_channels_last``: the same with the network and inputs channels-last (the search's default:
  ``fabric`` and ``ddp2`` are timed in the NCHW layout of the plain loop);
* ``ddp2`` vs ``fabric``: two CPU processes (gloo) against one on the same global batch (each of the
  two takes half of it) and the same images; on 2 shared cores expect little.

Throughput is images / second of the epoch loop (``result['search_seconds']``: process start-up and
the process group's set-up are left out). Threads: what ``OMP_NUM_THREADS`` says, per process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
import warnings

import torch


def _no_prune_policy(policy):
    """The search's policy with its prune steps switched off (training alone is timed)."""
    from nni_hrnas.strategy.policy import PruningPolicy

    class TrainOnly(PruningPolicy):
        def prunes_after(self, epoch: int, epochs: int) -> bool:
            return False

    return TrainOnly(**{f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)})


def _settings(args, batch_size: int):
    from nni_hrnas.search import SearchSettings

    return SearchSettings(
        task=args.task,
        epochs=args.epochs,
        batch_size=batch_size,
        smoke=False,
        data_sizes=(args.images, 32),
        seed=0,
    )


def fabric_images_per_second(args, batch_size: int, **device) -> float:
    from nni.nas.execution import SequentialExecutionEngine
    from nni.nas.space import RawFormatModelSpace

    from nni_hrnas.search import build_search
    from nni_hrnas.strategy import DeviceSettings

    space, evaluator, strategy = build_search(_settings(args, batch_size))
    strategy.devices = DeviceSettings(accelerator="cpu", **device)
    policy = strategy.policy
    strategy.policy = lambda: _no_prune_policy(policy())
    strategy.initialize(RawFormatModelSpace(space, evaluator), SequentialExecutionEngine())
    strategy.run()
    return strategy.result["search_cost"]["images_seen"] / strategy.result["search_seconds"]


def plain_images_per_second(args, batch_size: int) -> float:
    """The same training as the search loop, written as a plain PyTorch loop."""
    from nni_hrnas.search import build_search
    from nni_hrnas.strategy.ema import EMA
    from nni_hrnas.strategy.loop import configure_optimizers
    from nni_hrnas.strategy.units import clip_zero_crossings_, mean_unit_work, penalty, unit_groups

    settings = _settings(args, batch_size)
    space, evaluator, strategy = build_search(settings)
    module, source = evaluator.module, evaluator.train_dataloaders
    torch.manual_seed(0)
    model = space.freeze(space.max_sample())
    module.set_model(model)
    loader = torch.utils.data.DataLoader(source.dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    optimizer, scheduler, interval = configure_optimizers(module, settings.epochs, len(loader))
    groups = unit_groups(model, strategy.input_size)
    normaliser, ema, lam = mean_unit_work(groups), EMA(model, 0.999), settings.lambda_
    images, start = 0, time.perf_counter()
    for _ in range(settings.epochs):
        model.train()
        for i, batch in enumerate(loader):
            loss = module.training_step(batch, i) + lam * penalty(groups, normaliser)
            if not torch.isfinite(loss):
                raise RuntimeError("NaN loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            before = [g.bn.weight.detach().clone() for g in groups]
            optimizer.step()
            clip_zero_crossings_(groups, before, lam, normaliser)
            if scheduler is not None and interval == "step":
                scheduler.step()
            ema.update(model)
            images += len(batch[0])
    return images / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits_seg")
    parser.add_argument("--images", type=int, default=256, help="training images (a multiple of 2 x batch)")
    parser.add_argument("--batch-size", type=int, default=16, help="global batch")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-ddp", action="store_true", help="skip the 2-process comparison")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    import logging

    logging.disable(logging.WARNING)
    from nni_hrnas.search import _stdout_to_stderr

    b = args.batch_size
    runs = {
        "plain": lambda: plain_images_per_second(args, b),
        "fabric": lambda: fabric_images_per_second(args, b, channels_last=False),
        "fabric_channels_last": lambda: fabric_images_per_second(args, b, channels_last=True),
    }
    if not args.no_ddp:  # against "fabric": one process on the same global batch
        runs["ddp2"] = lambda: fabric_images_per_second(args, b // 2, devices=2, channels_last=False)
    measured: dict[str, list[float]] = {name: [] for name in runs}
    with _stdout_to_stderr():  # NNI and Lightning log to stdout
        runs["plain"]()  # warm-up: imports, data sets, allocator
        for _ in range(args.repeats):
            for name, run in runs.items():
                measured[name].append(run())
    ips = {name: statistics.median(v) for name, v in measured.items()}
    report = {
        "task": args.task,
        "images": args.images,
        "global_batch": b,
        "epochs": args.epochs,
        "threads_per_process": torch.get_num_threads(),
        "repeats": args.repeats,
        "images_per_second": ips,
        "all_runs": measured,
        "fabric_over_plain": ips["fabric"] / ips["plain"],
        "goal": 0.95,
        "channels_last_over_default": ips["fabric_channels_last"] / ips["fabric"],
    }
    if not args.no_ddp:
        report["ddp2_over_one_process"] = ips["ddp2"] / ips["fabric"]
    if args.json:
        print(json.dumps(report))
    else:
        for name, value in ips.items():
            print(
                f"{name:>22}: {value:8.1f} images/s  (runs: {', '.join(f'{v:.1f}' for v in measured[name])})"
            )
        print(
            f"fabric / plain: {report['fabric_over_plain']:.3f} (goal >= 0.95); channels_last / default: "
            f"{report['channels_last_over_default']:.3f}"
            + (f"; 2 processes / 1: {report['ddp2_over_one_process']:.3f}" if not args.no_ddp else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
