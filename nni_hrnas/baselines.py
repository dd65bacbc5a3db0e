"""The alternatives a searched network must beat: the same space slimmed uniformly, by hand (one
3x3 path per block, no transformers) or at random to the same MACs, and trained from scratch for
the same time or the same epochs.

A composition module (like :mod:`nni_hrnas.search`): it builds networks of a space, costs them
exactly, and trains them with a task's own recipe through the task's Lightning evaluator.

>>> space = HRNASSpace.from_preset("digits_seg")
>>> arch = uniform_sample(space, 7.0e6, (1, 64, 64))       # every width x one factor, 7.0 M MACs
>>> run = train_architecture("digits_seg", space, arch, epochs=14)
>>> run.metric, run.seconds
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from pytorch_lightning import Callback

from nni_hrnas.data.common import smoke_mode
from nni_hrnas.strategy.units import WidthCost
from nni_hrnas.tasks.registry import get_task
from search_spaces import HRNASNetwork
from search_spaces.labels import kernel_size

#: How far (relative) a baseline's MACs may be from the MACs it is matched to.
MACS_TOLERANCE = 0.03


_log = logging.getLogger(__name__)


class BaselineError(ValueError):
    """A baseline cannot be built as asked; the message says why and what to change."""


def sample_macs(space, sample: Mapping[str, int], input_size: tuple[int, int, int]) -> int:
    """Exact MACs of ``sample`` of ``space`` at ``input_size`` (built on the meta device: no memory)."""

    with torch.device("meta"):
        net = HRNASNetwork(space.config, {k: int(v) for k, v in sample.items()})
    return int(net.cost(tuple(input_size)).macs)


def _scaled(space, shape: Mapping[str, float], factor: float) -> dict[str, int]:
    """Every width ``round(min(1, factor * shape[label]) * max)``, rounded up to the space's grid."""
    maxima = space.max_sample()
    widths = {
        label: min(maximum, int(round(factor * shape[label] * maximum))) for label, maximum in maxima.items()
    }
    return space.round_up(widths)


def _match_macs(
    space, shape: Mapping[str, float], macs: float, input_size: tuple[int, int, int], tolerance: float
) -> dict[str, int]:
    """Bisection on one factor applied to every width of ``shape`` so that MACs meet ``macs``."""
    with torch.device("meta"):  # MACs of any widths from the supernet's shapes, nothing built per sample
        width_cost = WidthCost(HRNASNetwork(space.config, space.max_sample()), input_size)
    low, high = 0.0, 1.0 / max(min(v for v in shape.values() if v > 0), 1e-6)
    best, best_error = None, math.inf

    def consider(sample: dict[str, int]) -> int:
        nonlocal best, best_error
        value = width_cost.macs(sample)
        if abs(value - macs) / macs < best_error:
            best, best_error = dict(sample), abs(value - macs) / macs
        return value

    for _ in range(40):
        mid = (low + high) / 2
        if consider(_scaled(space, shape, mid)) < macs:
            low = mid
        else:
            high = mid
    # Labels of equal width round at the same factor, so near the space's minimum one step of the
    # factor moves many labels at once: walk from the sample below the target to the one above,
    # one label at a time.
    below, above = _scaled(space, shape, low), _scaled(space, shape, high)
    for label in sorted(label for label in below if below[label] != above[label]):
        below[label] = above[label]
        if consider(below) >= macs:
            break
    if best is None or best_error > tolerance:
        lo, hi = width_cost.macs(_scaled(space, shape, 0.0)), width_cost.total
        raise BaselineError(
            f"no architecture of this shape lands within {100 * tolerance:.0f}% of "
            f"{macs:,.0f} MACs (closest {100 * best_error:.1f}% off; the space spans "
            f"{lo:,}..{hi:,} MACs at {tuple(input_size)}): ask for MACs in that range"
        )
    return best


