"""Collect HR-NAS results from any mix of sources into one tidy pandas DataFrame.

Sources understood by :func:`collect`:

* a run folder written by ``hrnas search --out DIR`` (``result.json``, ``arch.json``);
* a ``compare`` output folder (``results.csv`` plus run folders in subfolders);
* an NNI experiment directory (``<root>/<experiment_id>/db/nni.sqlite``), the NNI root holding
  several of them, or the ``nni.sqlite`` file itself; finished, stopped and still-running
  experiments are read without writing to them;
* an Optuna storage: any storage URL (``sqlite:///x.db``, ``postgresql://...``), an Optuna SQLite
  file, or a journal file (``*.log`` / ``*.jsonl`` written by ``JournalFileBackend``);
* any folder holding the above, searched a few levels deep.

Rows whose strategy is one of :data:`BASELINES` and that record their training (``epochs`` or
``train_seconds``, as ``hrnas demo`` writes ``RUN_DIR/baselines/results.csv``) are reference networks
trained from scratch, not search results: :func:`baseline_mask` finds them, and the figures draw them
as labelled markers outside every Pareto front, hypervolume and lambda view.

Whatever cannot be read becomes a :class:`Problem` (a clear message) instead of an exception, so
that a report can say what it could not include.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from nni_hrnas.run_folder import ARCH_FILE, BENCH_FILE, RESULT_FILE, RunFolder, RunFolderError, SearchResult

#: Search cost and budget columns (numbers), shared by the column order and the float columns.
_COST_COLUMNS = (
    "search_seconds",
    "cost_wall_seconds",
    "cost_epochs",
    "cost_images_seen",
    "cost_mac_epochs",
    "budget_used",
)

#: The columns of the tidy table, in order. ``arch``/``arch_max`` hold dicts, ``trajectory`` a list of
#: dicts (one per prune step) or None.
COLUMNS = [
    "source",
    "kind",
    "experiment",
    "trial",
    "status",
    "strategy",
    "task",
    "preset",
    "lambda",
    "eps",
    "seed",
    "metric",
    "metric_name",
    "macs",
    "params",
    "latency_ms",
    "latency_setting",
    *_COST_COLUMNS,
    "budget",
    "train_epochs",
    "train_seconds",
    "arch",
    "arch_max",
    "trajectory",
    "run_dir",
]

_INT_COLUMNS = ["macs", "params", "seed", "train_epochs"]
_FLOAT_COLUMNS = [
    "latency_ms",
    "lambda",
    "eps",
    "metric",
    *_COST_COLUMNS,
    "train_seconds",
]
_SEARCH_DEPTH = 4
_OPTUNA_SUFFIXES = {".db", ".sqlite", ".sqlite3"}
_JOURNAL_SUFFIXES = {".log", ".jsonl", ".journal"}
_NNI_TERMINAL = ("SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED")

#: Strategies of reference networks (trained from scratch at a given budget), with their human names.
BASELINES = ("uniform", "hand_slimmed", "random", "supernet")
BASELINE_NAMES = {
    "uniform": "supernet slimmed uniformly to the same MACs",
    "hand_slimmed": "one 3x3 path a block, no transformers, slimmed to the same MACs",
    "random": "best random architecture at the same MACs",
    "supernet": "supernet",
}


@dataclass
class Problem:
    """Something that could not be (fully) included. ``level`` is 'error' (left out) or 'warning'."""

    source: str
    message: str
    level: str = "error"

    def __str__(self) -> str:
        return f"{self.level}: {self.source}: {self.message}"


@dataclass
class Collection:
    """The tidy table, what could not be included, and the Optuna studies that were read."""

    table: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    studies: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> list[Problem]:
        """The problems that kept a source out (warnings left out)."""
        return [p for p in self.problems if p.level == "error"]


# ----------------------------------------------------------------------------------------------
# Small helpers


def _num(value: Any) -> float | None:
    """A finite float, or None for anything missing or unparseable."""
    if value is None or isinstance(value, bool):
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _int(value: Any) -> int | None:
    out = _num(value)
    return None if out is None else int(round(out))


def _maybe_json(value: Any) -> Any:
    """Dicts and lists stored as JSON strings (CSV columns, Optuna user attrs) are decoded."""
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _arch(value: Any) -> dict | None:
    value = _maybe_json(value)
    return dict(value) if isinstance(value, dict) and value else None


def _trajectory(value: Any) -> list[dict] | None:
    value = _maybe_json(value)
    if not isinstance(value, list):
        return None
    steps = [dict(s) for s in value if isinstance(s, dict)]
    return steps or None


def _empty_row() -> dict[str, Any]:
    return {c: None for c in COLUMNS}


def _fill_from_result(row: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    """Fill a row from a results.csv row, an NNI final dict or an Optuna trial's attributes: records by
    other producers, in result.json's spelling or NNI's (run folders are read by :func:`_fill_from_run`)."""
    metric = res.get("metric", res.get("default"))
    row["metric"] = _num(metric)
    row["metric_name"] = res.get("metric_name") or row.get("metric_name")
    row["macs"] = _int(res.get("macs"))
    row["params"] = _int(res.get("params"))
    row["search_seconds"] = _num(res.get("search_seconds"))
    for key in ("lambda", "eps"):
        if key in res:
            row[key] = _num(res.get(key))
    if "seed" in res:
        row["seed"] = _int(res.get("seed"))
    for key in ("task", "preset", "strategy"):
        if res.get(key) is not None:
            row[key] = str(res[key])
    cost = _maybe_json(res.get("search_cost"))
    if isinstance(cost, dict):
        for key in ("wall_seconds", "epochs", "images_seen", "mac_epochs"):
            row[f"cost_{key}"] = _num(cost.get(key))
    if row["cost_wall_seconds"] is None and row["search_seconds"] is not None:
        row["cost_wall_seconds"] = row["search_seconds"]
    if "budget_used" in res:
        row["budget_used"] = _num(res.get("budget_used"))
    row["arch"] = _arch(res.get("arch")) or row.get("arch")
    row["arch_max"] = _arch(res.get("arch_max", res.get("space_max"))) or row.get("arch_max")
    row["trajectory"] = _trajectory(res.get("trajectory")) or row.get("trajectory")
    return row


def _fill_training(row: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    """The training record of a results-table row: ``epochs``, ``train_seconds`` and ``budget``."""
    row["train_epochs"] = _int(rec.get("epochs"))
    row["train_seconds"] = _num(rec.get("train_seconds"))
    if rec.get("budget") is not None:
        row["budget"] = str(rec["budget"])
    return row


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for col in _INT_COLUMNS:
        df[col] = pd.array([_int(v) for v in df[col]], dtype="Int64")
    for col in _FLOAT_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    for col in ("arch", "arch_max", "trajectory"):
        df[col] = df[col].astype(object)
    return df


# ----------------------------------------------------------------------------------------------
# Run folders and compare folders


def _read_run(folder: Path, problems: list[Problem]) -> dict[str, Any] | None:
    run = RunFolder(folder)
    try:
        res = run.load_result()
    except (OSError, RunFolderError) as err:
        problems.append(Problem(str(folder), f"{RESULT_FILE} cannot be read ({err}); run left out"))
        return None
    row = _empty_row()
    row.update(
        source=str(folder),
        kind="run",
        run_dir=str(folder),
        experiment=folder.parent.name,
        trial=folder.name,
        status="finished",
        strategy="hrnas",
    )
    _fill_from_run(row, res)
    if row["arch"] is None and run.arch_path.exists():
        try:
            row["arch"] = _arch(run.load_arch())
        except (OSError, RunFolderError) as err:
            problems.append(Problem(str(folder), f"{ARCH_FILE} cannot be read ({err})", "warning"))
    _fill_latency(row, run.bench_path, problems)
    if row["metric"] is None or row["macs"] is None:
        problems.append(
            Problem(
                str(folder),
                f"{RESULT_FILE} has no metric or no macs: listed in the table, left out of the fronts",
                "warning",
            )
        )
    return row


def _fill_from_run(row: dict[str, Any], res: SearchResult) -> None:
    """Fill a row from a run folder's result (the fields it has; the others stay as they are)."""
    cost = res.search_cost
    values = {
        "metric": _num(res.metric),
        "metric_name": res.metric_name or None,
        "macs": res.macs,
        "params": res.params,
        "search_seconds": _num(res.search_seconds),
        "lambda": _num(res.lambda_),
        "eps": _num(res.eps),
        "seed": res.seed,
        "task": res.task,
        "preset": res.preset,
        "strategy": res.strategy,
        "cost_wall_seconds": _num(cost.wall_seconds) if cost else None,
        "cost_epochs": cost.epochs if cost else None,
        "cost_images_seen": cost.images_seen if cost else None,
        "cost_mac_epochs": _num(cost.mac_epochs) if cost else None,
        "arch": res.arch or None,
        "arch_max": res.arch_max or None,
        "trajectory": _trajectory(res.trajectory),
    }
    row.update({k: v for k, v in values.items() if v is not None})
    if row["cost_wall_seconds"] is None:
        row["cost_wall_seconds"] = row["search_seconds"]


