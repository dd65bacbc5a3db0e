"""The Optuna-backed NNI tuner, driven the way NNI's dispatcher drives it."""

import math

import optuna
import pytest

from nni_hrnas.tuning import OptunaTuner, open_storage

SPACE = {
    "lambda": {"_type": "loguniform", "_value": [1e-6, 1e-3]},
    "eps": {"_type": "uniform", "_value": [1e-4, 1e-2]},
}


def fake_search(params):
    # a monotone trade-off: more penalty, fewer MACs and a lower metric
    lam = params["lambda"]
    return {
        "default": 0.9 + 0.01 * math.log10(lam) * -1,
        "macs": 1e9 * (1 + math.log10(1e-3 / lam)) ** -1,
        "params": 1000,
        "arch": {"p0_b0_n0_k3": 4},
    }


def run(tuner, n, start=0, fail=()):
    for pid in range(start, start + n):
        params = tuner.generate_parameters(pid)
        assert 1e-6 <= params["lambda"] <= 1e-3 and 1e-4 <= params["eps"] <= 1e-2
        if pid in fail:
            tuner.trial_end(pid, success=False)
            continue
        result = fake_search(params)
        tuner.receive_trial_result(pid, params, result)
        tuner.trial_end(pid, success=True)


def test_multi_objective_trials_are_told_with_metric_and_macs():
    tuner = OptunaTuner(objectives="multi", sampler="nsga2", seed=0)
    tuner.update_search_space(SPACE)
    run(tuner, 6, fail={3})
    trials = tuner.study.trials
    states = [t.state for t in trials]
    assert (
        states.count(optuna.trial.TrialState.COMPLETE) == 5
        and states.count(optuna.trial.TrialState.FAIL) == 1
    )
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            expected = fake_search(t.params)
            assert t.values == [expected["default"], expected["macs"]]
            assert t.user_attrs["arch"] == {"p0_b0_n0_k3": 4}
    assert [t.user_attrs["nni_parameter_id"] for t in trials] == list(range(6))
    # the Pareto front, by hand: trials no other trial beats on metric (higher) and MACs (lower) at once;
    # in fake_search a smaller lambda gives both, so the front is the completed trial of the smallest lambda
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    front = [
        t.number
        for t in done
        if not any(
            o.values[0] >= t.values[0] and o.values[1] <= t.values[1] and o.values != t.values for o in done
        )
    ]
    assert front == [min(done, key=lambda t: t.params["lambda"]).number]
    assert sorted(t.number for t in tuner.study.best_trials) == front


def test_nan_metric_is_a_failed_trial():
    tuner = OptunaTuner(objectives="single", sampler="tpe", seed=0)
    tuner.update_search_space(SPACE)
    params = tuner.generate_parameters(0)
    tuner.receive_trial_result(0, params, {"default": float("nan"), "macs": 1})
    assert tuner.study.trials[0].state == optuna.trial.TrialState.FAIL


def test_resume_replays_history_once():
    first = OptunaTuner(seed=0)
    first.update_search_space(SPACE)
    run(first, 4)
    history = [{"parameter": t.params, "value": fake_search(t.params)} for t in first.study.trials]
    resumed = OptunaTuner(seed=1)
    resumed.update_search_space(SPACE)
    resumed.import_data(history)
    resumed.import_data(history)  # a second resume adds nothing
    assert len(resumed.study.trials) == 4
    assert sorted(t.values[1] for t in resumed.study.trials) == sorted(h["value"]["macs"] for h in history)
    run(resumed, 2, start=10)
    assert len(resumed.study.trials) == 6


def test_study_persists_in_storage(tmp_path):
    url = f"sqlite:///{tmp_path / 'hrnas.db'}"
    tuner = OptunaTuner(storage=url, study_name="cityscapes", seed=0)
    tuner.update_search_space(SPACE)
    run(tuner, 3)
    again = optuna.load_study(study_name="cityscapes", storage=url)
    assert len(again.trials) == 3 and again.directions == [
        optuna.study.StudyDirection.MAXIMIZE,
        optuna.study.StudyDirection.MINIMIZE,
    ]


def test_single_objective_with_macs_limit_marks_infeasible():
    tuner = OptunaTuner(objectives="single", sampler="tpe", macs_limit=5e8, seed=0)
    tuner.update_search_space(SPACE)
    run(tuner, 4)
    for t in tuner.study.trials:
        assert t.system_attrs["constraints:macs_over_limit"] == pytest.approx(
            fake_search(t.params)["macs"] - 5e8
        )


@pytest.mark.parametrize(
    "space, message",
    [
        ({"lambda": {"_type": "loguniform", "_value": [1e-3, 1e-6]}}, "empty range"),
        ({"lambda": {"_type": "uniform", "_value": [-1.0, 1.0]}}, "must not be negative"),
        ({"eps": {"_type": "normal", "_value": [0, 1]}}, "not supported"),
        ({"eps": {"_type": "choice", "_value": []}}, "non-empty list"),
    ],
)
def test_bad_search_space(space, message):
    with pytest.raises(ValueError, match=message):
        OptunaTuner().update_search_space(space)


def test_bad_arguments_and_storage(tmp_path):
    with pytest.raises(ValueError, match="objectives"):
        OptunaTuner(objectives="three")
    with pytest.raises(ValueError, match="cannot open Optuna storage"):
        open_storage("notadb://x")
    with pytest.raises(ValueError, match="cannot open"):
        open_storage(f"sqlite:///{tmp_path}/missing/dir/x.db")
    assert open_storage(f"journal:{tmp_path / 'j.log'}") is not None
