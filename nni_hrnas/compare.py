"""``hrnas compare``: HR-NAS against NNI's strategies on the same space, data and budget.

Every strategy searches the task's space under the same budget, wall clock (``20m``, ``90s``,
``1h``) or images seen (``50000img``). Every architecture it returns is then evaluated the same
way: trained from scratch with one fixed short schedule and validated (``eval_epochs``). That
evaluation is the trial itself for the multi-trial strategies (random, evolution, tpe); for the
one-shot ones (spos = NNI's RandomOneShot, darts, gumbel) and for HR-NAS (a sweep of lambda) it
follows the search and is counted in their budget too. Results go to ``OUT/results.csv`` (strategy,
metric, macs, params, budget_used, arch) and an HTML report.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_log = logging.getLogger("nni_hrnas.compare")

MULTI_TRIAL = ("random", "evolution", "tpe")
ONE_SHOT = ("spos", "darts", "gumbel")
STRATEGIES = ("hrnas", *MULTI_TRIAL, *ONE_SHOT)


class CompareError(ValueError):
    """A comparison setting is invalid; the message names it and the fix."""


@dataclass(frozen=True)
class Budget:
    """A search budget: ``seconds`` of wall clock or ``images`` seen in training."""

    seconds: float | None = None
    images: int | None = None

    def describe(self) -> str:
        return f"{self.seconds:.0f} s wall clock" if self.seconds is not None else f"{self.images} images"


def parse_budget(text: str) -> Budget:
    """``20m``, ``90s``, ``1.5h`` (wall clock) or ``50000img`` (images seen)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|m|h|img)\s*", str(text))
    if not match:
        raise CompareError(f"invalid budget={text!r}: expected e.g. 20m, 90s, 1h (wall clock) or 50000img")
    value, unit = float(match.group(1)), match.group(2)
    if value <= 0:
        raise CompareError(f"invalid budget={text!r}: the budget must be positive")
    if unit == "img":
        return Budget(images=int(value))
    return Budget(seconds=value * {"s": 1, "m": 60, "h": 3600}[unit])


@dataclass
class CompareSettings:
    """One comparison. ``eval_epochs``: the fixed schedule every architecture is evaluated with."""

    task: str
    budget: str
    strategies: list[str] = field(default_factory=lambda: list(STRATEGIES))
    out: str = "runs/compare"
    seed: int = 0
    eval_epochs: int = 2
    hrnas_lambdas: int = 3

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise CompareError(f"invalid strategies={','.join(self.strategies)!r}: choose from {', '.join(STRATEGIES)}")
        self.parsed_budget = parse_budget(self.budget)
        if self.eval_epochs < 1:
            raise CompareError(f"invalid eval_epochs={self.eval_epochs}: expected >= 1")


class _Meter:
    """Budget use of one strategy: wall time since start and images trained on."""

    def __init__(self, budget: Budget) -> None:
        self.budget, self.start, self.images = budget, time.perf_counter(), 0

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        """Fraction of the budget still left (0..1)."""
        used = self.seconds / self.budget.seconds if self.budget.seconds else self.images / self.budget.images
        return max(0.0, 1.0 - used)

    def used(self) -> str:
        return f"{self.seconds:.0f} s, {self.images} images"


