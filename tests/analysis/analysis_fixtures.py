"""Inputs in exactly the formats the producers write (the contracts are in analysis/collect.py).

Run folders and compare folders are written as ``hrnas search --out`` / ``hrnas compare --out``
write them; Optuna studies through Optuna's own API; NNI databases are real NNI 3.0 databases
(``data/nni``), or the same tables written by hand for the broken cases.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import warnings
from pathlib import Path

import numpy as np

DATA = Path(__file__).parent / "data"
NNI_DATA = DATA / "nni"

# The HR-NAS supernet: branches per parallel stage, blocks per branch, channels per branch.
STAGES = [
    (1, [1], [24]),
    (2, [2, 2], [18, 36]),
    (3, [2, 2, 3], [18, 36, 72]),
    (4, [2, 2, 3, 4], [18, 36, 72, 144]),
    (4, [2, 2, 3, 4], [18, 36, 72, 144]),
]


def space_max(transformer: bool = True, head_in: int = 270) -> dict[str, int]:
    """Full widths of every searching block: 4 x C_in depthwise channels per kernel, 64 tokens."""
    out: dict[str, int] = {}

    def block(name: str, c_in: int, tokens: bool) -> None:
        for k in (3, 5, 7):
            out[f"{name}_k{k}"] = 4 * c_in
        if tokens:
            out[f"{name}_tok"] = 64

    prev: list[int] = []
    for s, (nb, blocks, chans) in enumerate(STAGES):
        if s > 0:
            for o in range(nb):
                for i in range(len(prev)):
                    if abs(o - i) <= 1 and (o < len(prev) or i == len(prev) - 1):
                        block(f"f{s}_o{o}_i{i}", prev[i], False)
        for b in range(nb):
            for n in range(blocks[b]):
                block(f"p{s}_b{b}_n{n}", chans[b], transformer and s >= 2)
        prev = chans
    block("head", head_in, False)
    return out


def sample_arch(
    rng: np.random.Generator, keep: float, maxima: dict[str, int] | None = None
) -> dict[str, int]:
    maxima = maxima or space_max()
    return {k: int(rng.binomial(v, keep)) for k, v in maxima.items()}


def trajectory(rng: np.random.Generator, macs_end: int, metric_end: float, steps: int = 4) -> list[dict]:
    macs = np.linspace(2.0 * macs_end, macs_end, steps + 1).astype(int)
    out = []
    for s in range(steps + 1):
        out.append(
            {
                "step": s,
                "epoch": 5 * s,
                "macs": int(macs[s]),
                "params": int(macs[s] // 700),
                "metric": None
                if s == 0
                else round(metric_end - 0.02 * (steps - s) + rng.normal(0, 0.003), 4),
                "units_removed": int((2.0 * macs_end - macs[s]) // 2e5),
            }
        )
    return out


def write_run(
    folder: Path,
    *,
    strategy: str = "hrnas",
    lam: float = 0.5,
    eps: float = 1e-3,
    seed: int = 0,
    task: str = "digits_seg",
    macs: int | None = None,
    metric: float | None = None,
    with_max: bool = True,
    drop: tuple[str, ...] = (),
) -> dict:
    """A run folder as ``hrnas search --out DIR`` writes it; returns result.json's content."""
    rng = np.random.default_rng(seed * 1000 + int(lam * 100))
    folder.mkdir(parents=True, exist_ok=True)
    maxima = space_max()
    keep = 0.25 + 0.5 * (1 - lam)
    arch = sample_arch(rng, keep, maxima)
    macs = macs if macs is not None else int(1.2e9 * keep + rng.normal(0, 3e7))
    metric = metric if metric is not None else round(0.55 + 0.25 * keep + rng.normal(0, 0.01), 4)
    result = {
        "macs": macs,
        "params": macs // 600,
        "metric": metric,
        "metric_name": "mIoU",
        "arch": arch,
        "search_seconds": 60.0 + 100 * keep,
        "lambda": lam,
        "eps": eps,
        "seed": seed,
        "task": task,
        "preset": "digits_seg",
        "strategy": strategy,
        "search_cost": {
            "wall_seconds": 61.0 + 100 * keep,
            "epochs": 30,
            "images_seen": 30 * 1797,
            "mac_epochs": 30 * macs,
        },
        "trajectory": trajectory(rng, macs, metric) if strategy == "hrnas" else [],
    }
    if with_max:
        result["arch_max"] = maxima
    for key in drop:
        result.pop(key, None)
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    (folder / "arch.json").write_text(json.dumps(arch))
    (folder / "model.safetensors").write_bytes(b"")
    return result


