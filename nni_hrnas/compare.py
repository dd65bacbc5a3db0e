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
import itertools
import json
import logging
import math
import random
import re
import sys
import time
import warnings
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_hrnas.search import (
    SearchError,
    SearchSettings,
    _stdout_to_stderr,
    add_device_arguments,
    device_settings,
    free_port,
    run_search,
    space_setting,
)
from nni_hrnas.settings import Check, add_arguments, from_args, integer, setting
from nni_hrnas.settings import check as check_settings
from nni_hrnas.strategy.loop import DeviceSettings
from nni_hrnas.strategy.prune import recalibrate_bn
from nni_hrnas.tasks.registry import get_task
from search_spaces import HRNASSpace

if TYPE_CHECKING:
    import pandas as pd
    from nni.nas.oneshot.pytorch.strategy import OneShotStrategy

    from nni_hrnas.tasks.evaluator import TaskEvaluator

_log = logging.getLogger("nni_hrnas.compare")

MULTI_TRIAL = ("random", "evolution", "tpe")
ONE_SHOT = ("spos", "darts", "gumbel")
RANKED_CANDIDATES = 32  # subnets SPOS's second stage scores with the supernet's weights
RANKING_CALIBRATION_IMAGES = 32  # training images that recalibrate BN for each of them
STRATEGIES = ("hrnas", *MULTI_TRIAL, *ONE_SHOT)


class CompareError(ValueError):
    """A comparison setting is invalid; the message names it and the fix."""


@dataclass(frozen=True)
class Budget:
    """A search budget: ``seconds`` of wall clock or ``images`` seen in training."""

    seconds: float | None = None
    images: int | None = None

    def describe(self) -> str:
        """The budget in words: '1200 s wall clock' or '8000 images'."""
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


def _strategies_arg(text: str | list[str]) -> list[str]:
    """``--strategies hrnas,random``: the names, in order, blanks dropped."""
    if not isinstance(text, str):
        return list(text)
    return [s.strip() for s in text.split(",") if s.strip()]


@dataclass
class CompareSettings:
    """One comparison, each setting declared once (its flag and help included; see :mod:`nni_hrnas.settings`).

    ``eval_epochs``: the fixed schedule every architecture is evaluated with.
    """

    task: str = setting(help="task name (e.g. digits_seg, cityscapes)")
    budget: str = setting(help="per strategy: 20m, 90s, 1h (wall clock) or 50000img")
    strategies: list[str] = setting(
        default_factory=lambda: list(STRATEGIES),
        from_cli=_strategies_arg,
        check=Check(
            lambda v: bool(v) and all(s in STRATEGIES for s in v), f"choose from {', '.join(STRATEGIES)}"
        ),
        help=f"comma-separated: {', '.join(STRATEGIES)}",
    )
    out: str = setting("runs/compare")
    seed: int = setting(0, type=int)
    # 12: with 2, every digits_seg network stayed near the background score and strategies could not be
    # told apart; with 6 the best reached 3.4-3.8x it in the paper's space but 2.8-3.2x in today's
    # narrower default space, with 12 4.8-5.2x (README, "HR-NAS against NNI's strategies")
    eval_epochs: int = setting(
        12, type=int, check=integer(1), help="fixed schedule every architecture is trained with"
    )
    hrnas_lambdas: int = setting(
        3,
        type=int,
        check=integer(1),
        help="HR-NAS: searches in the lambda sweep (a decade either side of the task's lambda); "
        "with an image budget each search gets the epochs that make them all fit",
    )
    space: dict[str, Any] | None = space_setting()  # the space every strategy searches: the preset with these
    # where every search and evaluation trains: the device flags of hrnas search (default: one device, auto)
    device: DeviceSettings | None = setting(None, cli=False)

    def __post_init__(self) -> None:
        check_settings(self, CompareError)
        if self.space:
            try:
                SearchSettings(task=self.task, space=self.space)
            except ValueError as exc:
                raise CompareError(str(exc)) from None
        self.parsed_budget = parse_budget(self.budget)
        self.device = self.device or DeviceSettings()
        try:
            self.device.check_machine()
        except ValueError as exc:
            raise CompareError(str(exc)) from None


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

    def fits(self, images: int) -> bool:
        """Whether ``images`` more fit an image budget (a wall-clock budget: whether time is left)."""
        if self.budget.seconds:
            return self.left() > 0
        return self.images + images <= self.budget.images

    def used(self) -> str:
        return f"{self.seconds:.0f} s, {self.images} images"


