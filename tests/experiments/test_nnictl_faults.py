"""Real nnictl experiments under faults, at smoke scale: a trial whose search diverges, and a stop and
resume in the middle of a trial."""

import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from nni_hrnas.tuning import OptunaTuner

ROOT = Path(__file__).resolve().parents[2]
NNICTL = [sys.executable, "-m", "nni.tools.nnictl.nnictl"]
ENDED = ("SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED")
STATES = ("WAITING", "RUNNING", *ENDED)
# a penalty weight the search space allows but no float32 loss survives: lambda x penalty is inf
DIVERGING_LAMBDA = 1e300


def nnictl_env() -> dict[str, str]:
    # trials run `python -m nni_hrnas.trial`: the python of this environment, as an activated venv gives
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "HRNAS_SMOKE": "1", "HRNAS_QUIET": "1", "OMP_NUM_THREADS": "1"}


def smoke_config(tmp_path: Path, **changes) -> Path:
    """experiments/digits.yml with its trials and experiment folder under tmp_path, and ``changes``."""
    config = yaml.safe_load((ROOT / "experiments" / "digits.yml").read_text())
    config.update(trialCodeDirectory=str(ROOT), experimentWorkingDirectory=str(tmp_path / "exp"), **changes)
    config["tuner"]["codeDirectory"] = str(ROOT)
    (tmp_path / "digits.yml").write_text(yaml.safe_dump(config))
    return tmp_path / "digits.yml"


