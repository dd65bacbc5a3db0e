"""`hrnas study` under faults: a worker SIGKILLed inside a trial, on SQLite, journal and PostgreSQL.

The trials run :func:`fast_objective.fast_objective` (instant, exact) instead of searches: what is
tested is the study's bookkeeping (run_study's workers, Optuna's storages, heartbeat and retry),
which does not depend on what a trial computes. tests/tuning/test_study.py runs real searches.
"""

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
from fast_objective import expected_values, fast_objective

from nni_hrnas.tuning.study import StudySettings, create_study, run_study

State = optuna.trial.TrialState


def run_and_kill_one_worker(settings: StudySettings, hold: Path) -> tuple[optuna.Study, int, int]:
    """Run the study; SIGKILL the worker whose trial holds (see fast_objective). Returns (study, pid, trial)."""
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(study=run_study(settings, fast_objective)))
    thread.start()
    victim, deadline = hold / "victim", time.monotonic() + 180
    while not victim.exists():  # written by the held trial itself: the worker is inside that trial
        assert thread.is_alive() and time.monotonic() < deadline, "no trial reached the hold point"
        time.sleep(0.05)
    pid, number = map(int, victim.read_text().split())
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive() and "study" in outcome
    return outcome["study"], pid, number


def check_killed_study(study: optuna.Study, pid: int, killed: int, n_trials: int) -> None:
    """n_trials COMPLETE with exact values, the killed trial FAIL once, retried with its parameters."""
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(n_trials + 1))  # each recorded once, none lost
    assert [t.number for t in trials if t.state == State.FAIL] == [killed]
    assert sum(t.state == State.COMPLETE for t in trials) == n_trials and len(trials) == n_trials + 1
    for trial in trials:
        if trial.state == State.COMPLETE:
            assert trial.values == pytest.approx(list(expected_values(trial.params)))
            assert trial.user_attrs["pid"] != pid  # the killed worker finished nothing after the hold
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert retry.state == State.COMPLETE and retry.params == trials[killed].params


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_killed_worker_fails_its_trial_and_the_others_finish(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_TEST_HOLD", str(tmp_path))
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else f"journal:{tmp_path / 's.log'}"
    settings = StudySettings(
        task="digits_seg", storage=url, n_trials=2, workers=2, out=str(tmp_path / "runs")
    )
    study, pid, killed = run_and_kill_one_worker(settings, tmp_path)
    check_killed_study(study, pid, killed, n_trials=2)
    (other,) = [t for t in study.trials if t.state == State.COMPLETE and "failed_trial" not in t.system_attrs]
    assert other.datetime_complete is not None  # the worker that was not killed went on to its end
    # two workers on this machine: half the cores each (at least one; OMP_NUM_THREADS caps it)
    cap = int(os.environ.get("OMP_NUM_THREADS") or 10**6)
    share = min(max(1, len(os.sched_getaffinity(0)) // 2), cap)
    assert all(t.user_attrs["threads"] == [share, str(share)] for t in study.trials)


def test_postgresql_four_workers_one_killed_then_resumed_elsewhere(postgresql_url, tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_TEST_HOLD", str(tmp_path))
    name = f"pg-{uuid.uuid4().hex[:8]}"
    settings = StudySettings(
        task="digits_seg",
        storage=postgresql_url,
        study_name=name,
        n_trials=4,
        workers=4,
        out=str(tmp_path / "runs"),
    )
    study, pid, killed = run_and_kill_one_worker(settings, tmp_path)
    check_killed_study(study, pid, killed, n_trials=4)
    assert len({t.user_attrs["pid"] for t in study.trials}) >= 4  # four workers, then the replacement
    # another process (this one ran no trial) opens the study and adds to it
    more = run_study(
        StudySettings(
            task="digits_seg",
            storage=postgresql_url,
            study_name=name,
            n_trials=2,
            workers=1,
            out=str(tmp_path / "runs"),
        ),
        fast_objective,
    )
    assert sorted(t.number for t in more.trials) == list(range(7))
    assert sum(t.state == State.COMPLETE for t in more.trials) == 6
    assert all(t.user_attrs["pid"] == os.getpid() for t in more.trials[5:])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_trial_whose_heartbeat_stopped_is_failed_and_retried_by_the_next_study(kind, tmp_path, request):
    """The whole `hrnas study` was killed (no parent left to notice): the next one on the storage cleans up."""
    url = f"sqlite:///{tmp_path / 's.db'}" if kind == "sqlite" else request.getfixturevalue("postgresql_url")
    settings = StudySettings(
        task="digits_seg",
        storage=url,
        study_name=f"hb-{uuid.uuid4().hex[:8]}",
        n_trials=1,
        heartbeat=1,
        out=str(tmp_path / "runs"),
    )
    study = create_study(settings)
    orphan = study.ask(
        {
            "lambda": optuna.distributions.FloatDistribution(*settings.lambda_range, log=True),
            "eps": optuna.distributions.FloatDistribution(*settings.eps_range, log=True),
        }
    )
    study._storage.record_heartbeat(orphan._trial_id)  # its process beat once, then died
    # past the grace period (two heartbeat intervals, "more than 2 s"): SQLite's CURRENT_TIMESTAMP keeps
    # whole seconds, so a 2.5 s wait reads as 2 s half the time; 3.2 s always reads as 3 s or more
    time.sleep(3.2)
    after = run_study(settings, fast_objective)
    assert [t.state for t in after.trials] == [State.FAIL, State.COMPLETE]
    retry = after.trials[1]
    assert retry.system_attrs["failed_trial"] == orphan.number and retry.params == after.trials[0].params
    assert retry.values == pytest.approx(list(expected_values(retry.params)))