#: What ``hrnas bench RUN --record`` appends to (``nni_hrnas.deploy.BENCH_RECORD``): one JSON line per measurement.
BENCH_RECORD = BENCH_FILE


def _fill_latency(row: dict[str, Any], path: Path, problems: list[Problem]) -> None:
    """The run's latency: its latest batch-1 ``hrnas bench`` record (else its latest record), if any."""
    if not path.is_file():
        return
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            rec = json.loads(line)
            records.append((int(rec["batch"]), float(rec["median_ms"]), rec))
        except (ValueError, KeyError, TypeError):
            if line.strip():
                problems.append(
                    Problem(str(path), f"line {number} is not a bench record; left out", "warning")
                )
    if not records:
        return
    batch, median, rec = ([r for r in records if r[0] == 1] or records)[-1]
    row["latency_ms"] = median
    row["latency_setting"] = (
        f"{rec.get('runtime')} ({rec.get('form')}), batch {batch}, {rec.get('threads')} thread(s)"
    )


def _read_compare(folder: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    """``results.csv`` rows, merged with the run folders below ``folder`` where they match."""
    csv = folder / "results.csv"
    runs = [r for r in (_read_run(p.parent, problems) for p in sorted(folder.rglob(RESULT_FILE))) if r]
    try:
        table = pd.read_csv(csv)
    except Exception as err:  # noqa: BLE001 - pandas raises many kinds; all mean "unreadable"
        problems.append(
            Problem(str(csv), f"results.csv cannot be read ({err}); only its run folders are used")
        )
        return runs
    missing = {"strategy", "metric", "macs"} - set(table.columns)
    if missing:
        problems.append(
            Problem(str(csv), f"results.csv lacks columns {sorted(missing)}; only its run folders are used")
        )
        return runs
    rows: list[dict[str, Any]] = []
    used: set[int] = set()
    for i, rec in enumerate(table.to_dict("records")):
        rec = {k: (None if (isinstance(v, float) and math.isnan(v)) else v) for k, v in rec.items()}
        match = _match_run(rec, runs, used, folder)
        if match is not None:
            used.add(match)
            row = dict(runs[match])
            row["kind"] = "compare"
            if rec.get("budget_used") is not None:
                row["budget_used"] = _num(rec["budget_used"])
            rows.append(_fill_training(row, rec))
            continue
        row = _empty_row()
        row.update(source=str(csv), kind="compare", experiment=folder.name, trial=str(i), status="finished")
        _fill_training(_fill_from_result(row, rec), rec)
        for key in ("task", "metric_name", "preset"):  # a compare runs one task: take it from its runs
            known = {r[key] for r in runs if r.get(key)}
            if row[key] is None and len(known) == 1:
                row[key] = known.pop()
        rows.append(row)
    rows.extend(r for j, r in enumerate(runs) if j not in used)
    return rows


def _match_run(rec: dict, runs: list[dict], used: set[int], folder: Path) -> int | None:
    for key in ("run_dir", "out", "dir", "path"):
        if rec.get(key):
            target = Path(str(rec[key]))
            target = target if target.is_absolute() else folder / target
            for j, run in enumerate(runs):
                if j not in used and Path(run["run_dir"]).resolve() == target.resolve():
                    return j
    for j, run in enumerate(runs):
        if j in used or run.get("strategy") != str(rec.get("strategy")):
            continue
        if (
            _int(rec.get("macs")) == run.get("macs")
            and _num(rec.get("metric")) is not None
            and run.get("metric") is not None
            and math.isclose(_num(rec["metric"]), run["metric"], rel_tol=1e-6)
        ):
            return j
    return None


# ----------------------------------------------------------------------------------------------
# NNI experiments


def _nni_registry_status(exp_id: str) -> tuple[str | None, bool]:
    """(status, pid alive) from nnictl's registry of experiments, when it knows this experiment."""
    home = Path(os.environ.get("NNI_HOME_DIR", Path.home() / "nni-experiments"))
    try:
        entry = json.loads((home / ".experiment").read_text()).get(exp_id)
    except (OSError, ValueError, AttributeError):
        return None, False
    if not isinstance(entry, dict):
        return None, False
    alive = False
    pid = entry.get("pid")
    if isinstance(pid, int) and pid > 0:
        try:
            os.kill(pid, 0)
            alive = True
        except OSError:
            alive = False
    return entry.get("status"), alive


def _read_nni(db_path: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    exp_dir = db_path.parent.parent
    src = str(exp_dir)
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as err:
        problems.append(Problem(src, f"cannot open the NNI database {db_path} ({err}); experiment left out"))
        return []
    try:
        return _read_nni_conn(conn, exp_dir, problems)
    except sqlite3.DatabaseError as err:
        problems.append(
            Problem(
                src,
                f"the NNI database cannot be read ({err}); is it an NNI 3.0 experiment? Experiment left out",
            )
        )
        return []
    finally:
        conn.close()


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"pragma table_info({table})").fetchall()]