def write_compare(folder: Path, strategies=("hrnas", "random", "darts"), seed: int = 0) -> list[dict]:
    """A ``compare`` output folder: results.csv plus one run folder per strategy."""
    import csv

    rows = []
    for j, strat in enumerate(strategies):
        res = write_run(folder / strat, strategy=strat, lam=0.2 + 0.3 * j, seed=seed)
        rows.append(
            {
                "strategy": strat,
                "metric": res["metric"],
                "macs": res["macs"],
                "params": res["params"],
                "budget_used": 0.9 + 0.05 * j,
                "arch": json.dumps(res["arch"]),
            }
        )
    with open(folder / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def write_sweep(folder: Path, n: int = 6, strategy: str = "hrnas", seed: int = 0, **kw) -> None:
    """Several run folders (a lambda sweep)."""
    for i in range(n):
        write_run(
            folder / f"lam{i}",
            strategy=strategy,
            lam=(i + 0.5) / n,
            eps=10 ** (-4 + 2 * i / n),
            seed=seed,
            **kw,
        )


def make_optuna(
    url: str, *, name: str = "hrnas-study", n: int = 12, mode: str = "two", seed: int = 0, fail: int = 1
):
    """An Optuna study as ``hrnas study`` makes it. mode: 'two' (metric max, MACs min), 'single'
    (metric max, MACs in user attrs), 'wrong' (two minimised objectives), 'empty' (no finished trial)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    directions = {
        "two": ["maximize", "minimize"],
        "single": ["maximize"],
        "wrong": ["minimize", "minimize"],
        "empty": ["maximize", "minimize"],
    }[mode]
    sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(storage=url, study_name=name, directions=directions, sampler=sampler)
    study.set_user_attr("task", "digits_seg")
    if mode == "two":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study.set_metric_names(["mIoU", "MACs"])
    rng = np.random.default_rng(seed)
    maxima = space_max()

    def objective(trial):
        lam = trial.suggest_float("lambda", 0.0, 1.0)
        trial.suggest_float("eps", 1e-4, 1e-2, log=True)
        keep = 0.25 + 0.5 * (1 - lam)
        macs = int(1.2e9 * keep + rng.normal(0, 3e7))
        metric = 0.55 + 0.25 * keep + rng.normal(0, 0.01)
        trial.set_user_attr("macs", macs)
        trial.set_user_attr("params", macs // 600)
        trial.set_user_attr("arch", sample_arch(rng, keep, maxima))
        trial.set_user_attr("search_seconds", 10.0)
        return metric if mode == "single" else (metric, macs)

    if mode == "empty":
        t = study.ask()
        t.suggest_float("lambda", 0.0, 1.0)
        study.tell(t, state=optuna.trial.TrialState.FAIL)
        study.ask()  # left running
        return study
    study.optimize(objective, n_trials=n)
    for _ in range(fail):
        t = study.ask()
        t.suggest_float("lambda", 0.0, 1.0)
        study.tell(t, state=optuna.trial.TrialState.FAIL)
    return study


def copy_nni(dest: Path, which: str = "fixexp01") -> Path:
    """A copy of a real NNI 3.0 experiment directory (``data/nni/<which>``)."""
    src = NNI_DATA / which
    out = dest / Path(which).name
    shutil.copytree(src, out)
    return out


def write_old_nni(dest: Path) -> Path:
    """An experiment directory whose database has NNI 2.x's table layout (no environmentId)."""
    exp = dest / "oldexp"
    (exp / "db").mkdir(parents=True)
    conn = sqlite3.connect(exp / "db" / "nni.sqlite")
    conn.executescript(
        "create table TrialJobEvent (timestamp integer, trialJobId text, event text, data text, logPath text,"
        " sequenceId integer, message text);"
        "create table MetricData (timestamp integer, trialJobId text, parameterId text, type text,"
        " sequence integer, data text);"
        "create table ExperimentProfile (params text, id text, execDuration integer, startTime integer,"
        " endTime integer, logDir text, nextSequenceId integer, revision integer);"
    )
    params = {
        "authorName": "x",
        "trainingServicePlatform": "local",
        "trialConcurrency": 1,
        "trial": {"command": "hrnas search --task digits_seg --json"},
    }
    conn.execute(
        "insert into ExperimentProfile values (?,?,?,?,?,?,?,?)",
        (json.dumps(params), "oldexp", 10, 1, 2, str(dest), 1, 3),
    )
    hp = {"parameter_id": 0, "parameter_source": "algorithm", "parameters": {"lambda": 0.3, "eps": 0.001}}
    conn.execute(
        "insert into TrialJobEvent values (?,?,?,?,?,?,?)",
        (1, "AbCdE", "WAITING", json.dumps(hp), None, 0, None),
    )
    conn.execute(
        "insert into TrialJobEvent values (?,?,?,?,?,?,?)", (2, "AbCdE", "SUCCEEDED", None, None, 0, None)
    )
    final = {
        "default": 0.71,
        "macs": 456_000_000,
        "params": 700_000,
        "arch": {"head_k3": 10},
        "search_seconds": 3.0,
    }
    conn.execute(
        "insert into MetricData values (?,?,?,?,?,?)",
        (2, "AbCdE", "0", "FINAL", 0, json.dumps(json.dumps(final))),
    )
    conn.commit()
    conn.close()
    return exp


def write_not_nni(dest: Path) -> Path:
    """A folder shaped like an NNI experiment whose database is something else entirely."""
    exp = dest / "notnni"
    (exp / "db").mkdir(parents=True)
    conn = sqlite3.connect(exp / "db" / "nni.sqlite")
    conn.execute("create table something (a integer)")
    conn.commit()
    conn.close()
    return exp


def write_baselines(folder: Path, rows: list[dict]) -> None:
    """``folder/results.csv`` of reference networks as ``hrnas demo`` writes it (no run folders):
    each row gives strategy, metric, macs, epochs, train_seconds and budget; the rest is filled in."""
    import csv

    rng = np.random.default_rng(7)
    full = [
        {
            "strategy": r["strategy"],
            "task": r.get("task", "digits_seg"),
            "metric": r["metric"],
            "metric_name": "mIoU",
            "macs": r["macs"],
            "params": r["macs"] // 600,
            "arch": json.dumps(sample_arch(rng, 0.5)),
            "epochs": r["epochs"],
            "train_seconds": r["train_seconds"],
            "budget": r["budget"],
        }
        for r in rows
    ]
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(full[0]))
        writer.writeheader()
        writer.writerows(full)