def uniform_sample(
    space, macs: float, input_size: tuple[int, int, int], tolerance: float = MACS_TOLERANCE
) -> dict[str, int]:
    """The supernet with every width (channels and tokens) scaled by one factor to ``macs``."""
    return _match_macs(space, {label: 1.0 for label in space.max_sample()}, macs, input_size, tolerance)


def hand_slimmed_sample(
    space, macs: float, input_size: tuple[int, int, int], tolerance: float = MACS_TOLERANCE
) -> dict[str, int]:
    """What one slims by hand: each block keeps only its smallest kernel path (3x3 in the paper's
    space) and no transformer, and those widths are scaled by one factor to ``macs``.

    Unlike :func:`uniform_sample`, which near the space's minimum rounds dozens of kernel paths to
    one or two channels, this keeps one path per block: a plain network with fewer, wider layers.
    """
    labels = space.max_sample()
    smallest = min(k for k in map(kernel_size, labels) if k is not None)  # None: a transformer's tokens
    shape = {label: 1.0 if kernel_size(label) == smallest else 0.0 for label in labels}
    return _match_macs(space, shape, macs, input_size, tolerance)


def same_paths_sample(
    space,
    arch: Mapping[str, int],
    macs: float,
    input_size: tuple[int, int, int],
    tolerance: float = MACS_TOLERANCE,
) -> dict[str, int]:
    """The paths ``arch`` keeps, each at one fraction of its maximum width, scaled to ``macs``: the
    searched topology with the widths a user would pick by hand, to tell what the search's widths add
    to its choice of paths."""
    shape = {label: 1.0 if arch.get(label, 0) > 0 else 0.0 for label in space.max_sample()}
    if not any(shape.values()):
        raise BaselineError("the architecture keeps no path: there is nothing to scale")
    return _match_macs(space, shape, macs, input_size, tolerance)


def random_samples(
    space,
    macs: float,
    input_size: tuple[int, int, int],
    count: int,
    seed: int = 0,
    tolerance: float = MACS_TOLERANCE,
) -> list[dict[str, int]]:
    """``count`` random architectures at ``macs``: random relative widths, then one factor to the MACs."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        shape = {label: rng.random() for label in space.max_sample()}
        samples.append(_match_macs(space, shape, macs, input_size, tolerance))
    return samples


def _channels_last(net: torch.nn.Module) -> torch.nn.Module:
    """The network and its inputs channels-last, as the search trains (see ``SearchSettings.channels_last``),
    so that equal-time comparisons compare architectures, not memory layouts."""
    net = net.to(memory_format=torch.channels_last)
    net.register_forward_pre_hook(
        lambda _, args: (args[0].contiguous(memory_format=torch.channels_last), *args[1:])
    )
    return net


@dataclass
class TrainedRun:
    """One network trained from scratch: its costs, metric, and what the training took."""

    name: str
    arch: dict[str, int]
    macs: int
    params: int
    metric: float
    epochs: int
    seconds: float  # wall time of the whole training (validation included)
    train_seconds_per_mmac: float  # training wall time per image and per million MACs (speed per MAC)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Training recipes: ``task`` is the task's own (its record's ``train``: batch size, optimizer,
#: schedule); ``search`` is the one the search trains with (its record's ``search``).
RECIPES = ("task", "search")


def _recipe(task: str, recipe: str = "task"):
    """(task spec, data sizes, batch size, module kwargs) of ``recipe``; data are the search's either way."""
    if recipe not in RECIPES:
        raise BaselineError(f"unknown recipe {recipe!r}; allowed: {', '.join(RECIPES)}")
    spec = get_task(task)
    search = spec.search
    sizes = None if smoke_mode() else search.data_sizes  # the search's data, smoke included
    if recipe == "search":
        return spec, sizes, search.batch_size or spec.train.batch_size, dict(search.module_kwargs or {})
    return spec, sizes, spec.train.batch_size, {}