def _read_nni_conn(conn: sqlite3.Connection, exp_dir: Path, problems: list[Problem]) -> list[dict[str, Any]]:
    """Read one NNI experiment database in stages: layout, profile, trials, metrics, rows, notes."""
    src = str(exp_dir)
    layout = _nni_layout(conn, src, problems)
    if layout is None:
        return []
    event_cols, metric_cols = layout
    exp_id, config, end_time = _nni_profile(conn, exp_dir, problems)
    task, preset = _task_from_command(str(config.get("trialCommand") or ""))
    trials = _nni_trial_events(conn, event_cols)
    _nni_metrics(conn, metric_cols, trials, src, problems)
    rows, counts = _nni_rows(trials, src, exp_id, task, preset, problems)
    _nni_completeness(rows, counts, src, exp_id, end_time, problems)
    return rows


def _nni_layout(
    conn: sqlite3.Connection, src: str, problems: list[Problem]
) -> tuple[list[str], list[str]] | None:
    """The TrialJobEvent and MetricData columns, or None (with a problem) when this is no NNI 3.0 database."""
    tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
    needed = {"TrialJobEvent", "MetricData", "ExperimentProfile"}
    if not needed <= tables:
        problems.append(
            Problem(
                src,
                f"not an NNI 3.0 experiment database: tables {sorted(needed - tables)} are "
                f"missing (found {sorted(tables) or 'none'}); experiment left out",
            )
        )
        return None
    event_cols = _columns(conn, "TrialJobEvent")
    metric_cols = _columns(conn, "MetricData")
    if not {"trialJobId", "event", "data"} <= set(event_cols) or not {"trialJobId", "type", "data"} <= set(
        metric_cols
    ):
        problems.append(
            Problem(
                src,
                "the NNI database has an unknown layout (TrialJobEvent columns "
                f"{event_cols}, MetricData columns {metric_cols}); written by another NNI "
                "version? Experiment left out",
            )
        )
        return None
    if "environmentId" not in event_cols:
        problems.append(
            Problem(
                src,
                "the NNI database was written by an NNI older than 3.0 (no environmentId "
                "column); read on a best-effort basis",
                "warning",
            )
        )
    return event_cols, metric_cols


