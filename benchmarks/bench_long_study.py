"""A long study: N smoke-scale trials on 2 workers and one storage, checked for what it leaves behind.

Runs ``hrnas study`` (whole HR-NAS searches of digits_seg at smoke scale) and reports: trials
recorded against trials asked for, processes of the study still alive after it returned, sockets
its processes listened on, temporary folders left in the temp directory, and each worker's
resident memory sampled through the run (first sample after warm-up, last, growth). One JSON
line at the end.

    python benchmarks/bench_long_study.py --trials 50 --workers 2 [--storage URL]
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

import optuna
import psutil

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--storage", help="default: a fresh SQLite file")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between memory samples")
    args = parser.parse_args()
    temp_root = Path(tempfile.gettempdir())
    temp_before = {p.name for p in temp_root.iterdir()}
    work = Path(tempfile.mkdtemp(prefix="hrnas-bench-long-"))
    storage = args.storage or f"sqlite:///{work}/study.db"
    name = f"long-{os.getpid()}"
    env = {
        **os.environ,
        "HRNAS_SMOKE": "1",
        "HRNAS_QUIET": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [
        sys.executable,
        "-m",
        "nni_hrnas.cli",
        "study",
        "--task",
        "digits_seg",
        "--storage",
        storage,
        "--study-name",
        name,
        "--n-trials",
        str(args.trials),
        "--workers",
        str(args.workers),
        "--epochs",
        str(args.epochs),
        "--out",
        str(work / "runs"),
        "--json",
    ]
    start = time.perf_counter()
    # stdout to a file, not a pipe read at the end: a pipe that nobody drains blocks its writers
    summary_file = (work / "summary.jsonl").open("w+")
    study_process = subprocess.Popen(
        command, env=env, stdout=summary_file, stderr=subprocess.DEVNULL, text=True
    )
    parent = psutil.Process(study_process.pid)
    rss: dict[int, list[float]] = {}
    seen: set[int] = set()
    listening: set[tuple] = set()
    while study_process.poll() is None:
        try:
            tree = parent.children(recursive=True)
        except psutil.NoSuchProcess:
            break
        for process in tree:
            try:
                seen.add(process.pid)
                if "spawn_main" in " ".join(process.cmdline()):
                    rss.setdefault(process.pid, []).append(process.memory_info().rss / 2**20)
                listening |= {
                    (c.laddr.ip, c.laddr.port)
                    for c in process.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN
                }
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        time.sleep(args.interval)
    study_process.wait()
    summary_file.seek(0)
    out = summary_file.read()
    wall = time.perf_counter() - start
    leaked = [
        pid for pid in seen if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    study = optuna.load_study(study_name=name, storage=storage)
    states = [t.state.name for t in study.trials]
    temp_after = {p.name for p in temp_root.iterdir()} - temp_before - {work.name}
    workers = {pid: samples for pid, samples in rss.items() if len(samples) >= 4}
    growth = {
        pid: {
            "first_mib": round(s[len(s) // 10], 1),
            "last_mib": round(s[-1], 1),
            "growth_mib": round(s[-1] - s[len(s) // 10], 1),
            "samples": len(s),
        }
        for pid, s in workers.items()
    }
    print(
        json.dumps(
            {
                "trials_asked": args.trials,
                "trials_recorded": len(states),
                "complete": states.count("COMPLETE"),
                "other_states": sorted(set(states) - {"COMPLETE"}),
                "exit_status": study_process.returncode,
                "wall_s": round(wall, 1),
                "processes_left": leaked,
                "listening_sockets": sorted(listening),
                "temp_entries_left": sorted(temp_after),
                "worker_rss": growth,
                "summary": json.loads(out.strip().splitlines()[-1]) if out.strip() else None,
            }
        )
    )


if __name__ == "__main__":
    main()