#: The demo's reference networks: uniform at equal time and at equal epochs, the best random
#: architecture at equal time and the supernet at equal time (the search ran 212 s, 6 epochs).
DEMO_BASELINES = [
    {"strategy": "uniform", "metric": 0.258, "macs": 7_000_000, "epochs": 14, "train_seconds": 210.5,
     "budget": "same time as the search (212 s)"},
    {"strategy": "uniform", "metric": 0.141, "macs": 7_000_000, "epochs": 6, "train_seconds": 93.0,
     "budget": "same epochs (6)"},
    {"strategy": "random", "metric": 0.2, "macs": 7_100_000, "epochs": 12, "train_seconds": 205.0,
     "budget": "same time as the search (212 s)"},
    {"strategy": "supernet", "metric": 0.3, "macs": 70_000_000, "epochs": 3, "train_seconds": 215.0,
     "budget": "same time as the search (212 s)"},
]  # fmt: skip


def write_demo(folder: Path, baselines: list[dict] | None = None) -> dict:
    """A run folder as ``hrnas demo`` leaves it: one search plus ``baselines/results.csv``."""
    result = write_run(folder, lam=0.5, macs=7_200_000, metric=0.24)
    write_baselines(folder / "baselines", DEMO_BASELINES if baselines is None else baselines)
    return result
