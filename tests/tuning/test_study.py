"""`hrnas study`: an Optuna study whose trials are whole HR-NAS searches (smoke scale)."""

import json
from pathlib import Path

import optuna
import pytest
from collected import assert_row_is_the_result, collect_rows

from nni_hrnas.cli import main
from nni_hrnas.tuning.study import StudyError, StudySettings, create_study, run_study


@pytest.mark.slow
def test_two_workers_on_sqlite_lose_no_trial_and_resume_adds(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # two worker processes share the two cores
    url = f"sqlite:///{tmp_path / 'study.db'}"  # a fresh file: the schema is created before workers start
    settings = StudySettings(
        task="digits_seg", storage=url, n_trials=3, workers=2, epochs=1, out=str(tmp_path / "runs")
    )
    study = run_study(settings)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    # the workers wrote nothing on the study's standard output (NNI logs there by default): it is the
    # parent's, for --json, and a caller that reads it only at the end must not see the workers block
    assert capfd.readouterr().out == ""
    collected = collect_rows(url)  # the analysis reads this real Optuna study, trial by trial
    assert sorted(collected["trial"]) == sorted(str(t.number) for t in study.trials)
    for trial in study.trials:
        result = json.loads((Path(trial.user_attrs["run_dir"]) / "result.json").read_text())
        assert trial.values == [result["metric"], result["macs"]]
        assert (
            result["lambda"] == pytest.approx(trial.params["lambda"]) and result["eps"] == trial.params["eps"]
        )
        row = collected[collected["trial"] == str(trial.number)].iloc[0]
        assert row["kind"] == "optuna" and row["experiment"] == study.study_name
        assert_row_is_the_result(
            row,
            {
                k: result[k]
                for k in (
                    "metric",
                    "macs",
                    "params",
                    "lambda",
                    "eps",
                    "arch",
                    "task",
                    "metric_name",
                    "search_seconds",
                )
            },
        )
    # the same command again adds to the same study
    assert (
        main(
            [
                "study",
                "--task",
                "digits_seg",
                "--storage",
                url,
                "--n-trials",
                "1",
                "--epochs",
                "1",
                "--out",
                str(tmp_path / "runs"),
                "--json",
            ]
        )
        == 0
    )
    assert len(optuna.load_study(study_name="hrnas-digits_seg", storage=url).trials) == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lambda_range": (1e-2, 1e-4)}, "lambda_range"),
        ({"eps_range": (0.0, 1e-2)}, "eps_range"),
        ({"n_trials": 0}, "n_trials"),
        ({"workers": 0}, "workers"),
        ({"mode": "pareto"}, "mode"),
        ({"macs_limit": 1e6}, "single"),
        ({"pruner": "median"}, "single"),
        ({"mode": "single", "pruner": "asha"}, "pruner"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(StudyError, match=message):
        StudySettings(task="digits_seg", **kwargs)


def test_storage_that_cannot_be_opened(tmp_path, capsys):
    assert (
        main(
            [
                "study",
                "--task",
                "digits_seg",
                "--storage",
                f"sqlite:///{tmp_path}/no/such/dir/s.db",
                "--n-trials",
                "1",
            ]
        )
        == 2
    )
    assert "cannot open Optuna storage" in capsys.readouterr().err


def test_objectives_of_an_existing_study_must_match(tmp_path):
    url = f"sqlite:///{tmp_path / 's.db'}"
    optuna.create_study(storage=url, study_name="hrnas-digits_seg", direction="maximize")
    with pytest.raises(StudyError, match="objective"):
        run_study(StudySettings(task="digits_seg", storage=url, n_trials=1))


@pytest.mark.slow
def test_single_mode_reports_every_epoch_and_the_pruner_stops_a_poor_search(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    settings = StudySettings(
        task="digits_seg", storage=url, n_trials=1, mode="single", macs_limit=50e6, out=str(tmp_path / "runs")
    )
    assert settings.pruner == "median"
    # three finished trials whose searches reached mIoU 0.99 at every epoch: a smoke search is far below
    study = create_study(settings)
    space = {
        "lambda": optuna.distributions.FloatDistribution(*settings.lambda_range, log=True),
        "eps": optuna.distributions.FloatDistribution(*settings.eps_range, log=True),
    }
    for _ in range(3):
        study.add_trial(
            optuna.trial.create_trial(
                params={"lambda": 1e-3, "eps": 1e-3},
                distributions=space,
                value=0.99,
                intermediate_values={1: 0.99, 2: 0.99},
            )
        )
    trial = run_study(settings).trials[-1]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert sorted(trial.intermediate_values) == [1, 2]  # the median pruner waits two epochs (warm-up)
    assert all(0 <= v < 0.99 for v in trial.intermediate_values.values())
    run_dir = Path(trial.user_attrs["run_dir"])
    assert (run_dir / "search_checkpoint.pt").exists() and not (run_dir / "result.json").exists()


def test_without_a_pruner_single_mode_completes_with_intermediate_values_and_constraint(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    monkeypatch.setenv("HRNAS_QUIET", "1")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = run_study(
        StudySettings(
            task="digits_seg",
            storage=url,
            n_trials=1,
            mode="single",
            pruner="none",
            macs_limit=1e6,
            epochs=1,
            out=str(tmp_path / "runs"),
        )
    )
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.COMPLETE
    result = json.loads((Path(trial.user_attrs["run_dir"]) / "result.json").read_text())
    assert trial.values == [result["metric"]]
    assert trial.intermediate_values == {1: result["metric"]}  # the EMA network's metric after epoch 1
    # no digits_seg network fits 1e6 MACs: the trial is told it is infeasible, by how much
    assert trial.constraints == {"macs_over_limit": result["macs"] - 1e6}