def _nni_profile(
    conn: sqlite3.Connection, exp_dir: Path, problems: list[Problem]
) -> tuple[str, dict[str, Any], Any]:
    """Experiment id, configuration and end time from the latest ExperimentProfile revision."""
    src = str(exp_dir)
    exp_id = exp_dir.name
    config: dict[str, Any] = {}
    end_time = None
    prof = conn.execute("select * from ExperimentProfile order by revision desc limit 1").fetchone()
    if prof is None:
        return exp_id, config, end_time
    names = _columns(conn, "ExperimentProfile")
    prof = dict(zip(names, prof, strict=False))
    exp_id = prof.get("id") or exp_id
    end_time = prof.get("endTime")
    try:
        config = json.loads(prof.get("params") or "{}")
    except ValueError:
        problems.append(
            Problem(src, "the experiment profile is not JSON; task and strategy unknown", "warning")
        )
    if "trainingServicePlatform" in config or "authorName" in config:
        problems.append(
            Problem(
                src,
                "the experiment profile is in an old NNI (v1) format; read on a best-effort basis",
                "warning",
            )
        )
    return exp_id, config, end_time


def _nni_trial(trials: dict[str, dict[str, Any]], trial_id: str) -> dict[str, Any]:
    return trials.setdefault(trial_id, {"status": None, "params": None, "final": None, "periodical": []})