def _evaluator(spec, epochs: int, batch_size: int, module_kwargs, datasets, seed: int = 0, **trainer_kwargs):
    """The task's Lightning evaluator as the baselines train: quiet, no logger, no sanity check."""
    return spec.make_evaluator(
        None,
        epochs=epochs,
        batch_size=batch_size,
        datasets=datasets,
        seed=seed,
        module_kwargs=module_kwargs or None,
        enable_progress_bar=False,
        logger=False,
        num_sanity_val_steps=0,
        **trainer_kwargs,
    )


class _StepTimer(Callback):
    """Wall time between consecutive training steps (data loading and Lightning's own work included,
    which timing the step alone misses) and of each validation pass, epoch by epoch."""

    def __init__(self) -> None:
        self.steps: list[list[float]] = []
        self.validations: list[float] = []
        self.epochs: list[float] = []  # each training epoch with its validation
        self._last: float | None = None
        self._epoch_started = self._validation_started = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.steps.append([])
        self._last = None
        self._epoch_started = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._last is not None:
            self.steps[-1].append(now - self._last)
        self._last = now

    def on_validation_start(self, trainer, pl_module) -> None:
        self._validation_started = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        now = time.perf_counter()
        self.validations.append(now - self._validation_started)
        self.epochs.append(now - self._epoch_started)


@contextlib.contextmanager
def _no_final_result_log():
    """Keep the task module's "final result" line off the log, for trainings that give no result."""
    task_log = logging.getLogger("nni_hrnas.tasks.base")
    level = task_log.level
    task_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        task_log.setLevel(level)


