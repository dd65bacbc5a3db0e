"""`nnictl create --config experiments/digits.yml` end to end at smoke scale, and config validity."""

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from collected import assert_metric, assert_row_is_the_result, collect_rows
from nni.experiment.config import ExperimentConfig

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "experiments").glob("*.yml"))
NNICTL = [sys.executable, "-m", "nni.tools.nnictl.nnictl"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_configs_are_valid_nni_configs(path):
    config = ExperimentConfig.load(str(path))
    assert config.tuner.class_name == "nni_hrnas.tuning.OptunaTuner"
    assert set(config.search_space) == {"lambda", "eps"}
    assert "nni_hrnas.trial" in config.trial_command


@pytest.mark.slow
def test_nnictl_runs_digits_at_smoke_scale(tmp_path, free_port):
    config = yaml.safe_load((ROOT / "experiments" / "digits.yml").read_text())
    config.update(
        maxTrialNumber=2, trialCodeDirectory=str(ROOT), experimentWorkingDirectory=str(tmp_path / "exp")
    )
    config["tuner"]["codeDirectory"] = str(ROOT)
    (tmp_path / "digits.yml").write_text(yaml.safe_dump(config))
    # trials run `python -m nni_hrnas.trial`: the python of this environment, as an activated venv gives
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "HRNAS_SMOKE": "1", "HRNAS_QUIET": "1", "OMP_NUM_THREADS": "1"}
    created = subprocess.run(
        [*NNICTL, "create", "--config", str(tmp_path / "digits.yml"), "--port", str(free_port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert created.returncode == 0, created.stderr
    experiment_id = next(p.name for p in (tmp_path / "exp").iterdir() if p.name != "_latest")
    database = tmp_path / "exp" / experiment_id / "db" / "nni.sqlite"
    try:
        deadline = time.time() + 400
        while time.time() < deadline:
            with sqlite3.connect(database) as db:
                ended = db.execute(
                    "select count(*) from TrialJobEvent where event in "
                    "('SUCCEEDED', 'FAILED', 'USER_CANCELED', 'SYS_CANCELED')"
                ).fetchone()[0]
            if ended >= 2:
                break
            time.sleep(3)
        exported = tmp_path / "results.json"
        subprocess.run(
            [*NNICTL, "experiment", "export", experiment_id, "--filename", str(exported), "--type", "json"],
            env=env,
            check=True,
            capture_output=True,
            timeout=60,
        )
        with sqlite3.connect(database) as db:
            events = db.execute(
                "select trialJobId, data from TrialJobEvent where event = 'RUNNING'"
            ).fetchall()
            finals = db.execute(
                "select trialJobId, parameterId from MetricData where type = 'FINAL'"
            ).fetchall()
            periodical = db.execute(
                "select trialJobId, parameterId, data from MetricData where type = 'PERIODICAL'"
            ).fetchall()
    finally:
        subprocess.run([*NNICTL, "stop", experiment_id], env=env, capture_output=True, timeout=60)
    results = json.loads(exported.read_text())
    assert len(results) == 2, results
    for row in results:
        value = row["value"] if isinstance(row["value"], dict) else json.loads(row["value"])
        assert {"default", "macs", "params", "arch", "search_seconds"} <= set(value)
        assert 1e-4 <= row["parameter"]["lambda"] <= 1e-2 and 1e-4 <= row["parameter"]["eps"] <= 1e-2
    # The outer tuner got each final result under the parameter id it handed out (the inner NAS
    # run overwrites nni.trial._params; nni_hrnas.trial restores it).
    sent = {trial: json.loads(data)["parameter_id"] for trial, data in events}
    assert len(finals) == 2 and sorted(sent.values()) == [0, 1]
    assert all(int(parameter_id) == sent[trial] for trial, parameter_id in finals)
    # every smoke search (2 epochs, a prune step each) reported both epochs as intermediate results
    assert len(periodical) == 4 and all(
        int(parameter_id) == sent[trial] for trial, parameter_id, _ in periodical
    )
    for _, _, data in periodical:
        value = json.loads(json.loads(data))
        assert value["epoch"] in (1, 2) and value["macs"] > 0
        assert_metric(value["default"])
    # the analysis reads this real (stopped) experiment folder: one row per trial, as NNI exported it,
    # though NNI's `_latest` link leads to the experiment a second time
    assert (tmp_path / "exp" / "_latest").resolve() == database.parents[1].resolve()
    collected = collect_rows(tmp_path / "exp")
    assert len(collected) == 2 and set(collected["kind"]) == {"nni"}
    for row in results:
        value = row["value"] if isinstance(row["value"], dict) else json.loads(row["value"])
        got = collected[collected["trial"] == row["trialJobId"]].iloc[0]
        assert got["lambda"] == pytest.approx(row["parameter"]["lambda"])
        assert got["eps"] == pytest.approx(row["parameter"]["eps"])
        assert_row_is_the_result(
            got, {k: value[k] for k in ("default", "macs", "params", "arch", "search_seconds")}
        )
