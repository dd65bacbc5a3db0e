"""What a BN or activation element costs in a training step, in MAC-equivalents, fitted on this machine.

Usage:
    OMP_NUM_THREADS=2 python benchmarks/bench_elementwise_weight.py [--task digits_seg] [--shares 0.1,0.15,0.23,0.3,0.46]
        [--random 2] [--rounds 3] [--steps 15] [--json]

For each share of the supernet's MACs, the uniform network and ``--random`` random architectures of
the task's search space at those MACs (``nni_hrnas.baselines``) are built, and a training step of each
(forward, a mean-square loss, backward, AdamW; channels-last, the search's batch) is timed, all of them
in alternation, ``--rounds`` times. Least squares then fits

    seconds per step = a + b * MACs + c * norm_act elements   (both per batch, from ``HRNASNetwork.cost``)

and reports ``c / b``: what ``hrnas search --elementwise-weight`` takes. The fit is made on each
round's medians and on their median; the spread over rounds is the figure's uncertainty. Networks at
equal MACs differ in their elements, which is what separates ``b`` from ``c``. Run it alone on the
machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence

import torch


def fit_weight(points: Sequence[tuple[float, float, float]]) -> dict[str, float]:
    """Least-squares ``seconds = a + b * macs + c * elements`` over ``(macs, elements, seconds)``
    points: ``a`` (s), ``b`` (s per MAC), ``c`` (s per element), ``weight = c / b`` and the root mean
    square error of this fit and of the MAC-only fit ``a + b * macs`` (s)."""
    if len(points) < 4:
        raise ValueError(f"need at least 4 networks to fit 3 coefficients, got {len(points)}")
    design = torch.tensor([[1.0, m, e] for m, e, _ in points], dtype=torch.float64)
    seconds = torch.tensor([t for *_, t in points], dtype=torch.float64).unsqueeze(1)
    scale = design.abs().amax(dim=0).clamp(min=1.0)  # columns of 1, ~1e7 and ~1e5: solve scaled
    coef = torch.linalg.lstsq(design / scale, seconds).solution.squeeze(1) / scale
    mac_only = torch.linalg.lstsq(design[:, :2] / scale[:2], seconds).solution.squeeze(1) / scale[:2]

    def rms(predicted: torch.Tensor) -> float:
        return float((predicted - seconds.squeeze(1)).square().mean().sqrt())

    a, b, c = (float(v) for v in coef)
    return dict(
        a=a,
        b=b,
        c=c,
        weight=c / b if b > 0 else float("nan"),
        rms=rms(design @ coef),
        rms_macs_only=rms(design[:, :2] @ mac_only),
    )


def _networks(task: str, shares: Sequence[float], random_count: int, seed: int):
    from nni_hrnas.baselines import random_samples, uniform_sample
    from nni_hrnas.search import SearchSettings, search_space
    from nni_hrnas.tasks.registry import get_task

    spec = get_task(task)
    input_size = spec.input_size(False)
    space = search_space(SearchSettings(task=task, smoke=False))
    supernet = space.freeze(space.max_sample()).cost(input_size).macs
    samples = []
    for i, share in enumerate(shares):
        macs = share * supernet
        samples.append(("uniform", uniform_sample(space, macs, input_size)))
        samples += [
            ("random", s) for s in random_samples(space, macs, input_size, random_count, seed=seed + i)
        ]
    batch = spec.search.batch_size or spec.train.batch_size
    return space, samples, input_size, batch


def measure(
    task: str, shares: Sequence[float], random_count: int, rounds: int, steps: int, seed: int = 0
) -> dict:
    """Time every network's training step in alternation and fit the element weight (see the module doc)."""
    from nni_hrnas.latency import time_latency, training_step_runner

    torch.manual_seed(seed)
    space, samples, input_size, batch = _networks(task, shares, random_count, seed)
    nets = []
    for kind, arch in samples:
        net = space.freeze(arch).to(memory_format=torch.channels_last).train()
        cost = net.cost(input_size)
        x = torch.randn(batch, *input_size).contiguous(memory_format=torch.channels_last)
        nets.append((kind, batch * cost.macs, batch * cost.norm_act, training_step_runner(net, x)))
    timed: list[list[float]] = [[] for _ in nets]
    for _ in range(rounds):
        for i, (*_, step) in enumerate(nets):  # alternate: drift reaches every network alike
            timed[i].append(time_latency(step, warmup=3, repeats=steps).median)
    per_round = [
        fit_weight([(m, e, timed[i][r]) for i, (_, m, e, _) in enumerate(nets)])["weight"]
        for r in range(rounds)
    ]
    fit = fit_weight([(m, e, statistics.median(timed[i])) for i, (_, m, e, _) in enumerate(nets)])
    return dict(
        task=task,
        batch=batch,
        networks=len(nets),
        rounds=rounds,
        steps=steps,
        shares=list(shares),
        weight=fit["weight"],
        weight_per_round=per_round,
        fixed_ms=fit["a"] * 1e3,
        ms_per_mmac=fit["b"] * 1e9,
        ms_per_melement=fit["c"] * 1e9,
        rms_ms=fit["rms"] * 1e3,
        rms_macs_only_ms=fit["rms_macs_only"] * 1e3,
        points=[
            dict(kind=kind, macs=m // batch, norm_act=e // batch, ms=statistics.median(timed[i]) * 1e3)
            for i, (kind, m, e, _) in enumerate(nets)
        ],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--task", default="digits_seg")
    parser.add_argument("--shares", default="0.1,0.15,0.23,0.3,0.46", help="shares of the supernet's MACs")
    parser.add_argument("--random", type=int, default=2, help="random architectures per share")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per network and round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        shares = [float(v) for v in args.shares.split(",")]
    except ValueError:
        parser.error(f"invalid --shares {args.shares!r}: expected comma-separated numbers, e.g. 0.1,0.2")
    if (
        not shares
        or any(not 0 < s <= 1 for s in shares)
        or args.random < 0
        or args.rounds < 1
        or args.steps < 1
    ):
        parser.error("--shares must lie in (0, 1]; --random >= 0, --rounds and --steps >= 1")
    if len(shares) * (1 + args.random) < 4:
        parser.error("fewer than 4 networks: add shares or --random architectures")
    from nni_hrnas.logs import setup_cli_logging

    setup_cli_logging()
    row = measure(args.task, shares, args.random, args.rounds, args.steps, args.seed)
    if args.json:
        print(json.dumps(row))
        return 0
    print(
        f"{args.task}, {row['networks']} networks, training step at batch {row['batch']}: "
        f"{row['fixed_ms']:.1f} ms fixed + {row['ms_per_mmac']:.3f} ms per M MACs + "
        f"{row['ms_per_melement']:.2f} ms per M elements"
    )
    spread = row["weight_per_round"]
    print(
        f"  element weight {row['weight']:.0f} MAC-equivalents (rounds {min(spread):.0f}-{max(spread):.0f}); "
        f"fit error {row['rms_ms']:.2f} ms, MACs alone {row['rms_macs_only_ms']:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
