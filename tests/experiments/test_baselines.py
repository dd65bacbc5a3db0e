"""Baselines at equal MACs (uniform slimming, random architectures of the space) and at equal time
(the epoch-time estimate that fits a baseline's epochs to a time budget)."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from reference import torch_counted_macs

from nni_hrnas import baselines
from nni_hrnas.search import SearchSettings, build_search
from nni_hrnas.tasks import get_task
from search_spaces import HRNASSpace
from search_spaces.ops.transformer import LightweightTransformer


@pytest.mark.parametrize("preset, fraction", [("digits_kp", 0.0162), ("tiny", 0.5)])
def test_uniform_sample_scales_every_width_by_one_factor_to_the_macs(preset, fraction):
    """Within 3% of the asked MACs by an independent count, every width the same fraction of its
    maximum (within one channel), also next to the space's minimum (digits_kp at 1.49 M MACs)."""
    space = HRNASSpace.from_preset(preset)
    size = space.config.input_size
    target = fraction * baselines.sample_macs(space, space.max_sample(), size)
    arch = baselines.uniform_sample(space, target, size)
    net = space.freeze(arch).eval()
    counted = torch_counted_macs(net, torch.randn(1, *size))  # grad mode on: the counter needs it
    assert abs(counted - target) <= 0.03 * target
    maxima = space.max_sample()
    ratios = [arch[label] / maximum for label, maximum in maxima.items()]
    spread = max(ratios) - min(ratios)
    assert spread <= max(1.0 / m for m in maxima.values()) + 1e-9, spread


@pytest.mark.parametrize("preset, fraction", [("digits_kp", 0.0162), ("digits_seg", 0.08)])
def test_hand_slimmed_sample_keeps_one_3x3_path_a_block_and_no_transformer(preset, fraction):
    """Within 3% of the asked MACs by an independent count; the 5x5 and 7x7 paths and every
    transformer removed, the 3x3 paths all at one fraction of their maximum (within one channel)."""
    space = HRNASSpace.from_preset(preset)
    size = space.config.input_size
    target = fraction * baselines.sample_macs(space, space.max_sample(), size)
    arch = baselines.hand_slimmed_sample(space, target, size)
    space.validate_sample(arch)
    net = space.freeze(arch).eval()
    counted = torch_counted_macs(net, torch.randn(1, *size))
    assert abs(counted - target) <= 0.03 * target
    maxima = space.max_sample()
    kept = {label for label, width in arch.items() if width > 0}
    assert kept and all(label.endswith("_k3") for label in kept)
    assert not any(isinstance(m, LightweightTransformer) for m in net.modules())
    ratios = [arch[label] / maxima[label] for label in maxima if label.endswith("_k3")]
    assert max(ratios) - min(ratios) <= max(1.0 / m for m in maxima.values()) + 1e-9


def test_same_paths_sample_keeps_the_paths_of_the_architecture_at_one_fraction_of_their_widths():
    """A chain of paths (what tight budgets return), 40% of the way from no path to the chain at full width:
    within 3% of the MACs by an independent count, exactly the given paths kept, each at one fraction
    of its maximum (within one channel), whatever widths the architecture gave them."""
    space = HRNASSpace.from_preset("digits_seg")
    size = space.config.input_size
    maxima = space.max_sample()
    chain = {"p0_b0_n0_k3": 21, "f1_o1_i0_k3": 14, "p1_b1_n0_k3": 16, "p2_b2_n0_k3": 10}
    arch_in = {label: chain.get(label, 0) for label in maxima}
    widest = {label: maxima[label] if label in chain else 0 for label in maxima}
    fixed = baselines.sample_macs(space, dict.fromkeys(maxima, 0), size)  # the stem and what has no width
    target = fixed + 0.4 * (baselines.sample_macs(space, widest, size) - fixed)
    arch = baselines.same_paths_sample(space, arch_in, target, size)
    space.validate_sample(arch)
    counted = torch_counted_macs(space.freeze(arch).eval(), torch.randn(1, *size))
    assert abs(counted - target) <= 0.03 * target
    assert {label for label, width in arch.items() if width > 0} == set(chain)
    ratios = [arch[label] / maxima[label] for label in chain]
    assert max(ratios) - min(ratios) <= max(1.0 / maxima[label] for label in chain) + 1e-9, ratios
    with pytest.raises(baselines.BaselineError, match="keeps no path"):
        baselines.same_paths_sample(space, {label: 0 for label in maxima}, target, size)