class Comparison:
    """Runs the strategies of ``settings`` on one task; :meth:`run` returns the results table."""

    def __init__(self, settings: CompareSettings) -> None:
        from nni_hrnas.search import TASK_DEFAULTS
        from nni_hrnas.tasks.registry import get_task
        from search_spaces import HRNASSpace

        self.settings = settings
        self.spec = get_task(settings.task)
        self.defaults = TASK_DEFAULTS.get(settings.task, {})
        input_size = self.spec.input_size()
        self.space = HRNASSpace.from_preset(self.spec.default_preset, input_size=input_size,
                                            num_outputs=self.spec.num_outputs)
        sizes = self.defaults.get("data_sizes")
        self.datasets = self.spec.make_datasets(seed=settings.seed, **({"sizes": tuple(sizes)} if sizes else {}))
        self.train_images = len(self.datasets[0])

    # -- the common evaluation ------------------------------------------------------------------

    def evaluator(self, epochs: int, **trainer_kwargs: Any):
        """The task's NNI Lightning evaluator on the shared data sets."""
        return self.spec.make_evaluator(None, epochs=epochs, datasets=self.datasets, seed=self.settings.seed,
                                        module_kwargs=self.defaults.get("module_kwargs"),
                                        enable_progress_bar=False, logger=False, **trainer_kwargs)

    def evaluate(self, arch: dict[str, int], meter: _Meter) -> float:
        """Train ``arch`` from scratch with the fixed schedule and return its validation metric."""
        import torch

        torch.manual_seed(self.settings.seed)
        evaluator = self.evaluator(self.settings.eval_epochs)
        evaluator.evaluate(self.space.freeze(arch))
        meter.images += self.settings.eval_epochs * self.train_images
        return float(evaluator.module.final_result["default"])

    def row(self, strategy: str, arch: dict[str, int], metric: float, meter: _Meter, **extra: Any) -> dict:
        net = self.space.freeze(arch)
        cost = net.cost()
        return {"strategy": strategy, "task": self.settings.task, "metric": metric,
                "metric_name": self.spec.metric, "macs": cost.macs, "params": cost.params,
                "budget": self.settings.parsed_budget.describe(), "budget_used": meter.used(),
                "arch": json.dumps(arch), **extra}

    # -- strategies ------------------------------------------------------------------------------

    def run_multi_trial(self, name: str) -> list[dict]:
        import nni.nas.strategy as strategies
        from nni.nas.experiment import NasExperiment, NasExperimentConfig

        from nni_hrnas.search import free_port

        meter = _Meter(self.settings.parsed_budget)
        strategy = {"random": lambda: strategies.Random(dedup=True),
                    "evolution": lambda: strategies.RegularizedEvolution(population_size=8, sample_size=4),
                    "tpe": lambda: strategies.TPE()}[name]()
        config = NasExperimentConfig("sequential", "simplified")
        budget = self.settings.parsed_budget
        if budget.seconds is not None:
            config.execution_engine.max_duration = budget.seconds
        else:
            config.max_trial_number = max(1, budget.images // (self.settings.eval_epochs * self.train_images))
        config.experiment_working_directory = str(Path(self.settings.out).resolve() / "nni")
        experiment = NasExperiment(self.space, self.evaluator(self.settings.eval_epochs), strategy, config)
        try:
            experiment.run(port=free_port())
            models = list(strategy.list_models(sort=True))
        finally:
            experiment.stop()
        meter.images = len(models) * self.settings.eval_epochs * self.train_images
        return [self.row(name, dict(m.sample), float(m.metric), meter) for m in models]

    def run_one_shot(self, name: str) -> list[dict]:
        import datetime

        # imported from their module: through nni.nas.strategy, a first import after the multi-trial
        # strategies hits a circular import in NNI 3.0 and yields a placeholder strategy
        from nni.nas.experiment import NasExperiment
        from nni.nas.oneshot.pytorch.strategy import DARTS, GumbelDARTS, RandomOneShot

        from nni_hrnas.search import free_port
        from search_spaces import HRNASSpace

        meter = _Meter(self.settings.parsed_budget)
        budget = self.settings.parsed_budget
        space = HRNASSpace(self.space.config)  # one-shot strategies mutate the space in place
        search_share = 0.7  # the rest evaluates the exported architectures with the fixed schedule
        if budget.seconds is not None:
            evaluator = self.evaluator(10_000, max_time=datetime.timedelta(seconds=search_share * budget.seconds))
        else:
            evaluator = self.evaluator(max(1, int(search_share * budget.images / self.train_images)))
        strategy = {"spos": RandomOneShot, "darts": DARTS, "gumbel": GumbelDARTS}[name]()
        experiment = NasExperiment(space, evaluator, strategy)
        try:
            experiment.run(port=free_port())
            exported = experiment.export_top_models(top_k=1, formatter="dict")
            if name == "spos":
                # NNI's RandomOneShot exports an arbitrary subnet (ranking subnets by the supernet's
                # weights is "another search process" NNI leaves to users): export more uniform
                # draws, evaluated in turn until the budget ends.
                rng = random.Random(self.settings.seed)
                exported += [{label: rng.choice(values) for label, values in self.space.choices().items()}
                             for _ in range(7)]
        finally:
            experiment.stop()
        meter.images += int(evaluator.trainer.fit_loop.epoch_progress.current.completed or 1) * self.train_images
        rows = []
        for arch in exported:
            if rows and meter.left() <= 0:
                break
            rows.append(self.row(name, dict(arch), self.evaluate(dict(arch), meter), meter))
        return rows

    def run_hrnas(self) -> list[dict]:
        from nni_hrnas.search import SearchSettings, run_search

        meter = _Meter(self.settings.parsed_budget)
        center = self.defaults.get("lambda_", 1.4e-4)
        k = self.settings.hrnas_lambdas
        lambdas = [center * 10 ** (2 * (i - (k - 1) / 2) / max(k - 1, 1)) for i in range(k)]
        rows = []
        for i, lam in enumerate(lambdas):
            if rows and meter.left() <= 0:
                break
            result = run_search(SearchSettings(task=self.settings.task, lambda_=lam, seed=self.settings.seed,
                                               out=str(Path(self.settings.out) / f"hrnas-{i}")))
            meter.images += int(result["search_cost"]["images_seen"])
            metric = self.evaluate(result["arch"], meter)
            rows.append(self.row("hrnas", result["arch"], metric, meter, lambda_=lam,
                                 searched_metric=result["metric"]))
        return rows

    def run(self) -> list[dict]:
        runners: dict[str, Callable[[], list[dict]]] = {
            "hrnas": self.run_hrnas, **{n: (lambda n=n: self.run_multi_trial(n)) for n in MULTI_TRIAL},
            **{n: (lambda n=n: self.run_one_shot(n)) for n in ONE_SHOT}}
        rows: list[dict] = []
        for name in self.settings.strategies:
            _log.info("compare: %s under %s", name, self.settings.parsed_budget.describe())
            rows += runners[name]()
        return rows


def run_compare(settings: CompareSettings):
    """Run the comparison, write ``results.csv`` and ``report.html`` under ``settings.out``."""
    import pandas as pd

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(Comparison(settings).run())
    table.to_csv(out / "results.csv", index=False)
    from analysis.report import write_report

    write_report([str(out)], out / "report.html", title=f"HR-NAS vs NNI strategies on {settings.task}")
    return table


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--task", required=True)
    parser.add_argument("--budget", required=True, help="per strategy: 20m, 90s, 1h (wall clock) or 50000img")
    parser.add_argument("--strategies", default=",".join(STRATEGIES), help=f"comma-separated: {', '.join(STRATEGIES)}")
    parser.add_argument("--out", default="runs/compare")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-epochs", type=int, default=2, help="fixed schedule every architecture is trained with")
    parser.add_argument("--json", action="store_true")
    return parser


def cmd_compare(args: argparse.Namespace) -> int:
    try:
        settings = CompareSettings(task=args.task, budget=args.budget, out=args.out, seed=args.seed,
                                   strategies=[s.strip() for s in args.strategies.split(",") if s.strip()],
                                   eval_epochs=args.eval_epochs)
        table = run_compare(settings)
    except CompareError as error:
        print(f"hrnas compare: error: {error}", file=sys.stderr)
        return 2
    summary = table.groupby("strategy").agg(n=("metric", "size"), best_metric=("metric", "max"),
                                            min_macs=("macs", "min"))
    if args.json:
        print(json.dumps({"out": settings.out, "rows": len(table),
                          "strategies": json.loads(summary.to_json(orient="index"))}))
    else:
        print(summary.to_string())
        print(f"results: {Path(settings.out) / 'results.csv'}\nreport: {(Path(settings.out) / 'report.html').resolve()}")
    return 0 if math.isfinite(float(table["metric"].max())) else 1