def _nni_trial_events(conn: sqlite3.Connection, event_cols: list[str]) -> dict[str, dict[str, Any]]:
    """Each trial's last status and its parameters, from TrialJobEvent."""
    trials: dict[str, dict[str, Any]] = {}
    order = "order by timestamp" if "timestamp" in event_cols else ""
    for trial_id, event, data in conn.execute(f"select trialJobId, event, data from TrialJobEvent {order}"):
        if not trial_id:
            continue  # IMPORT_DATA / ADD_CUSTOMIZED events belong to no trial
        t = _nni_trial(trials, trial_id)
        if data and t["params"] is None:
            try:
                hp = json.loads(data)
                t["params"] = hp.get("parameters", hp) if isinstance(hp, dict) else None
            except ValueError:
                pass
        if event in _NNI_TERMINAL or t["status"] is None or t["status"] not in _NNI_TERMINAL:
            t["status"] = event
    return trials


def _nni_metrics(
    conn: sqlite3.Connection,
    metric_cols: list[str],
    trials: dict[str, dict[str, Any]],
    src: str,
    problems: list[Problem],
) -> None:
    """Add each trial's final and periodical results from MetricData to ``trials``."""
    bad_metrics = 0
    order = "order by timestamp" if "timestamp" in metric_cols else ""
    seq = "sequence" if "sequence" in metric_cols else "0"
    for trial_id, mtype, sequence, data in conn.execute(
        f"select trialJobId, type, {seq}, data from MetricData {order}"
    ):
        try:
            value = json.loads(data)
            if isinstance(value, str):  # NNI stores the trial's JSON text as a JSON string
                value = json.loads(value)
        except (TypeError, ValueError):
            bad_metrics += 1
            continue
        t = _nni_trial(trials, trial_id)
        if mtype == "FINAL":
            t["final"] = value
        elif mtype == "PERIODICAL":
            t["periodical"].append((sequence, value))
    if bad_metrics:
        problems.append(
            Problem(src, f"{bad_metrics} metric record(s) are not JSON and were skipped", "warning")
        )


def _nni_rows(
    trials: dict[str, dict[str, Any]],
    src: str,
    exp_id: str,
    task: str | None,
    preset: str | None,
    problems: list[Problem],
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """One table row per trial with a final result, and the count of the others by status."""
    rows = []
    no_macs: list[str] = []
    counts: dict[str, int] = {}
    for trial_id, t in trials.items():
        final = t["final"]
        if final is None:
            key = (t["status"] or "UNKNOWN").lower()
            counts[key] = counts.get(key, 0) + 1
            continue
        row = _empty_row()
        row.update(
            source=src,
            kind="nni",
            experiment=exp_id,
            trial=trial_id,
            strategy="hrnas",
            task=task,
            preset=preset,
            status=(t["status"] or "UNKNOWN").lower(),
        )
        if row["status"] in ("running", "waiting", "unknown"):
            row["status"] = "finished"  # a final result arrived; the SUCCEEDED event may not (stopped runs)
        _fill_from_result(row, final if isinstance(final, dict) else {"default": final})
        params = t["params"] or {}
        row["lambda"] = _num(params.get("lambda")) if row["lambda"] is None else row["lambda"]
        row["eps"] = _num(params.get("eps")) if row["eps"] is None else row["eps"]
        if row["trajectory"] is None:
            row["trajectory"] = _nni_trajectory(t["periodical"])
        if row["macs"] is None:
            no_macs.append(trial_id)
        rows.append(row)
    if no_macs:
        problems.append(
            Problem(
                src,
                f"{len(no_macs)} trial(s) ({', '.join(no_macs[:5])}{', ...' if len(no_macs) > 5 else ''}) "
                "reported no 'macs' in the final result (a NAS experiment keeps only 'default'?): listed in "
                "the table, left out of the fronts",
                "warning",
            )
        )
    return rows, counts


def _nni_completeness(
    rows: list[dict[str, Any]],
    counts: dict[str, int],
    src: str,
    exp_id: str,
    end_time: Any,
    problems: list[Problem],
) -> None:
    """Warn about a still-running experiment, trials left out, and an experiment with nothing to show."""
    status, alive = _nni_registry_status(exp_id)
    running = (status not in (None, "STOPPED", "DONE", "ERROR") and alive) or end_time is None
    if running:
        what = "is still running" if alive else "has no end time recorded (still running, or killed)"
        problems.append(
            Problem(
                src,
                f"the experiment {what}: {len(rows)} trial(s) with a final result are "
                "included, later ones are not",
                "warning",
            )
        )
    if counts:
        detail = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        problems.append(Problem(src, f"trials without a final result left out: {detail}", "warning"))
    if not rows:
        problems.append(
            Problem(
                src, f"NNI experiment {exp_id} has no finished trials (no final results); nothing to include"
            )
        )


def _nni_trajectory(periodical: list[tuple[int, Any]]) -> list[dict] | None:
    """Intermediate results that carry MACs read as a per-prune-step trajectory."""
    steps = []
    for seq, value in sorted(periodical, key=lambda sv: (sv[0] is None, sv[0])):
        if isinstance(value, dict) and value.get("macs") is not None:
            steps.append(
                {
                    "step": value.get("step", seq),
                    "epoch": value.get("epoch"),
                    "macs": value.get("macs"),
                    "params": value.get("params"),
                    "metric": value.get("metric", value.get("default")),
                    "units_removed": value.get("units_removed"),
                }
            )
    return steps or None


def _task_from_command(command: str) -> tuple[str | None, str | None]:
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    found: dict[str, str | None] = {"--task": None, "--preset": None}
    for i, word in enumerate(words):
        for flag in found:
            if word == flag and i + 1 < len(words):
                found[flag] = words[i + 1]
            elif word.startswith(flag + "="):
                found[flag] = word.split("=", 1)[1]
    return found["--task"], found["--preset"]


# ----------------------------------------------------------------------------------------------
# Optuna


def _optuna():
    """The optuna module, imported on first use: only Optuna sources need it, and importing it adds
    about 0.15 s to ``import analysis.report`` (measured with ``python -X importtime``)."""
    import optuna

    return optuna


def _optuna_storage(spec: str):
    optuna = _optuna()
    if "://" in spec:
        return spec
    path = Path(spec)
    if path.suffix in _JOURNAL_SUFFIXES:
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    return optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}")