def test_random_samples_land_on_the_macs_and_differ():
    space = HRNASSpace.from_preset("digits_seg")
    size = space.config.input_size
    target = 8.4e6
    samples = baselines.random_samples(space, target, size, count=3, seed=0)
    assert len({tuple(sorted(s.items())) for s in samples}) == 3
    for s in samples:
        assert abs(baselines.sample_macs(space, s, size) - target) <= 0.03 * target
        space.validate_sample(s)


def test_macs_outside_the_space_is_one_clear_error():
    space = HRNASSpace.from_preset("tiny")
    with pytest.raises(baselines.BaselineError, match="ask for MACs in that range"):
        baselines.uniform_sample(space, 1e12, space.config.input_size)


# ---- equal time: the epoch estimate ---------------------------------------------------------

TASK = "digits_kp"
LOAD_SECONDS = 0.02  # per training sample


class Clock:
    """The estimate's clock, moved only by data loading: compute takes no time on it, so what the
    estimate counts of loading is exact, whatever the machine's load."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


class SlowToLoad(torch.utils.data.Dataset):
    """``data`` with every sample taking ``LOAD_SECONDS`` of ``clock`` to load, as decoding images from disk does."""

    def __init__(self, data, clock: Clock) -> None:
        self.data, self.clock = data, clock

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        self.clock.now += LOAD_SECONDS
        return self.data[i]


@pytest.fixture(scope="module")
def small_network():
    space, _, _ = build_search(SearchSettings(task=TASK))
    size = get_task(TASK).input_size(smoke=False)
    return space, baselines.uniform_sample(
        space, 0.05 * baselines.sample_macs(space, space.max_sample(), size), size
    )


def test_the_epoch_estimate_includes_data_loading(small_network, monkeypatch):
    """A baseline given the search's wall time must be charged for loading its data too: an estimate
    that timed the optimizer step alone gave it up to half as much time again as the search."""
    monkeypatch.setenv("HRNAS_QUIET", "1")
    clock = Clock()
    monkeypatch.setattr(baselines, "time", clock)
    space, arch = small_network
    train, val = get_task(TASK).make_datasets(smoke=False, sizes=(64, 16))
    batch_size = get_task(TASK).search.batch_size
    assert baselines.seconds_per_epoch(TASK, space, arch, (train, val), "search") == 0.0
    slow = baselines.seconds_per_epoch(TASK, space, arch, (SlowToLoad(train, clock), val), "search")
    loading = (len(train) // batch_size) * batch_size * LOAD_SECONDS  # 1.28 s an epoch
    assert slow == pytest.approx(loading)


def test_one_step_an_epoch_is_timed_whole(small_network, monkeypatch):
    """With a single training step an epoch there is no interval between steps: the epoch is timed whole."""
    monkeypatch.setenv("HRNAS_QUIET", "1")
    clock = Clock()
    monkeypatch.setattr(baselines, "time", clock)
    space, arch = small_network
    train, val = get_task(TASK).make_datasets(smoke=False, sizes=(64, 16))
    batch_size = get_task(TASK).search.batch_size
    one_batch = torch.utils.data.Subset(train, range(batch_size))
    estimate = baselines.seconds_per_epoch(TASK, space, arch, (SlowToLoad(one_batch, clock), val), "search")
    assert estimate == pytest.approx(batch_size * LOAD_SECONDS)


# ---- equal time: the training's own epochs ----------------------------------------------------

BUDGET = 13.0  # seconds of the clock, for 64 training samples an epoch


def test_epochs_in_budget_pools_the_trainings_measured():
    """First epochs (setup included) averaged apart from later ones, over every training so far:
    first (2 + 3) / 2 = 2.5 s, later (1 + 1 + 2) / 3 = 4/3 s: 1 + (13 - 2.5) // (4/3) = 8 epochs fit
    in 13 s, 9 in 3% more (13.39 s), 8 in 3% less (12.61 s), and a 1 s budget still trains one."""
    measured = [[2.0, 1.0, 1.0], [3.0, 2.0]]
    assert baselines.epochs_in_budget(13.0, measured, 0.0) == 8
    assert baselines.epochs_in_budget(13.0, measured, 0.03) == 9
    assert baselines.epochs_in_budget(13.0, measured, -0.03) == 8
    assert baselines.epochs_in_budget(1.0, measured, 0.0) == 1


class ChangesSpeed(torch.utils.data.Dataset):
    """``data`` whose samples take ``probe_seconds`` of ``clock`` each to load for the first
    ``probe_loads`` loads (the epoch estimate's probe) and ``later(loads so far)`` after: a machine
    that runs slower, or faster, through a long training than through a short probe."""

    def __init__(self, data, clock: Clock, probe_loads: int, probe_seconds: float, later) -> None:
        self.data, self.clock, self.later = data, clock, later
        self.probe_loads, self.probe_seconds = probe_loads, probe_seconds
        self.loads = 0

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        self.clock.now += self.probe_seconds if self.loads < self.probe_loads else self.later(self.loads)
        self.loads += 1
        return self.data[i]


@pytest.mark.parametrize(
    "probe_seconds, later_seconds",
    [(0.02, 0.03), (0.03, 0.02)],  # the probe a third low (the training would overrun), then high
    ids=["probe-low", "probe-high"],
)
def test_equal_time_training_fits_its_epochs_to_the_epochs_it_measures(
    small_network, monkeypatch, caplog, probe_seconds, later_seconds
):
    """A baseline trained for the search's time gets the whole epochs that fit in it by its own
    training's epoch times, not by the probe's: with a probe that ran a third low it trained 10
    epochs of 1.92 s in 13 s (19.2 s, 48% more time than the search); one that ran high left 4
    epochs unused."""
    monkeypatch.setenv("HRNAS_QUIET", "1")
    caplog.set_level(logging.INFO, logger=baselines.__name__)
    clock = Clock()
    monkeypatch.setattr(baselines, "time", clock)
    space, arch = small_network
    train, val = get_task(TASK).make_datasets(smoke=False, sizes=(64, 16))
    # the probe (two whole epochs of 64 samples) loads at probe_seconds a sample, the trainings at later_seconds
    data = ChangesSpeed(train, clock, 2 * len(train), probe_seconds, lambda loads: later_seconds)
    started: list[int] = []
    run = baselines.train_for_time(
        TASK, space, arch, BUDGET, datasets=(data, val), recipe="search", on_epochs=started.append
    )
    epoch = len(train) * later_seconds  # an epoch of the training: 1.92 s or 1.28 s
    assert run.epochs == math.floor(BUDGET / epoch)  # 6 or 10, by hand
    assert run.seconds == pytest.approx(run.epochs * epoch)
    assert run.seconds <= BUDGET < run.seconds + epoch
    probe_fit = math.floor(BUDGET / (len(train) * probe_seconds))  # 10 or 6
    assert started == [probe_fit, run.epochs]  # the probe's fit, then one refit
    # the log says which way the first training missed its budget
    refit_line = next(r.getMessage() for r in caplog.records if "training again" in r.getMessage())
    assert ("run past" if probe_seconds < later_seconds else "fall short of") in refit_line


def test_the_last_training_is_kept_whole_when_epochs_keep_slowing(small_network, monkeypatch):
    """Where every epoch runs slower than the one before (no fit holds), the trainings stop at the
    third, which runs all its epochs: a baseline is never cut short of the schedule it was set up with."""
    monkeypatch.setenv("HRNAS_QUIET", "1")
    clock = Clock()
    monkeypatch.setattr(baselines, "time", clock)
    space, arch = small_network
    train, val = get_task(TASK).make_datasets(smoke=False, sizes=(64, 16))
    n = len(train)
    data = ChangesSpeed(train, clock, 2 * n, LOAD_SECONDS, lambda loads: LOAD_SECONDS * (1 + loads // n) / 3)
    loads_at_start: list[int] = []
    run = baselines.train_for_time(
        TASK,
        space,
        arch,
        BUDGET,
        datasets=(data, val),
        recipe="search",
        on_epochs=lambda epochs: loads_at_start.append(data.loads),
    )
    assert len(loads_at_start) == baselines.TIME_FIT_ATTEMPTS
    assert data.loads - loads_at_start[-1] == run.epochs * n  # every epoch of the last training ran
