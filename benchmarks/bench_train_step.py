"""Wall time of one training step (forward, backward, SGD update) of a preset's supernet.

Usage: python benchmarks/bench_train_step.py [--preset digits_seg] [--batch 16] [--steps 20]
Prints the median step time and the MACs of one forward, for the README and closing notes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from search_spaces import HRNASSpace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--preset", default="digits_seg")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    torch.manual_seed(0)
    space = HRNASSpace.from_preset(args.preset)
    net = space.freeze(space.max_sample()).train()
    config = space.config
    x = torch.randn(args.batch, *config.input_size)
    if config.task == "classification":
        target = torch.randint(0, config.num_outputs, (args.batch,))
    else:
        target = torch.randint(0, config.num_outputs, (args.batch, *config.input_size[1:]))
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    times = []
    for step in range(args.steps + 3):
        start = time.perf_counter()
        out = net(x)
        if config.task != "classification":
            out = F.interpolate(out, size=target.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= 3:  # warm-up steps excluded
            times.append(time.perf_counter() - start)
    macs = net.cost().macs
    print(f"{args.preset} supernet, batch {args.batch}, {torch.get_num_threads()} threads: "
          f"median train step {statistics.median(times) * 1000:.1f} ms "
          f"(min {min(times) * 1000:.1f} ms), forward {macs / 1e6:.1f} MMACs per image")


if __name__ == "__main__":
    main()