def _read_optuna(spec: str, problems: list[Problem], studies: dict[str, Any]) -> list[dict[str, Any]]:
    optuna = _optuna()

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if spec.startswith("sqlite:///"):
        path = Path(spec[len("sqlite:///") :])
        if not path.exists():  # Optuna would silently create an empty database here
            problems.append(Problem(spec, f"the SQLite file {path} does not exist"))
            return []
    try:
        storage = _optuna_storage(spec)
        names = optuna.get_all_study_names(storage=storage)
    except Exception as err:  # noqa: BLE001 - storages raise many kinds (schema, driver, connection)
        problems.append(Problem(spec, f"cannot read the Optuna storage ({type(err).__name__}: {err})"))
        return []
    if not names:
        problems.append(Problem(spec, "the Optuna storage holds no studies"))
        return []
    rows: list[dict[str, Any]] = []
    for name in names:
        try:
            study = optuna.load_study(study_name=name, storage=storage)
            rows.extend(_read_study(study, spec, problems, studies))
        except Exception as err:  # noqa: BLE001
            problems.append(Problem(f"{spec} study {name}", f"cannot be read ({type(err).__name__}: {err})"))
    return rows


_MACS_NAME = re.compile(r"mac|flop", re.IGNORECASE)


def _read_study(study, spec: str, problems: list[Problem], studies: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of one Optuna study: check its objectives, keep its finished trials, one row per trial."""
    src = f"{spec} study {study.study_name}"
    names = list(study.metric_names or [None] * len(study.directions))
    indices = _objective_indices(study, src, problems)
    if indices is None:
        return []
    metric_idx, macs_idx = indices
    done = _finished_trials(study, src, problems)
    if not done:
        return []
    rows = [_study_row(study, t, spec, names[metric_idx], metric_idx, macs_idx) for t in done]
    no_macs = sum(row["macs"] is None for row in rows)
    if no_macs:
        problems.append(
            Problem(
                src,
                f"{no_macs} trial(s) have no 'macs' user attribute: listed in the table, "
                "left out of the fronts",
                "warning",
            )
        )
    studies[f"{study.study_name}"] = study
    return rows


def _objective_indices(study, src: str, problems: list[Problem]) -> tuple[int, int | None] | None:
    """Which objective is the metric and which (if any) the MACs; None (with a problem) if neither fits."""
    StudyDirection = _optuna().study.StudyDirection
    directions = list(study.directions)
    dirs = ", ".join("maximise" if d == StudyDirection.MAXIMIZE else "minimise" for d in directions)
    names = list(study.metric_names or [None] * len(directions))
    if len(directions) == 2:
        named = [i for i, n in enumerate(names) if n and _MACS_NAME.search(n)]
        macs_idx = named[0] if len(named) == 1 else 1
        metric_idx = 1 - macs_idx
        if (
            directions[metric_idx] != StudyDirection.MAXIMIZE
            or directions[macs_idx] != StudyDirection.MINIMIZE
        ):
            problems.append(
                Problem(src, f"objectives are ({dirs}), not (metric maximise, MACs minimise); study left out")
            )
            return None
        return metric_idx, macs_idx
    if len(directions) == 1:
        if directions[0] != StudyDirection.MAXIMIZE:
            problems.append(
                Problem(
                    src,
                    "its single objective is minimised; expected the metric (maximised) "
                    "with MACs as a user attribute; study left out",
                )
            )
            return None
        return 0, None
    problems.append(
        Problem(src, f"{len(directions)} objectives ({dirs}); expected (metric, MACs); study left out")
    )
    return None


def _finished_trials(study, src: str, problems: list[Problem]) -> list:
    """The study's complete trials; a problem names what the others were."""
    TrialState = _optuna().trial.TrialState
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        states: dict[str, int] = {}
        for t in trials:
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in sorted(states.items())) or "no trials at all"
        problems.append(Problem(src, f"no finished trials ({detail}); study left out"))
        return []
    if len(done) < len(trials):
        problems.append(
            Problem(src, f"{len(trials) - len(done)} unfinished or failed trial(s) left out", "warning")
        )
    return done


