"""`hrnas study`: an Optuna study whose trials are whole HR-NAS searches (smoke scale)."""

import json
from pathlib import Path

import optuna
import pytest

from nni_hrnas.cli import main
from nni_hrnas.tuning.study import StudyError, StudySettings, run_study


@pytest.mark.slow
def test_two_workers_on_sqlite_lose_no_trial_and_resume_adds(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two worker processes share the two cores
    url = f"sqlite:///{tmp_path / 'study.db'}"  # a fresh file: the schema is created before workers start
    settings = StudySettings(task="digits_seg", storage=url, n_trials=3, workers=2, epochs=1,
                             out=str(tmp_path / "runs"))
    study = run_study(settings)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    for trial in study.trials:
        result = json.loads((Path(trial.user_attrs["run_dir"]) / "result.json").read_text())
        assert trial.values == [result["metric"], result["macs"]]
        assert result["lambda"] == pytest.approx(trial.params["lambda"]) and result["eps"] == trial.params["eps"]
    # the same command again adds to the same study
    assert main(["study", "--task", "digits_seg", "--storage", url, "--n-trials", "1", "--epochs", "1",
                 "--out", str(tmp_path / "runs"), "--json"]) == 0
    assert len(optuna.load_study(study_name="hrnas-digits_seg", storage=url).trials) == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"lambda_range": (1e-2, 1e-4)}, "lambda_range"),
    ({"eps_range": (0.0, 1e-2)}, "eps_range"),
    ({"n_trials": 0}, "n_trials"),
    ({"workers": 0}, "workers"),
    ({"mode": "pareto"}, "mode"),
    ({"macs_limit": 1e6}, "single"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(StudyError, match=message):
        StudySettings(task="digits_seg", **kwargs)


def test_storage_that_cannot_be_opened(tmp_path, capsys):
    assert main(["study", "--task", "digits_seg", "--storage", f"sqlite:///{tmp_path}/no/such/dir/s.db",
                 "--n-trials", "1"]) == 2
    assert "cannot open Optuna storage" in capsys.readouterr().err


def test_objectives_of_an_existing_study_must_match(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=url, study_name="hrnas-digits_seg", direction="maximize")
    with pytest.raises(StudyError, match="objective"):
        run_study(StudySettings(task="digits_seg", storage=url, n_trials=1))