def seconds_per_epoch(
    task: str, space, arch: Mapping[str, int], datasets, recipe: str = "task", probe_steps: int = 8
) -> float:
    """Wall time one epoch of training (and its validation) takes for ``arch`` with ``recipe``.

    Measured on the training path itself (:func:`train_network`'s trainer, two epochs of
    ``probe_steps`` steps each and a whole validation): the second epoch's median step interval
    times the steps of an epoch, plus its validation. Timing the optimizer step alone ran 15-35%
    low on the digits tasks (data loading and the trainer's own work were missing), which gave the
    equal-time baselines up to half as much time again as the search.
    """
    spec, _, batch_size, mkw = _recipe(task, recipe)
    train, _ = datasets
    timer = _StepTimer()
    evaluator = _evaluator(
        spec, 2, batch_size, mkw, datasets, limit_train_batches=probe_steps, callbacks=[timer]
    )
    with _no_final_result_log():  # the probe's "final result" is no result
        evaluator.evaluate(_channels_last(space.freeze(dict(arch))))
    warm = timer.steps[-1]
    if not warm:  # one step an epoch: no interval between steps, the whole epoch was timed
        return timer.epochs[-1]
    step = sorted(warm)[len(warm) // 2]
    return step * max(len(train) // batch_size, 1) + timer.validations[-1]


def recipe_datasets(task: str, recipe: str = "task", seed: int = 0, datasets=None):
    """``datasets`` if given, else the (train, val) data ``recipe`` trains on (the search's sizes)."""
    if datasets is not None:
        return datasets
    spec, sizes, _, _ = _recipe(task, recipe)
    return spec.make_datasets(seed=seed, **({"sizes": tuple(sizes)} if sizes else {}))


def train_architecture(
    task: str,
    space,
    arch: Mapping[str, int],
    epochs: int,
    name: str = "network",
    seed: int = 0,
    datasets=None,
    recipe: str = "task",
    callbacks: list[Callback] | None = None,
) -> TrainedRun:
    """Train ``arch`` from scratch for ``epochs`` with ``recipe`` (see :data:`RECIPES`) and validate it."""
    datasets = recipe_datasets(task, recipe, seed, datasets)
    torch.manual_seed(seed)
    net = space.freeze(dict(arch))
    return train_network(
        task,
        net,
        epochs,
        name=name,
        seed=seed,
        datasets=datasets,
        recipe=recipe,
        arch=arch,
        callbacks=callbacks,
    )


def train_network(
    task: str,
    net: torch.nn.Module,
    epochs: int,
    name: str = "network",
    seed: int = 0,
    datasets=None,
    recipe: str = "task",
    arch: Mapping[str, int] | None = None,
    callbacks: list[Callback] | None = None,
) -> TrainedRun:
    """Train ``net`` in place (any network with ``cost(input_size)``: a frozen architecture, a plug-in
    network, a searched network's weights) for ``epochs`` with ``recipe`` and validate it. The caller
    seeds torch (before building ``net``, as :func:`train_architecture` does). ``callbacks`` join
    the Lightning trainer's.
    """
    spec, _, batch_size, mkw = _recipe(task, recipe)
    datasets = recipe_datasets(task, recipe, seed, datasets)
    cost = net.cost(spec.input_size())
    net = _channels_last(net)
    evaluator = _evaluator(spec, epochs, batch_size, mkw, datasets, seed, callbacks=callbacks)
    started = time.perf_counter()
    evaluator.evaluate(net)
    seconds = time.perf_counter() - started
    metric = float(evaluator.module.final_result["default"])
    per_mmac = seconds / max(epochs * len(datasets[0]), 1) / max(cost.macs / 1e6, 1e-9)
    return TrainedRun(
        name,
        {k: int(v) for k, v in (arch or {}).items()},
        int(cost.macs),
        int(cost.params),
        metric,
        int(epochs),
        seconds,
        per_mmac,
    )


#: How far (relative) an equal-time baseline's training may run past its time budget, or stop short
#: of the next whole epoch, before :func:`train_for_time` fits its epochs again.
TIME_TOLERANCE = 0.05
#: Trainings :func:`train_for_time` starts at most: the probe's fit, then refits from measured epochs.
TIME_FIT_ATTEMPTS = 3


def epochs_in_budget(seconds: float, trainings: list[list[float]], tolerance: float = TIME_TOLERANCE) -> int:
    """How many whole epochs fit in ``seconds``, given the measured epoch durations of one or more
    ``trainings`` of a network: a first epoch (setup and warm-up included) as long as the first
    epochs measured, on average, and every later one as long as the later ones (as the first when
    none was measured). At least one. Pooling the trainings evens out a machine whose speed drifts
    by minutes (10-15% on this project's 2-core machine)."""
    firsts = [t[0] for t in trainings if t]
    laters = [d for t in trainings for d in t[1:]] or firsts
    first, later = sum(firsts) / len(firsts), sum(laters) / len(laters)
    return max(1, 1 + math.floor((seconds * (1 + tolerance) - first) / max(later, 1e-12)))


class _EpochBudget(Callback):
    """Times a training's epochs (each with its validation; the first also with the trainer's
    setup) and, from the end of its third epoch or first quarter to its half, checks that its
    ``epochs`` fill ``seconds`` by the epochs measured (the ``earlier`` trainings' counted in): none
    projected to run past them, and no further one that would have fit. When they do not, it sets
    :attr:`refit` to the epochs that fit and (with ``stop``) stops the training, whose schedule was
    set up for the wrong length. Past its half a training is kept: starting again would cost more
    than the miss."""

    def __init__(
        self,
        seconds: float,
        epochs: int,
        earlier: Sequence[list[float]] = (),
        tolerance: float = TIME_TOLERANCE,
        stop: bool = True,
    ) -> None:
        self.seconds, self.epochs, self.tolerance, self.stop = seconds, epochs, tolerance, stop
        self.earlier = list(earlier)
        self.durations: list[float] = []
        self.refit: int | None = None
        self._started = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        self._started = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        now = time.perf_counter()
        self.durations.append(now - self._started)
        self._started = now
        # the first epoch mixes setup and warm-up, and a few epochs of a drifting machine are noise
        done, first_check = len(self.durations), min(max(3, math.ceil(self.epochs / 4)), self.epochs)
        if not first_check <= done <= max(first_check, math.ceil(self.epochs / 2)):
            return
        measured = [*self.earlier, self.durations]
        # within the tolerance the fit may move by one either way: only a real miss is refitted
        most = epochs_in_budget(self.seconds, measured, self.tolerance)
        least = epochs_in_budget(self.seconds, measured, -self.tolerance)
        if not least <= self.epochs <= most:
            self.refit = epochs_in_budget(self.seconds, measured, 0.0)
            trainer.should_stop = self.stop


def train_for_time(
    task: str,
    space,
    arch: Mapping[str, int],
    seconds: float,
    name: str = "network",
    seed: int = 0,
    datasets=None,
    recipe: str = "task",
    on_epochs: Callable[[int], None] | None = None,
) -> TrainedRun:
    """Train ``arch`` from scratch with the task's recipe for as many whole epochs as fit in ``seconds``.

    The epochs are fitted before training (from :func:`seconds_per_epoch`) so that the
    learning-rate schedule runs its whole course, as a user training for a time budget would set
    it up. The training's own epochs are timed too: when they show that its epochs run past
    ``seconds`` (by more than :data:`TIME_TOLERANCE`) or leave room for another, it is stopped and
    started again from scratch with the epochs that fit by the epoch times of every training so
    far (at most :data:`TIME_FIT_ATTEMPTS` trainings; the last is kept whole). A short probe alone
    ran up to 20% low on a slower machine and gave the baselines that much more time than the
    search they were compared with. ``on_epochs`` is called with the epochs of each training as
    it starts.
    """
    spec, sizes, _, _ = _recipe(task, recipe)
    if datasets is None:
        datasets = spec.make_datasets(seed=seed, **({"sizes": tuple(sizes)} if sizes else {}))
    epochs = max(1, int(seconds // seconds_per_epoch(task, space, arch, datasets, recipe)))
    attempt, measured = 1, []
    while True:
        if on_epochs is not None:
            on_epochs(epochs)
        budget = _EpochBudget(seconds, epochs, measured, stop=attempt < TIME_FIT_ATTEMPTS)
        with _no_final_result_log():  # a stopped training's result is none: the kept one is logged below
            run = train_architecture(
                task,
                space,
                arch,
                epochs,
                name=name,
                seed=seed,
                datasets=datasets,
                recipe=recipe,
                callbacks=[budget],
            )
        if budget.refit is None or attempt == TIME_FIT_ATTEMPTS:
            _log.info(
                "%s: %s %.4f after %d epochs in %.0f s (budget %.0f s)",
                name,
                spec.metric,
                run.metric,
                epochs,
                run.seconds,
                seconds,
            )
            return run
        _log.info(
            "%s: %d epochs would %s %.0f s (epochs of %s s); stopped, training again for %d",
            name,
            epochs,
            "run past" if budget.refit < epochs else "fall short of",
            seconds,
            ", ".join(f"{d:.1f}" for d in budget.durations),
            budget.refit,
        )
        epochs, attempt = budget.refit, attempt + 1
        measured.append(budget.durations)


BASELINES_CSV = "results.csv"


def write_baselines(folder, task: str, metric_name: str, runs: list[tuple[str, TrainedRun, str]]) -> None:
    """Write ``(kind, run, budget)`` rows as ``folder/results.csv``, the results-table layout that
    :func:`analysis.collect` reads (one row per reference network, ``strategy`` = its kind)."""
    import json
    from pathlib import Path

    import pandas as pd

    from analysis.collect import BASELINES  # the kinds the report draws as reference networks

    unknown = sorted({kind for kind, _, _ in runs} - set(BASELINES))
    if unknown:
        raise BaselineError(f"unknown baseline kind(s) {unknown}; allowed: {', '.join(BASELINES)}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "strategy": kind,
            "task": task,
            "metric": run.metric,
            "metric_name": metric_name,
            "macs": run.macs,
            "params": run.params,
            "arch": json.dumps(run.arch),
            "epochs": run.epochs,
            "train_seconds": round(run.seconds, 1),
            "budget": budget,
        }
        for kind, run, budget in runs
    ]
    pd.DataFrame(rows).to_csv(folder / BASELINES_CSV, index=False)
