"""W study workers on one machine: the cores split between them (the default) against one worker.

Runs ``hrnas study`` for a fixed number of smoke-scale trials (whole HR-NAS searches of digits_seg)
with ``--workers 1`` and ``--workers 2`` (threads per worker: cores // W), and, with
``--oversubscribed``, ``--workers 2 --threads CORES`` (every worker on every core: torch's default
before the split). Prints one JSON line per run and a summary line. The issue's bar: W = 2 on
2 cores finishes the trials no slower than W = 1.

    python benchmarks/bench_workers.py --trials 4 --epochs 1 [--oversubscribed]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_study(workers: int, threads: int | None, trials: int, epochs: int) -> dict:
    """Wall time of one ``hrnas study`` run of ``trials`` new trials on a fresh SQLite storage."""
    with tempfile.TemporaryDirectory(prefix="hrnas-bench-workers-") as tmp:
        command = [
            sys.executable,
            "-m",
            "nni_hrnas.cli",
            "study",
            "--task",
            "digits_seg",
            "--storage",
            f"sqlite:///{tmp}/study.db",
            "--n-trials",
            str(trials),
            "--workers",
            str(workers),
            "--epochs",
            str(epochs),
            "--out",
            f"{tmp}/runs",
            "--json",
        ]
        if threads is not None:
            command += ["--threads", str(threads)]
        env = {
            **os.environ,
            "HRNAS_SMOKE": "1",
            "HRNAS_QUIET": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # the study splits the cores itself
            env.pop(name, None)
        start = time.perf_counter()
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - start
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "workers": workers,
        "threads_per_worker": threads or "default (cores // workers)",
        "trials": trials,
        "complete": summary["complete"],
        "wall_s": round(wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--oversubscribed", action="store_true", help="also W=2 with every core per worker")
    args = parser.parse_args()
    from nni_hrnas.threads import available_cores

    cores = available_cores()
    runs = [(1, None), (2, None)] + ([(2, cores)] if args.oversubscribed else [])
    results = []
    for workers, threads in runs:
        results.append(run_study(workers, threads, args.trials, args.epochs))
        print(json.dumps(results[-1]), flush=True)
    one, two = results[0]["wall_s"], results[1]["wall_s"]
    print(
        json.dumps(
            {"cores": cores, "speedup_w2_over_w1": round(one / two, 2), "w2_no_slower": two <= one * 1.05}
        )
    )


if __name__ == "__main__":
    main()