def nnictl(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    done = subprocess.run([*NNICTL, *args], env=nnictl_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"nnictl {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done


def trial_states(database: Path) -> dict[str, str]:
    """Each trial's latest status, as NNI's database records it."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "select trialJobId, event from TrialJobEvent where trialJobId != '' order by timestamp, rowid"
        ).fetchall()
    states: dict[str, str] = {}
    for trial, event in rows:
        if event in STATES:
            states[trial] = event
    return states


def final_metrics(database: Path) -> dict[str, dict]:
    with sqlite3.connect(database) as db:
        rows = db.execute("select trialJobId, data from MetricData where type = 'FINAL'").fetchall()
    return {trial: json.loads(json.loads(data)) for trial, data in rows}


def wait_for(database: Path, done, what: str, seconds: float = 600) -> dict[str, str]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        states = trial_states(database) if database.exists() else {}
        if done(states):
            return states
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}; trial states {states}")


def experiment_status(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/check-status", timeout=30) as answer:
        return json.load(answer)["status"]


def exported(experiment_id: str, path: Path) -> dict[str, dict]:
    nnictl("experiment", "export", experiment_id, "--filename", str(path), "--type", "json", timeout=60)
    rows = json.loads(path.read_text())
    return {
        row["trialJobId"]: {
            "parameter": row["parameter"],
            "value": row["value"] if isinstance(row["value"], dict) else json.loads(row["value"]),
        }
        for row in rows
    }


def create(config: Path, port: int, tmp_path: Path) -> tuple[str, Path]:
    nnictl("create", "--config", str(config), "--port", str(port))
    experiment_id = next(p.name for p in (tmp_path / "exp").iterdir() if p.name != "_latest")
    return experiment_id, tmp_path / "exp" / experiment_id


def seed_where_only_the_second_trial_diverges(space: dict, trials: int = 3) -> int:
    """A sampler seed under which the tuner hands DIVERGING_LAMBDA to trial 1 only: the random sampler
    draws the same parameters whatever the results, so the tuner itself says which trial gets it."""
    for seed in range(1000):
        tuner = OptunaTuner(objectives="multi", sampler="random", seed=seed)
        tuner.update_search_space(space)
        if [tuner.generate_parameters(i)["lambda"] == DIVERGING_LAMBDA for i in range(trials)] == [
            False,
            True,
            False,
        ]:
            return seed
    raise AssertionError("no seed gives a single diverging trial")


@pytest.mark.slow
def test_a_diverging_trial_fails_and_the_experiment_goes_on(tmp_path, free_port):
    space = {
        "lambda": {"_type": "choice", "_value": [1e-3, DIVERGING_LAMBDA]},
        "eps": {"_type": "loguniform", "_value": [1e-4, 1e-2]},
    }
    config = smoke_config(tmp_path, maxTrialNumber=3, searchSpace=space)
    loaded = yaml.safe_load(config.read_text())
    # the space in the order NNI hands it to the tuner (the file's): the sampler draws in that order
    loaded["tuner"]["classArgs"].update(
        sampler="random", seed=seed_where_only_the_second_trial_diverges(loaded["searchSpace"])
    )
    config.write_text(yaml.safe_dump(loaded))
    experiment_id, folder = create(config, free_port, tmp_path)
    database = folder / "db" / "nni.sqlite"
    try:
        states = wait_for(
            database, lambda s: len(s) == 3 and all(v in ENDED for v in s.values()), "3 ended trials"
        )
        results = exported(experiment_id, tmp_path / "results.json")
        with sqlite3.connect(database) as db:
            started = db.execute(
                "select trialJobId, sequenceId, data, logPath from TrialJobEvent where event = 'RUNNING'"
            ).fetchall()
        status = experiment_status(free_port)
    finally:
        subprocess.run([*NNICTL, "stop", experiment_id], env=nnictl_env(), capture_output=True, timeout=60)
    parameters = {trial: json.loads(data)["parameters"] for trial, _, data, _ in started}
    first, diverged, last = [trial for trial, *_ in sorted(started, key=lambda row: row[1])]
    assert [parameters[t]["lambda"] for t in (first, diverged, last)] == [1e-3, DIVERGING_LAMBDA, 1e-3], (
        parameters
    )
    # the diverging trial is FAILED, its stderr names the divergence, and it reported no final result
    assert states[diverged] == "FAILED", states
    stderr = (
        Path(next(path for trial, *_, path in started if trial == diverged)) / "trial.stderr"
    ).read_text()
    assert "SearchDiverged" in stderr and "the search loss is inf" in stderr, stderr[-2000:]
    assert diverged not in results
    # the trials before and after it finished and reported their metric: the experiment went on
    assert states[first] == states[last] == "SUCCEEDED", states
    assert set(results) == {first, last}
    for trial in (first, last):
        assert results[trial]["parameter"] == parameters[trial]
        assert math.isfinite(results[trial]["value"]["default"]) and results[trial]["value"]["macs"] > 0
    assert status == "DONE"


@pytest.mark.slow
def test_stop_in_a_trial_and_resume_keep_the_finished_trials_and_the_tuner_history(tmp_path, free_port):
    experiment_id, folder = create(smoke_config(tmp_path, maxTrialNumber=3), free_port, tmp_path)
    database = folder / "db" / "nni.sqlite"
    try:
        wait_for(
            database,
            lambda s: "SUCCEEDED" in s.values() and "RUNNING" in s.values(),
            "a finished trial and a running one",
        )
    finally:
        nnictl("stop", experiment_id, timeout=60)
    # what the stopped experiment holds: a finished trial with its metric, one cut in the middle
    before = trial_states(database)
    finished = {
        trial: metric for trial, metric in final_metrics(database).items() if before[trial] == "SUCCEEDED"
    }
    cut = [trial for trial, state in before.items() if trial not in finished]
    assert finished and cut, before
    # `nnictl resume` on a free port (the stopped experiment released this one) runs to the trial count
    nnictl("resume", experiment_id, "--port", str(free_port), "--experiment_dir", str(folder.parent))
    try:
        after = wait_for(
            database,
            lambda s: len(s) == 3 and all(v in ENDED for v in s.values()),
            "3 ended trials after the resume",
        )
        results = exported(experiment_id, tmp_path / "results.json")
        status = experiment_status(free_port)
    finally:
        subprocess.run([*NNICTL, "stop", experiment_id], env=nnictl_env(), capture_output=True, timeout=60)
    assert status == "DONE"
    # every trial finished before the stop is still there, succeeded, with the metric it reported
    for trial, metric in finished.items():
        assert after[trial] == "SUCCEEDED"
        assert results[trial]["value"] == metric
    # NNI runs the cut trial again (same id and parameters) and then new ones up to the trial count
    assert all(after[trial] == "SUCCEEDED" for trial in after), after
    new = [trial for trial in after if trial not in before]
    assert len(new) == 3 - len(before), after
    # the resumed tuner (a new process, its Optuna study in memory) got the trials finished before the
    # stop replayed at its start, and the cut trial's result once it finished (OptunaTuner.import_data
    # logs the trials each replay added to the study)
    log = (folder / "log" / "dispatcher.log").read_text()
    replays = [int(n) for n in re.findall(r"replayed (\d+) finished trials into study 'hrnas-digits'", log)]
    assert replays == [len(finished)] + [1] * len(cut), log[-3000:]
