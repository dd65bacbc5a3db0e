"""Latency of searched networks where they will run: PyTorch eager, the inference form, onnxruntime.

Usage: nice -n 19 env OMP_NUM_THREADS=1 python benchmarks/bench_deploy.py RUN_DIR [RUN_DIR ...]
           [--synthetic] [--batch 1,32] [--repeats 30] [--pad-channels 8] [--json]

For each run folder (written by ``hrnas search``), for the unpruned supernet of its space and,
with ``--synthetic``, for two made-up networks at the first run's MACs (every kernel path kept and
thinned alike, as a MAC-only search tends to leave them; or one kernel path a block, the others
removed, as the latency-aware search tends to), times at each batch size, one thread, the median of
``--repeats`` runs after a warm-up (:func:`nni_hrnas.latency.time_latency`):

* ``eager``: the network in PyTorch, as searched (eval mode);
* ``fused``: its inference form in PyTorch (BNs folded, kernel paths merged, each path's width
  zero-padded to a multiple of ``--pad-channels``, default 8, as ``hrnas export --fuse`` does);
* ``onnxruntime``: the inference form exported as ``hrnas export --format onnx --fuse
  --dynamic-batch`` writes it, in onnxruntime's CPU provider (sequential, one intra-op thread).

and prints, per runtime, ``latency drop / MAC drop`` with ``drop = 1 - network / supernet`` (the
goal is >= 0.8: a MAC saved is worth as much latency on the deployment runtime as it costs).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

from search_spaces.ops.fuse import DEPLOY_CHANNEL_MULTIPLE

RUNTIMES = ("eager", "fused", "onnxruntime")


def _load(run_dir: Path):
    from nni_hrnas.search import load_searched_model
    from search_spaces import HRNASNetwork
    from search_spaces.config import HRNASConfig

    result = json.loads((run_dir / "result.json").read_text())
    config = HRNASConfig(**result["config"])
    supernet = HRNASNetwork(config, {k: int(v) for k, v in result["arch_max"].items()}).eval()
    return result, config, load_searched_model(run_dir), supernet


def _synthetic(config, arch_max: dict[str, int], target_macs: int, size) -> dict[str, torch.nn.Module]:
    """Two networks at about ``target_macs``: every kernel path thinned by one factor, or one path a block."""
    from search_spaces import HRNASNetwork

    def build(arch):
        return HRNASNetwork(config, arch).eval()

    blocks = sorted({label.rsplit("_", 1)[0] for label in arch_max})
    kernels = list(config.kernels)

    def scaled(factor: float, one_path: bool) -> dict[str, int]:
        arch = {}
        for label, m in arch_max.items():
            block, choice = label.rsplit("_", 1)
            if choice == "tok":
                arch[label] = m  # transformers as in the supernet: the comparison is about kernel paths
            elif one_path and int(choice[1:]) != kernels[blocks.index(block) % len(kernels)]:
                arch[label] = 0
            else:
                step = config.granularity
                arch[label] = min(m, max(step, math.ceil(m * factor / step) * step))
        return arch

    nets = {}
    for name, keep in (("synthetic-thinned", False), ("synthetic-one-path", True)):
        lo, hi = 0.0, 1.0
        for _ in range(20):  # bisect the width factor to the target MACs
            mid = (lo + hi) / 2
            if build(scaled(mid, keep)).cost(size).macs < target_macs:
                lo = mid
            else:
                hi = mid
        nets[name] = build(scaled(hi, keep))
    return nets


def _timer(model: torch.nn.Module, runtime: str, x: torch.Tensor, onnx_path: Path | None, pad: int):
    from nni_hrnas.latency import inference_runner, onnxruntime_runner
    from search_spaces.ops.fuse import fuse_for_inference

    if runtime == "onnxruntime":
        return onnxruntime_runner(str(onnx_path), x, threads=1)
    return inference_runner(fuse_for_inference(model, pad) if runtime == "fused" else model, x)


def measure(nets: dict[str, torch.nn.Module], size, batches: list[int], repeats: int, pad: int) -> dict:
    """Median seconds of every network, runtime and batch: ``{(name, runtime, batch): seconds}``."""
    from nni_hrnas.deploy import export_onnx
    from nni_hrnas.latency import time_latency
    from search_spaces.ops.fuse import fuse_for_inference

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, net in nets.items():
            path = Path(tmp) / f"{name}.onnx"
            export_onnx(fuse_for_inference(net, pad), torch.randn(2, *size), path, dynamic_batch=True)
            for batch in batches:
                x = torch.randn(batch, *size)
                reps = max(
                    5, repeats // max(1, batch // 4)
                )  # large batches: fewer repeats, similar wall time
                for runtime in RUNTIMES:
                    out[name, runtime, batch] = time_latency(
                        _timer(net, runtime, x, path, pad), warmup=3, repeats=reps
                    ).median
                print(
                    f"  {name} batch {batch}: "
                    + ", ".join(f"{rt} {1e3 * out[name, rt, batch]:.2f} ms" for rt in RUNTIMES),
                    file=sys.stderr,
                    flush=True,
                )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, help="folders written by hrnas search (one space)")
    parser.add_argument(
        "--synthetic", action="store_true", help="also two made-up networks at the first run's MACs"
    )
    parser.add_argument("--batch", default="1,32", help="comma-separated batch sizes (default 1,32)")
    parser.add_argument(
        "--repeats", type=int, default=30, help="timed runs at batch 1 (fewer at larger batches)"
    )
    parser.add_argument(
        "--pad-channels",
        type=int,
        default=DEPLOY_CHANNEL_MULTIPLE,
        help="inference form: path widths padded to a multiple (1: none)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON line per network and batch")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    batches = [int(b) for b in args.batch.split(",")]
    for run_dir in args.run_dirs:
        if not (run_dir / "result.json").is_file():
            print(
                f"bench_deploy: error: {run_dir}/result.json is missing; give folders written by hrnas search",
                file=sys.stderr,
            )
            return 2
    nets, info = {}, {}
    for run_dir in args.run_dirs:
        result, config, searched, supernet = _load(run_dir)
        size = tuple(result["input_size"])
        nets[run_dir.name] = searched
        info[run_dir.name] = (
            f"lambda {result.get('lambda')}, path overhead {result.get('path_overhead'):.3g}, "
            f"{result.get('epochs')} epochs"
        )
    nets["supernet"] = supernet
    if args.synthetic:
        first = _load(args.run_dirs[0])
        for name, net in _synthetic(first[1], first[0]["arch_max"], first[2].cost(size).macs, size).items():
            nets[name] = net
            info[name] = "made up at the first run's MACs"
    macs = {name: net.cost(size).macs for name, net in nets.items()}
    lat = measure(nets, size, batches, args.repeats, args.pad_channels)
    if not args.json:
        print(
            "| network | MACs | batch | eager ms (ratio) | fused ms (ratio) | onnxruntime ms (ratio) |\n"
            "|---|---|---|---|---|---|"
        )
    for name in nets:
        for batch in batches:
            mac_drop = 1 - macs[name] / macs["supernet"]
            ratio = {
                rt: (1 - lat[name, rt, batch] / lat["supernet", rt, batch]) / mac_drop
                if mac_drop > 0
                else float("nan")
                for rt in RUNTIMES
            }
            if args.json:
                print(
                    json.dumps(
                        {
                            "network": name,
                            "about": info.get(name, "unpruned supernet"),
                            "macs": macs[name],
                            "batch": batch,
                            "threads": 1,
                            "mac_drop": mac_drop,
                            **{f"ms_{rt}": 1e3 * lat[name, rt, batch] for rt in RUNTIMES},
                            **{f"ratio_{rt}": ratio[rt] for rt in RUNTIMES},
                        }
                    )
                )
                continue
            cells = " | ".join(
                f"{1e3 * lat[name, rt, batch]:.2f}" + (f" ({ratio[rt]:.2f})" if mac_drop > 0 else "")
                for rt in RUNTIMES
            )
            print(f"| {name} ({info.get(name, 'unpruned')}) | {macs[name] / 1e6:.2f} M | {batch} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