def _study_row(
    study, t, spec: str, metric_name: str | None, metric_idx: int, macs_idx: int | None
) -> dict[str, Any]:
    """The table row of one finished trial ``t`` of ``study``."""
    sattrs = study.user_attrs
    # `hrnas study` records its StudySettings whole; a study of another producer may set the keys itself
    recorded = sattrs.get("settings") if isinstance(sattrs.get("settings"), dict) else {}
    attrs = {k: _maybe_json(v) for k, v in t.user_attrs.items()}
    row = _empty_row()
    row.update(
        source=spec,
        kind="optuna",
        experiment=study.study_name,
        trial=str(t.number),
        status="finished",
        strategy=str(sattrs.get("strategy", "hrnas")),
        task=sattrs.get("task", recorded.get("task")),
        preset=sattrs.get("preset", recorded.get("preset")),
        metric_name=metric_name or sattrs.get("metric_name"),
    )
    res = dict(attrs)
    res["metric"] = t.values[metric_idx]
    if res.get("macs") is None and macs_idx is not None:
        res["macs"] = t.values[macs_idx]
    _fill_from_result(row, res)
    for key in ("lambda", "eps", "seed"):
        if key in t.params:
            row[key] = _int(t.params[key]) if key == "seed" else _num(t.params[key])
    return row


# ----------------------------------------------------------------------------------------------
# Dispatch


