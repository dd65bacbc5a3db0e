"""Optuna outside NNI: a study of the penalty strength (lambda) and threshold (eps).

Each trial runs one whole HR-NAS search (:func:`nni_hrnas.search.run_search`) and is told its
metric and MACs. ``hrnas study --task digits_seg --storage sqlite:///study.db --n-trials 20
--workers 2`` runs it; running the same command again adds trials to the same study.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import multiprocessing
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import optuna

from nni_hrnas.logs import setup_cli_logging
from nni_hrnas.run_folder import RunFolder
from nni_hrnas.search import (
    SearchSettings,
    add_device_arguments,
    device_settings,
    run_search,
    space_setting,
)
from nni_hrnas.settings import Check, add_arguments, from_args, integer, is_integer, setting
from nni_hrnas.settings import check as check_settings
from nni_hrnas.strategy.loop import DeviceSettings
from nni_hrnas.tasks.registry import get_task
from nni_hrnas.threads import limit_threads, threads_per_worker

from .storage import open_storage, retry_callback

_log = logging.getLogger("nni_hrnas.tuning")

MODES = ("multi", "single")
PRUNERS = ("median", "hyperband", "none")


class StudyError(ValueError):
    """A study setting is invalid; the message names it and the fix."""


@dataclass
class StudySettings:
    """A study of lambda and eps for one task.

    ``mode='multi'`` optimises (metric up, MACs down); ``'single'`` the metric alone, with
    ``macs_limit`` as a constraint, each search reporting its metric after every epoch as an
    intermediate value so that ``pruner`` (median by default) stops unpromising searches early
    (Optuna prunes single-objective studies only). ``lambda_range`` defaults to a decade either
    side of the task's default lambda.

    Faults: ``workers`` processes each run ``threads`` torch threads (default: the cores split
    between them). A worker killed mid-trial (OOM killer, ``kill -9``) leaves its trial FAIL; the
    trial is retried once with the same parameters, resuming the killed search from its last
    epoch checkpoint, by a new worker that also runs the killed worker's remaining trials. On
    SQL storages every running trial also beats a heartbeat every ``heartbeat`` seconds, so the
    trials of a whole ``hrnas study`` killed at once end FAIL (and are retried) when the next
    ``hrnas study`` on that storage starts a trial; journal storages have no heartbeat.

    Example:
        >>> settings = StudySettings(task="digits_seg", storage="sqlite:///study.db", mode="single",
        ...                          macs_limit=10e6, n_trials=20)  # doctest: +SKIP
        >>> run_study(settings).best_trial.params  # doctest: +SKIP
    """

    task: str = setting(help="task name (e.g. digits_seg, cityscapes)")
    storage: str = setting(
        "sqlite:///study.db",
        help="Optuna storage: sqlite:///study.db, postgresql://user:pw@host/db or journal:PATH",
    )
    n_trials: int = setting(20, type=int, check=integer(1), help="new trials to add")
    workers: int = setting(1, type=int, check=integer(1), help="parallel worker processes")
    threads: int | None = setting(  # None: the cores split between the workers
        None,
        type=int,
        check=integer(1, "threads per worker").or_none(),
        help="torch threads per worker (default: this machine's cores "
        "divided by --workers, capped by OMP_NUM_THREADS if set)",
    )
    heartbeat: int = setting(
        60,
        type=int,
        check=Check(lambda v: is_integer(v) and v >= 1, "expected whole seconds >= 1"),
        help="seconds between heartbeats of running trials (SQL storages): a trial silent for two "
        "intervals is marked FAIL and retried",
    )
    study_name: str | None = setting(None, help="default: hrnas-TASK")
    mode: str = setting(
        "multi", choices=MODES, check=Check(lambda v: v in MODES, f"allowed: {', '.join(MODES)}")
    )
    macs_limit: float | None = setting(None, type=float, help="single mode: MACs above this are infeasible")
    pruner: str | None = setting(  # None: 'median' in single mode, 'none' in multi mode
        None,
        choices=PRUNERS,
        help="single mode: stops searches whose per-epoch metric "
        "falls behind (default median; multi mode: none)",
    )
    epochs: int | None = setting(None, type=int, help="epochs of each search (default: the task's)")
    seed: int = setting(0, type=int)
    out: str | None = setting(None, help="folder of the trials' run folders (default: runs/STUDY_NAME)")
    space: dict[str, Any] | None = space_setting()  # every trial's search: the task's preset with these
    # set from Python only: the flags give the default ranges (a decade either side of the task's lambda)
    lambda_range: tuple[float, float] | None = setting(None, cli=False)
    eps_range: tuple[float, float] = setting((1e-4, 1e-2), cli=False)
    # where each search trains: the device flags of hrnas search (add_device_arguments)
    device: DeviceSettings = setting(default_factory=DeviceSettings, cli=False)

    def __post_init__(self) -> None:
        if self.pruner is None:
            self.pruner = "median" if self.mode == "single" else "none"
        if self.study_name is None:
            self.study_name = f"hrnas-{self.task}"
        if self.out is None:
            self.out = str(Path("runs") / self.study_name)
        if self.lambda_range is None:
            try:
                center = get_task(self.task).search.lambda_
            except ValueError as exc:
                raise StudyError(str(exc)) from None
            self.lambda_range = (center / 10, center * 10)
        self.validate()
        if self.space:
            SearchSettings(task=self.task, space=self.space)  # a bad key: one line, before any trial

    def validate(self) -> None:
        """Each setting's declared check, then those that involve more than one: a :class:`StudyError`
        naming the first bad one and what is allowed."""
        check_settings(self, StudyError)
        for name, (low, high) in (("lambda_range", self.lambda_range), ("eps_range", self.eps_range)):
            if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
                raise StudyError(f"invalid {name}=({low}, {high}): expected 0 < low < high (log-uniform)")
        if self.eps_range[1] >= 1:
            raise StudyError(f"invalid eps_range={self.eps_range}: eps must stay below 1")
        if self.pruner not in PRUNERS:
            raise StudyError(f"invalid pruner={self.pruner!r}: allowed: {', '.join(PRUNERS)}")
        if self.pruner != "none" and self.mode != "single":
            raise StudyError(
                f"pruner={self.pruner!r} needs --mode single: Optuna prunes single-objective studies only"
            )
        if self.macs_limit is not None and self.mode != "single":
            raise StudyError("macs_limit is a constraint of the single-objective mode; pass --mode single")
        try:
            self.device.check_machine()
        except ValueError as exc:
            raise StudyError(str(exc)) from None


def make_pruner(settings: StudySettings) -> optuna.pruners.BasePruner:
    """The pruner of the study: it compares each search's per-epoch metric with earlier trials'.

    Not stored with the study, so every worker builds it again from the settings.
    """
    if settings.pruner == "median":
        # the penalty ramps up over the first epochs: judge a search only after two
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=2)
    if settings.pruner == "hyperband":
        epochs = SearchSettings(task=settings.task, epochs=settings.epochs).epochs
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=epochs)
    return optuna.pruners.NopPruner()


def create_study(settings: StudySettings) -> optuna.Study:
    """Create the study (or load it to add trials), before any worker starts: several workers on a
    fresh SQLite file would race to create its schema."""
    directions = ["maximize", "minimize"] if settings.mode == "multi" else ["maximize"]
    study = optuna.create_study(
        storage=open_storage(settings.storage, settings.heartbeat),
        study_name=settings.study_name,
        directions=directions,
        load_if_exists=True,
        pruner=make_pruner(settings),
    )
    if len(study.directions) != len(directions):
        raise StudyError(
            f"study {settings.study_name!r} in {settings.storage} has {len(study.directions)} "
            f"objective(s), but mode={settings.mode!r} needs {len(directions)}: choose another "
            "--study-name"
        )
    study.set_user_attr("settings", json.loads(json.dumps(asdict(settings))))
    return study


def make_objective(settings: StudySettings) -> Callable[[optuna.Trial], Any]:
    """The trial function: one HR-NAS search with the sampled lambda and eps."""

    def objective(trial: optuna.Trial) -> Any:
        lam = trial.suggest_float("lambda", *settings.lambda_range, log=True)
        eps = trial.suggest_float("eps", *settings.eps_range, log=True)
        # a retry of a killed trial inherits its user attributes: it resumes the killed search's folder
        run_dir = Path(trial.user_attrs.get("run_dir") or Path(settings.out) / f"trial-{trial.number:04d}")
        trial.set_user_attr("run_dir", str(run_dir))

        def report(epoch: dict[str, Any]) -> None:
            if math.isfinite(epoch["metric"]):
                trial.report(epoch["metric"], epoch["epoch"])
                if trial.should_prune():
                    raise optuna.TrialPruned(
                        f"epoch {epoch['epoch']}/{epoch['epochs']}: metric {epoch['metric']:.4g} "
                        f"at {epoch['macs']:,} MACs is below the {settings.pruner} pruner's bar"
                    )

        result = run_search(
            SearchSettings(
                task=settings.task,
                space=settings.space,
                lambda_=lam,
                eps=eps,
                epochs=settings.epochs,
                seed=settings.seed,
                out=str(run_dir),
                resume=RunFolder(run_dir).has_checkpoint(),
                **settings.device.flags(),
            ),
            on_epoch_end=report if settings.mode == "single" else None,
        )
        for name in (
            "macs",
            "params",
            "arch",
            "search_seconds",
            "metric_name",
        ):  # user attrs named as the fields
            trial.set_user_attr(name, getattr(result, name))
        if settings.mode == "multi":
            return float(result.metric), float(result.macs)
        if settings.macs_limit is not None:
            trial.set_constraint("macs_over_limit", float(result.macs) - settings.macs_limit)
        return float(result.metric)

    return objective


ObjectiveFactory = Callable[[StudySettings], Callable[[optuna.Trial], Any]]

#: Rounds of workers that replace killed ones before the study gives up.
MAX_RESTARTS = 3


def _worker(
    settings: StudySettings,
    n_trials: int,
    threads: int,
    objective: ObjectiveFactory = make_objective,
    token: str = "",
    done: Any = None,
) -> None:
    """One worker: ``n_trials`` trials, each tagged with the worker's ``token`` and counted in ``done``."""
    # The study's standard output carries the parent's summary alone (``--json``). A spawned worker
    # starts with NNI's own handler, which logs to stdout: sent on, those lines fill a pipe that a
    # caller reads only at the end, and both workers block in a write (a 50-trial study hung so).
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    setup_cli_logging()
    limit_threads(threads)
    study = optuna.load_study(
        study_name=settings.study_name,
        storage=open_storage(settings.storage, settings.heartbeat),
        pruner=make_pruner(settings),
    )
    function = objective(settings)

    def tagged(trial: optuna.Trial) -> Any:
        if token:
            trial.set_user_attr("worker", token)  # how the parent finds the trial of a killed worker
        return function(trial)

    def count(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if done is not None:  # after the trial is stored: a kill now loses no finished trial
            with done.get_lock():
                done.value += 1

    study.optimize(tagged, n_trials=n_trials, catch=(RuntimeError, ValueError), callbacks=[count])


def _split(n_trials: int, workers: int) -> list[int]:
    return [n for n in (n_trials // workers + (i < n_trials % workers) for i in range(workers)) if n]


def fail_trials_of_dead_workers(study: optuna.Study, tokens: set[str]) -> list[int]:
    """Mark FAIL the trials that killed workers left RUNNING, and queue each for one retry.

    Returns their numbers. A trial the heartbeat already failed is left alone (it was retried then).
    """
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get("worker") in tokens:
            frozen = study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
            retry_callback()(study, frozen)
            failed.append(trial.number)
    return failed


def run_study(settings: StudySettings, objective: ObjectiveFactory = make_objective) -> optuna.Study:
    """Run ``n_trials`` new trials split over ``workers`` processes; returns the study.

    ``objective(settings)`` builds the trial function (default: one HR-NAS search per trial); it
    must be importable by name, as spawned workers unpickle it. Workers killed by a signal are
    replaced until their trials are done (see :class:`StudySettings`).
    """
    create_study(settings)
    threads = threads_per_worker(settings.workers, settings.threads)
    if settings.workers == 1:
        _worker(settings, settings.n_trials, threads, objective)
        return optuna.load_study(study_name=settings.study_name, storage=open_storage(settings.storage))
    context = multiprocessing.get_context("spawn")
    shares = _split(settings.n_trials, settings.workers)
    for _ in range(MAX_RESTARTS + 1):
        workers = []
        for n in shares:
            token, done = uuid.uuid4().hex, context.Value("i", 0)
            process = context.Process(target=_worker, args=(settings, n, threads, objective, token, done))
            workers.append((process, n, token, done))
            process.start()
        for process, *_ in workers:
            process.join()
        errors = [p.exitcode for p, *_ in workers if p.exitcode and p.exitcode > 0]
        if errors:
            raise RuntimeError(
                f"{len(errors)} study worker(s) failed (exit codes {errors}); finished trials "
                f"are kept in {settings.storage}"
            )
        killed = [(p, n - done.value, token) for p, n, token, done in workers if p.exitcode]
        if not killed:
            break
        study = optuna.load_study(study_name=settings.study_name, storage=open_storage(settings.storage))
        failed = fail_trials_of_dead_workers(study, {token for *_, token in killed})
        left = sum(n for _, n, _ in killed)
        _log.warning(
            "%d worker(s) killed (signals %s); trial(s) %s marked FAIL and retried; %d trial(s) left, "
            "on new workers",
            len(killed),
            [-p.exitcode for p, *_ in killed],
            failed,
            left,
        )
        shares = _split(left, settings.workers)
    else:
        raise RuntimeError(
            f"study workers were killed {MAX_RESTARTS + 1} times in a row; finished trials are kept "
            f"in {settings.storage}; run the same command again to add the missing ones"
        )
    return optuna.load_study(study_name=settings.study_name, storage=open_storage(settings.storage))


def add_study_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``hrnas study``: one per :class:`StudySettings` setting, ``--json``, and the device flags."""
    add_arguments(parser, StudySettings)
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return add_device_arguments(parser)


def cmd_study(args: argparse.Namespace) -> int:
    """``hrnas study``."""
    try:
        settings = StudySettings(
            **from_args(StudySettings, args), device=device_settings(args, check_machine=False)
        )
        study = run_study(settings)
    except (StudyError, ValueError) as error:
        print(f"hrnas study: error: {error}", file=sys.stderr)
        return 2
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    front = study.best_trials if complete else []
    summary = {
        "study": settings.study_name,
        "storage": settings.storage,
        "trials": len(study.trials),
        "complete": len(complete),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
        "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials),
        "front": [{"number": t.number, "params": t.params, "values": t.values} for t in front],
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"study {settings.study_name} in {settings.storage}: {len(complete)}/{len(study.trials)} trials "
            f"complete; best: " + "; ".join(f"#{t.number} {t.params} -> {t.values}" for t in front)
        )
    return 0