class Comparison:
    """Runs the strategies of ``settings`` on one task; :meth:`run` returns the results table."""

    def __init__(self, settings: CompareSettings) -> None:
        self.settings = settings
        self.spec = get_task(settings.task)
        self.defaults = self.spec.search  # every strategy trains with the search's recipe and data
        self.space = self.space_for(settings.task, settings.space)
        sizes = self.defaults.data_sizes
        self.datasets = self.spec.make_datasets(
            seed=settings.seed, **({"sizes": tuple(sizes)} if sizes else {})
        )
        self.train_images = len(self.datasets[0])
        self.evaluation_images = settings.eval_epochs * self.train_images  # one architecture evaluated

    @staticmethod
    def space_for(task: str, space: dict[str, Any] | None = None) -> HRNASSpace:
        """The space every strategy searches for ``task``: the task's space at its input size, with the
        ``--space`` overrides (as ``hrnas search``'s)."""
        spec = get_task(task)
        return HRNASSpace.from_preset(
            spec.default_preset,
            input_size=spec.input_size(),
            num_outputs=spec.num_outputs,
            **spec.space_overrides(None, space),
        )

    def nni_dir(self) -> str:
        """Where NNI's experiment folders go: inside ``--out``, beside the results."""
        return str(Path(self.settings.out).resolve() / "nni")

    # -- the common evaluation ------------------------------------------------------------------

    def evaluator(self, epochs: int, **trainer_kwargs: Any) -> TaskEvaluator:
        """The task's NNI Lightning evaluator on the shared data sets."""
        # NNI's evaluators train with a Lightning Trainer on the same devices as the HR-NAS searches
        trainer_kwargs = {**self.settings.device.trainer_kwargs(), **trainer_kwargs}
        return self.spec.make_evaluator(
            None,
            epochs=epochs,
            batch_size=self.defaults.batch_size,  # the search's batch, for which its learning rate is set
            datasets=self.datasets,
            seed=self.settings.seed,
            module_kwargs=self.defaults.module_kwargs,
            enable_progress_bar=False,
            logger=False,
            **trainer_kwargs,
        )

    def evaluate(self, arch: dict[str, int], meter: _Meter) -> float:
        """Train ``arch`` from scratch with the fixed schedule and return its validation metric."""
        import torch

        torch.manual_seed(self.settings.seed)
        evaluator = self.evaluator(self.settings.eval_epochs)
        evaluator.evaluate(self.space.freeze(arch))
        meter.images += self.evaluation_images
        return float(evaluator.module.final_result["default"])

    def row(self, strategy: str, arch: dict[str, int], metric: float, meter: _Meter, **extra: Any) -> dict:
        """One row of results.csv: the architecture's metric, exact MACs and params, and the budget used."""
        net = self.space.freeze(arch)
        cost = net.cost()
        return {
            "strategy": strategy,
            "task": self.settings.task,
            "metric": metric,
            "metric_name": self.spec.metric,
            "macs": cost.macs,
            "params": cost.params,
            "budget": self.settings.parsed_budget.describe(),
            "budget_used": meter.used(),
            "arch": json.dumps(arch),
            **extra,
        }

    # -- strategies ------------------------------------------------------------------------------

    def run_multi_trial(self, name: str) -> list[dict]:
        """Random, evolution or TPE through NNI's NasExperiment: each sampled subnet trained and evaluated."""
        import nni.nas.strategy as strategies
        from nni.nas.experiment import NasExperiment, NasExperimentConfig

        meter = _Meter(self.settings.parsed_budget)
        strategy = {
            "random": lambda: strategies.Random(dedup=True),
            "evolution": lambda: strategies.RegularizedEvolution(population_size=8, sample_size=4),
            "tpe": lambda: strategies.TPE(),
        }[name]()
        config = NasExperimentConfig("sequential", "simplified")
        budget = self.settings.parsed_budget
        if budget.seconds is not None:
            config.execution_engine.max_duration = budget.seconds
        else:
            config.max_trial_number = max(1, budget.images // self.evaluation_images)
        config.experiment_working_directory = self.nni_dir()
        experiment = NasExperiment(self.space, self.evaluator(self.settings.eval_epochs), strategy, config)
        try:
            experiment.run(port=free_port())
            models = list(strategy.list_models(sort=True))
        finally:
            experiment.stop()
        meter.images = len(models) * self.evaluation_images
        return [self.row(name, dict(m.sample), float(m.metric), meter) for m in models]

    def run_one_shot(self, name: str) -> list[dict]:
        """SPOS, DARTS or GumbelDARTS: the supernet trained on the budget, its exports evaluated.

        With an image budget, one evaluation (and SPOS's ranking) is set aside first and the
        supernet trains on the rest, so that the strategy's whole use stays within the budget (the
        supernet took 70% before, and SPOS's one evaluation then ran 1.3x over a budget of two
        evaluations). A wall-clock budget gives the supernet 70%: the evaluation's time is not known
        before it runs.
        """
        import datetime

        # imported from their module: through nni.nas.strategy, a first import after the multi-trial
        # strategies hits a circular import in NNI 3.0 and yields a placeholder strategy
        from nni.nas.experiment import NasExperiment
        from nni.nas.oneshot.pytorch.strategy import DARTS, GumbelDARTS, RandomOneShot

        meter = _Meter(self.settings.parsed_budget)
        budget = self.settings.parsed_budget
        space = HRNASSpace(self.space.config)  # one-shot strategies mutate the space in place
        if budget.seconds is not None:
            evaluator = self.evaluator(10_000, max_time=datetime.timedelta(seconds=0.7 * budget.seconds))
        else:
            ranking = RANKED_CANDIDATES * RANKING_CALIBRATION_IMAGES if name == "spos" else 0
            supernet_images = budget.images - self.evaluation_images - ranking
            evaluator = self.evaluator(max(1, supernet_images // self.train_images))
        strategy = {"spos": RandomOneShot, "darts": DARTS, "gumbel": GumbelDARTS}[name]()
        experiment = NasExperiment(space, evaluator, strategy)
        experiment.config.experiment_working_directory = self.nni_dir()  # not ~/nni-experiments
        try:
            experiment.run(port=free_port())
            meter.images += (
                int(evaluator.trainer.fit_loop.epoch_progress.current.completed or 1) * self.train_images
            )
            if name == "spos":
                exported = self.rank_with_supernet(strategy, meter, reserve=self.evaluation_images)
            else:
                exported = experiment.export_top_models(top_k=1, formatter="dict")
        finally:
            experiment.stop()
        rows = []
        for arch in exported:
            if rows and not meter.fits(self.evaluation_images):
                break
            rows.append(self.row(name, dict(arch), self.evaluate(dict(arch), meter), meter))
        return rows

    def rank_with_supernet(
        self, strategy: OneShotStrategy, meter: _Meter, reserve: int = 0
    ) -> list[dict[str, int]]:
        """SPOS's second stage, which NNI's RandomOneShot leaves to users ("another search process").

        Up to :data:`RANKED_CANDIDATES` uniform subnets (fewer if the budget, less ``reserve``
        images, runs out) are scored with the trained supernet's weights (BN statistics
        recalibrated for each on :data:`RANKING_CALIBRATION_IMAGES` training images, as in the SPOS
        paper, counted in the budget) and their (score, MACs) Pareto front is returned, best score
        first.
        """
        import numpy as np
        import torch

        from analysis.pareto import pareto_mask

        supernet, oneshot = strategy.supernet, strategy.oneshot_module
        task = self.spec.make_lightning_module(**(self.defaults.module_kwargs or {}))
        task.set_model(supernet)  # a module of its own: the trained one is bound to a finished Trainer
        rng = random.Random(self.settings.seed)
        g = torch.Generator().manual_seed(self.settings.seed)
        loader = torch.utils.data.DataLoader(
            self.datasets[0], batch_size=RANKING_CALIBRATION_IMAGES // 2, shuffle=True, generator=g
        )
        calibration = [batch[0] for batch in itertools.islice(loader, 2)]
        val = torch.utils.data.DataLoader(self.datasets[1], batch_size=32)
        scored = []
        for _ in range(RANKED_CANDIDATES):
            if scored and not meter.fits(RANKING_CALIBRATION_IMAGES + reserve):
                break
            arch = {label: rng.choice(values) for label, values in self.space.choices().items()}
            memo = dict(arch)
            for module in oneshot.supernet_modules():
                module.resample(memo=memo)
            recalibrate_bn(supernet, calibration)
            meter.images += sum(len(x) for x in calibration)
            supernet.eval()
            if hasattr(task, "on_validation_epoch_start"):
                task.on_validation_epoch_start()
            with torch.no_grad(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*self\.log\(\).*")  # no Trainer to log to
                for i, batch in enumerate(val):
                    task.validation_step(batch, i)
            scored.append((float(task.compute_metric()), self.space.freeze(arch).cost().macs, arch))
        front = pareto_mask(np.array([s[0] for s in scored]), np.array([s[1] for s in scored], dtype=float))
        ranked = sorted((s for s, keep in zip(scored, front, strict=True) if keep), key=lambda s: -s[0])
        _log.info("spos: %d of %d candidates on the supernet's front", len(ranked), len(scored))
        return [arch for _, _, arch in ranked]

    def run_hrnas(self) -> list[dict]:
        """HR-NAS searches over a sweep of lambda (``--hrnas-lambdas``), each searched network evaluated."""
        meter = _Meter(self.settings.parsed_budget)
        center = self.defaults.lambda_
        k = self.settings.hrnas_lambdas
        lambdas = [center * 10 ** (2 * (i - (k - 1) / 2) / max(k - 1, 1)) for i in range(k)]
        epochs = SearchSettings(task=self.settings.task).epochs
        budget = self.settings.parsed_budget
        if budget.images is not None:  # k searches and their evaluations fit the image budget
            share = budget.images / k - self.evaluation_images
            epochs = min(epochs, max(2, int(share // self.train_images)))
        rows = []
        for i, lam in enumerate(lambdas):
            if rows and meter.left() <= 0:
                break
            result = run_search(
                SearchSettings(
                    task=self.settings.task,
                    space=self.settings.space,
                    lambda_=lam,
                    seed=self.settings.seed,
                    epochs=epochs,
                    out=str(Path(self.settings.out) / f"hrnas-{i}"),
                    **self.settings.device.flags(),
                )
            )
            meter.images += int(result.search_cost.images_seen)
            metric = self.evaluate(result.arch, meter)
            rows.append(
                self.row("hrnas", result.arch, metric, meter, lambda_=lam, searched_metric=result.metric)
            )
        return rows

    def run(
        self, done: Callable[[str, list[dict]], None] | None = None, skip: Collection[str] = ()
    ) -> list[dict]:
        """Run every strategy not in ``skip``; ``done(name, rows)`` is called after each."""
        runners: dict[str, Callable[[], list[dict]]] = {
            "hrnas": self.run_hrnas,
            **{n: (lambda n=n: self.run_multi_trial(n)) for n in MULTI_TRIAL},
            **{n: (lambda n=n: self.run_one_shot(n)) for n in ONE_SHOT},
        }
        rows: list[dict] = []
        for name in self.settings.strategies:
            if name in skip:
                _log.info("compare: %s already in the results table, skipped", name)
                continue
            _log.info("compare: %s under %s", name, self.settings.parsed_budget.describe())
            new = runners[name]()
            rows += new
            if done is not None:
                done(name, new)
        return rows


def run_compare(settings: CompareSettings, resume: bool = False) -> pd.DataFrame:
    """Run the comparison, write ``results.csv`` and ``report.html`` under ``settings.out``; returns the table.

    The table is rewritten after every strategy, so an interrupted comparison loses at most the
    strategy it was running; ``resume=True`` keeps the strategies already in the table (for the
    same task and budget) and runs the others.
    """
    import pandas as pd

    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.csv"
    table = pd.DataFrame()
    if path.exists():
        if not resume:
            raise CompareError(
                f"{path} exists: pass --resume to add the missing strategies to it, or choose "
                "another --out (nothing was overwritten)"
            )
        table = pd.read_csv(path)
        budget = settings.parsed_budget.describe()
        if set(table["task"]) != {settings.task} or set(table["budget"]) != {budget}:
            raise CompareError(
                f"{path} holds task/budget {sorted(set(table['task']))}/{sorted(set(table['budget']))}, "
                f"not {settings.task}/{budget}: resume with the same --task and --budget"
            )

    def done(name: str, rows: list[dict]) -> None:
        nonlocal table
        table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
        table.to_csv(path, index=False)

    Comparison(settings).run(done, skip=set(table["strategy"]) if len(table) else set())
    from analysis.report import write_report

    write_report([str(out)], out / "report.html", title=f"HR-NAS vs NNI strategies on {settings.task}")
    return table


def add_compare_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The flags of ``hrnas compare``: one per :class:`CompareSettings` setting, ``--resume``, ``--json``
    and the device flags."""
    add_arguments(parser, CompareSettings)
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the strategies already in OUT/results.csv and run the others",
    )
    parser.add_argument("--json", action="store_true")
    return add_device_arguments(parser)


def cmd_compare(args: argparse.Namespace) -> int:
    """``hrnas compare``: returns the exit status (2 for bad input, with one line saying why)."""
    try:
        settings = CompareSettings(
            **from_args(CompareSettings, args), device=device_settings(args, check_machine=False)
        )
        with _stdout_to_stderr():  # NNI's engines log to stdout; it is ours (--json)
            table = run_compare(settings, resume=args.resume)
    except (CompareError, SearchError) as error:
        print(f"hrnas compare: error: {error}", file=sys.stderr)
        return 2
    summary = table.groupby("strategy").agg(
        n=("metric", "size"), best_metric=("metric", "max"), min_macs=("macs", "min")
    )
    if args.json:
        print(
            json.dumps(
                {
                    "out": settings.out,
                    "rows": len(table),
                    "strategies": json.loads(summary.to_json(orient="index")),
                }
            )
        )
    else:
        print(summary.to_string())
        print(
            f"results: {Path(settings.out) / 'results.csv'}\nreport: {(Path(settings.out) / 'report.html').resolve()}"
        )
    return 0 if math.isfinite(float(table["metric"].max())) else 1