def _is_sqlite_with(path: Path, table: str) -> bool:
    try:
        with open(path, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                return False
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        finally:
            conn.close()
    except (OSError, sqlite3.Error):
        return False
    return table in names


def _is_journal(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(first, dict) and "op_code" in first


def _discover(folder: Path, depth: int = 0, seen: set[Path] | None = None) -> list[tuple[str, Path]]:
    """(kind, path) of every source below ``folder``; the shallowest claim wins.

    Each folder is read once, however many links lead to it (NNI's ``_latest`` links to the newest
    experiment of its working directory, which is also listed under its id)."""
    seen = set() if seen is None else seen
    real = folder.resolve()
    if real in seen:
        return []
    seen.add(real)
    if (folder / "results.csv").is_file():
        return [("compare", folder)]
    if RunFolder(folder).has_result():
        return [("run", folder)]
    if (folder / "db" / "nni.sqlite").is_file():
        return [("nni", folder / "db" / "nni.sqlite")]
    found: list[tuple[str, Path]] = []
    if depth >= _SEARCH_DEPTH:
        return found
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or entry.name in ("__pycache__", "node_modules"):
            continue
        if entry.is_dir():
            found.extend(_discover(entry, depth + 1, seen))
        elif entry.suffix in _OPTUNA_SUFFIXES and _is_sqlite_with(entry, "studies"):
            found.append(("optuna", entry))
        elif entry.suffix in _JOURNAL_SUFFIXES and _is_journal(entry):
            found.append(("optuna", entry))
    return found


def _read_one(spec: str, problems: list[Problem], studies: dict[str, Any]) -> list[dict[str, Any]]:
    if "://" in spec:
        return _read_optuna(spec, problems, studies)
    path = Path(spec).expanduser()
    if not path.exists():
        problems.append(Problem(spec, "does not exist"))
        return []
    if path.is_file():
        if _is_sqlite_with(path, "TrialJobEvent") or path.name == "nni.sqlite":
            return _read_nni(path, problems)
        if _is_sqlite_with(path, "studies") or _is_journal(path):
            return _read_optuna(str(path), problems, studies)
        if path.name == RESULT_FILE:
            return [r for r in [_read_run(path.parent, problems)] if r]
        if path.name == "results.csv":
            return _read_compare(path.parent, problems)
        problems.append(
            Problem(spec, f"is neither an NNI database, an Optuna storage, {RESULT_FILE} nor results.csv")
        )
        return []
    found = _discover(path)
    if not found:
        problems.append(
            Problem(
                spec,
                f"no results found (looked for {RESULT_FILE}, results.csv, db/nni.sqlite, "
                "Optuna .db/.sqlite files and journal files)",
            )
        )
        return []
    rows: list[dict[str, Any]] = []
    for kind, where in found:
        if kind == "compare":
            rows.extend(_read_compare(where, problems))
        elif kind == "run":
            rows.extend(r for r in [_read_run(where, problems)] if r)
        elif kind == "nni":
            rows.extend(_read_nni(where, problems))
        else:
            rows.extend(_read_optuna(str(where), problems, studies))
    return rows


def collect(sources: Iterable[str | os.PathLike] | str | os.PathLike) -> Collection:
    """Read every source into one table; problems are collected, never raised.

    >>> c = collect(["runs/", "sqlite:///study.db"])   # doctest: +SKIP
    >>> c.table[["strategy", "metric", "macs"]]       # doctest: +SKIP
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    problems: list[Problem] = []
    studies: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    for spec in sources:
        spec = os.fspath(spec)
        try:
            rows.extend(_read_one(spec, problems, studies))
        except Exception as err:  # noqa: BLE001 - one bad source must not sink the others
            problems.append(Problem(spec, f"could not be read ({type(err).__name__}: {err})"))
    return Collection(_frame(rows), problems, studies)


def trajectories(table: pd.DataFrame) -> pd.DataFrame:
    """The per-prune-step trajectories as a long table: one row per (run, step)."""
    out = []
    for idx, row in table.iterrows():
        for step in row["trajectory"] or []:
            out.append(
                {
                    "row": idx,
                    "label": run_label(row),
                    "strategy": row["strategy"],
                    "task": row["task"],
                    "step": _int(step.get("step")),
                    "epoch": _num(step.get("epoch")),
                    "macs": _num(step.get("macs")),
                    "params": _num(step.get("params")),
                    "metric": _num(step.get("metric")),
                    "units_removed": _num(step.get("units_removed")),
                }
            )
    cols = ["row", "label", "strategy", "task", "step", "epoch", "macs", "params", "metric", "units_removed"]
    return pd.DataFrame(out, columns=cols)


def baseline_mask(table: pd.DataFrame) -> pd.Series:
    """True for the reference networks: a :data:`BASELINES` strategy with a training record (so that
    the search strategies of ``hrnas compare``, e.g. NNI's 'random', stay search results)."""
    trained = pd.Series(False, index=table.index)
    for col in ("train_epochs", "train_seconds"):
        if col in table.columns:
            trained |= table[col].notna()
    return table["strategy"].isin(BASELINES) & trained


def baseline_label(row: pd.Series | dict, sep: str = " ") -> str:
    """The human name of a reference network and its training budget, e.g. 'supernet slimmed
    uniformly to the same MACs (same time as the search (212 s); 14 epochs, 210 s)'."""
    strategy = str(row.get("strategy"))
    done = []
    epochs, seconds = _int(row.get("train_epochs")), _num(row.get("train_seconds"))
    if epochs is not None:
        done.append(f"{epochs} epochs")
    if seconds is not None:
        done.append(f"{seconds:.0f} s")
    budget = row.get("budget")
    budget = None if budget is None or pd.isna(budget) else str(budget)
    detail = "; ".join([b for b in [budget, ", ".join(done)] if b])
    name = BASELINE_NAMES.get(strategy, strategy)
    return f"{name}{sep}({detail})" if detail else name


def run_label(row: pd.Series | dict) -> str:
    """A short human label for one row: strategy, experiment/trial and lambda when known."""
    parts = [str(row.get("strategy") or "?")]
    trial = row.get("trial")
    exp = row.get("experiment")
    if exp and trial:
        parts.append(f"{exp}/{trial}")
    elif trial or exp:
        parts.append(str(trial or exp))
    lam = row.get("lambda")
    if lam is not None and not (isinstance(lam, float) and math.isnan(lam)):
        parts.append(f"λ={lam:.3g}")
    return " ".join(parts)
