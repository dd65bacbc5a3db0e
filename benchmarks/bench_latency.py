"""CPU latency of a searched network against the unpruned supernet, with the MAC drop beside it.

Usage: OMP_NUM_THREADS=1 python benchmarks/bench_latency.py RUN_DIR [--batch 1,32] [--runs 20] [--json]
       OMP_NUM_THREADS=1 python benchmarks/bench_latency.py --search digits_seg [--path-overhead auto] [--lambda L]
           (runs a search first: the task's default, or latency-aware with a per-path overhead)

Latencies are medians of interleaved runs (supernet, searched, supernet, ...) in eval mode under
``torch.inference_mode``, at the run's training input size. The figure is
``latency drop / MAC drop`` with ``drop = 1 - searched / supernet`` (goal >= 0.8). It is measured
twice: on the networks as built (``form: plain``) and on their inference forms (``form: fused``,
BNs folded and each block's kernel paths merged, see search_spaces/ops/fuse.py), both networks in the
same form each time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def _time(model: torch.nn.Module, x: torch.Tensor) -> float:
    start = time.perf_counter()
    model(x)
    return time.perf_counter() - start


def measure(run_dir: Path, batch: int = 1, runs: int = 30, warmup: int = 5, fuse: bool = False) -> dict:
    from nni_hrnas.search import load_searched_model
    from search_spaces import HRNASNetwork
    from search_spaces.config import HRNASConfig
    from search_spaces.ops.fuse import fuse_for_inference

    result = json.loads((run_dir / "result.json").read_text())
    searched = load_searched_model(run_dir)
    config = HRNASConfig(**result["config"])
    supernet = HRNASNetwork(config, {k: int(v) for k, v in result["arch_max"].items()}).eval()
    size = tuple(result["input_size"])
    macs = {"supernet": supernet.cost(size).macs, "searched": searched.cost(size).macs}
    if fuse:
        supernet, searched = fuse_for_inference(supernet), fuse_for_inference(searched)
    x = torch.randn(batch, *size)
    times: dict[str, list[float]] = {"supernet": [], "searched": []}
    with torch.inference_mode():
        for _ in range(warmup):
            supernet(x)
            searched(x)
        for _ in range(runs):
            times["supernet"].append(_time(supernet, x))
            times["searched"].append(_time(searched, x))
    lat = {k: statistics.median(v) for k, v in times.items()}
    mac_drop = 1 - macs["searched"] / macs["supernet"]
    latency_drop = 1 - lat["searched"] / lat["supernet"]
    return {
        "run_dir": str(run_dir),
        "form": "fused" if fuse else "plain",
        "batch": batch,
        "threads": torch.get_num_threads(),
        "input_size": list(size),
        "macs_supernet": macs["supernet"],
        "macs_searched": macs["searched"],
        "latency_ms_supernet": 1000 * lat["supernet"],
        "latency_ms_searched": 1000 * lat["searched"],
        "mac_drop": mac_drop,
        "latency_drop": latency_drop,
        "drop_ratio": latency_drop / mac_drop if mac_drop > 0 else float("nan"),
        "goal": 0.8,
        "mac_speedup": macs["supernet"] / macs["searched"],
        "latency_speedup": lat["supernet"] / lat["searched"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir", nargs="?", help="a folder written by hrnas search")
    parser.add_argument("--search", metavar="TASK", help="run a default search of TASK first")
    parser.add_argument(
        "--path-overhead", default="0", help="with --search: MAC-equivalents per path, or auto"
    )
    parser.add_argument("--lambda", dest="lambda_", type=float, help="with --search: the penalty weight")
    parser.add_argument("--batch", default="1,32", help="comma-separated batch sizes (default 1,32)")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.run_dir and not args.search:
        parser.error("give RUN_DIR or --search TASK")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(args.run_dir) if args.run_dir else Path(tmp) / "run"
        if args.search:
            from nni_hrnas.search import SearchSettings, _overhead_arg, _stdout_to_stderr, run_search

            with _stdout_to_stderr():
                run_search(
                    SearchSettings(
                        task=args.search,
                        out=str(run_dir),
                        smoke=False,
                        lambda_=args.lambda_,
                        path_overhead=_overhead_arg(args.path_overhead),
                    )
                )
        reports = [
            measure(run_dir, int(b), args.runs, fuse=fuse)
            for b in args.batch.split(",")
            for fuse in (False, True)
        ]
    if args.json:
        print(json.dumps(reports if len(reports) > 1 else reports[0]))
        return 0
    for report in reports:
        print(
            f"{report['form']}, batch {report['batch']}, {report['threads']} threads: supernet {report['latency_ms_supernet']:.2f} ms "
            f"({report['macs_supernet']:,} MACs), searched {report['latency_ms_searched']:.2f} ms "
            f"({report['macs_searched']:,} MACs); MAC drop {report['mac_drop']:.1%}, latency drop "
            f"{report['latency_drop']:.1%} -> ratio {report['drop_ratio']:.2f} (goal >= 0.8)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
