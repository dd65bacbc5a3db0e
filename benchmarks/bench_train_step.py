"""Wall time of one training step (forward, backward, AdamW update) of a preset's networks.

Usage: python benchmarks/bench_train_step.py [--preset digits_seg] [--arch RUN/arch.json] [--batch 8]
       [--steps 20] [--cache 1024 16384]

Times the supernet and, with ``--arch``, a searched network and the supernet slimmed uniformly to
its MACs, channels-last as the search trains them, once per oneDNN primitive-cache capacity in
``--cache`` (each in a fresh process, since oneDNN reads it once). Side by side in one run: the
median of ``--steps`` steps after 3 warm-up steps, and the MACs of one forward.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def time_steps(preset: str, arch_file: str | None, batch: int, steps: int) -> list[dict]:
    """Median step time of each network, in this process."""
    import torch
    import torch.nn.functional as F

    from nni_hrnas.baselines import uniform_sample
    from nni_hrnas.latency import time_latency, training_step_runner
    from search_spaces import HRNASSpace, load_arch

    torch.manual_seed(0)
    space = HRNASSpace.from_preset(preset)
    config = space.config
    nets = {"supernet": space.max_sample()}
    if arch_file:
        searched = load_arch(arch_file, space.config)
        nets["searched"] = searched
        macs = space.freeze(searched).cost(config.input_size).macs
        nets["uniform"] = uniform_sample(space, macs, config.input_size)
    x = torch.randn(batch, *config.input_size).contiguous(memory_format=torch.channels_last)
    if config.task == "classification":
        target = torch.randint(0, config.num_outputs, (batch,))
    else:
        target = torch.randint(0, config.num_outputs, (batch, *config.input_size[1:]))

    def loss(out: torch.Tensor) -> torch.Tensor:
        if config.task != "classification":
            out = F.interpolate(out, size=target.shape[-2:], mode="bilinear", align_corners=False)
        return F.cross_entropy(out, target)

    rows = []
    for name, arch in nets.items():
        net = space.freeze(arch).train().to(memory_format=torch.channels_last)
        stats = time_latency(training_step_runner(net, x, loss), warmup=3, repeats=steps)
        rows.append(
            {
                "network": name,
                "macs": int(net.cost(config.input_size).macs),
                "convs": sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()),
                "median_ms": stats.median * 1000,
                "min_ms": stats.min * 1000,
                "threads": torch.get_num_threads(),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="digits_seg")
    parser.add_argument("--arch", help="a searched arch.json (adds the searched and the uniform network)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--cache",
        type=int,
        nargs="+",
        default=[1024, 16384],
        help="oneDNN primitive-cache capacities to compare (1024 is oneDNN's default)",
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(time_steps(args.preset, args.arch, args.batch, args.steps)))
        return
    for capacity in args.cache:
        env = {**os.environ, "ONEDNN_PRIMITIVE_CACHE_CAPACITY": str(capacity)}
        command = [
            sys.executable,
            __file__,
            "--worker",
            "--preset",
            args.preset,
            "--batch",
            str(args.batch),
            "--steps",
            str(args.steps),
            *(["--arch", args.arch] if args.arch else []),
        ]
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
        for row in json.loads(out.strip().splitlines()[-1]):
            print(
                f"{args.preset} {row['network']:9s} {row['macs'] / 1e6:6.2f} MMACs {row['convs']:4d} convs, "
                f"batch {args.batch}, {row['threads']} threads, oneDNN cache {capacity:5d}: median step "
                f"{row['median_ms']:6.1f} ms (min {row['min_ms']:.1f})"
            )


if __name__ == "__main__":
    main()
