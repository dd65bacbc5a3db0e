"""Whole searches on `tiny`: lambda, budget, degeneration, export and reload, kill and resume, bad input."""

from __future__ import annotations

import dataclasses
import json
import signal
import types

import pytest
import torch
from nni.nas.experiment import NasExperiment
from reference import torch_counted_macs
from search_helpers import (
    EVALUATOR,
    STRATEGY,
    assert_same_search_state,
    copy_each_epoch,
    run_worker,
    tiny_search,
    training_calls,
)
from tiny_data import tiny_digits, tiny_evaluator

from nni_hrnas.search import load_searched_model
from nni_hrnas.strategy import CheckpointError, ProgressiveShrinking, SearchDiverged
from nni_hrnas.strategy.checkpoint import CHECKPOINT_NAME, save_searched
from nni_hrnas.strategy.loop import configure_optimizers
from search_spaces import HRNASSpace

SIZE = (3, 32, 32)


def test_raising_lambda_gives_fewer_macs(checked_rebuilds):
    macs = []
    for lam in (0.01, 0.05, 0.2):
        result = tiny_search(lambda_=lam).result
        macs.append(result["macs"])
        assert result["trajectory"][0]["macs"] == result["macs_max"]
        assert [t["step"] for t in result["trajectory"]] == [0, 1, 2, 3]
        cost = result["search_cost"]
        assert cost["epochs"] == 3 and cost["images_seen"] == 3 * 96 and cost["mac_epochs"] > 0
    assert macs[0] > macs[1] > macs[2], macs
    assert len(checked_rebuilds) >= 10  # every prune step that removed units was checked against the mask


@pytest.fixture
def checked_rebuilds(monkeypatch):
    """Check, at every prune step of a search, that the rebuilt network equals the masked one."""
    from test_prune import masked_copy

    import nni_hrnas.strategy.loop as loop

    original = loop.rebuild
    checked = []
    x = torch.randn(2, *SIZE, generator=torch.Generator().manual_seed(0))

    def checked_rebuild(net, keep):
        new = original(net, keep)
        masked = masked_copy(net, keep)
        with torch.no_grad():
            torch.testing.assert_close(new.eval()(x), masked.eval()(x), rtol=1e-4, atol=1e-5)
        new.train(net.training)
        checked.append(sum(new.arch.values()))
        return new

    monkeypatch.setattr(loop, "rebuild", checked_rebuild)
    return checked


def test_shrinking_then_training_keeps_the_final_architecture(checked_rebuilds, monkeypatch):
    """shrink_epochs=2 of 4: prune steps after epochs 1 and 2 only; epochs 3 and 4 train the final
    architecture without penalty, with an optimizer and schedule set up for those 2 epochs."""
    import nni_hrnas.strategy.loop as loop

    phases = []
    original = loop.configure_optimizers

    def spy(module, epochs, steps_per_epoch, lr_scale=1.0):
        phases.append(epochs)
        return original(module, epochs, steps_per_epoch, lr_scale)

    monkeypatch.setattr(loop, "configure_optimizers", spy)
    result = tiny_search(lambda_=0.05, epochs=4, shrink_epochs=2).result
    trajectory = result["trajectory"]
    assert phases == [2, 2]
    assert [t["epoch"] for t in trajectory] == [0, 1, 2, 3, 4]
    assert trajectory[2]["macs"] < result["macs_max"]  # it did shrink
    assert all(t["units_removed"] == 0 and t["lambda"] == 0.0 for t in trajectory[3:])
    assert trajectory[2]["macs"] == trajectory[3]["macs"] == trajectory[4]["macs"] == result["macs"]
    assert result["metric"] == trajectory[-1]["metric"] and 0.0 <= result["metric"] <= 1.0
    assert result["shrink_epochs"] == 2 and result["search_cost"]["images_seen"] == 4 * 96


def _learning_rates(monkeypatch, **settings) -> tuple[list[float], dict]:
    """The learning rate of every optimizer step of a search on `tiny`, and its result."""
    import nni_hrnas.strategy.loop as loop

    rates: list[float] = []

    def recording(module, epochs, steps_per_epoch, lr_scale=1.0):
        optimizer, scheduler, interval = configure_optimizers(module, epochs, steps_per_epoch, lr_scale)
        step = optimizer.step

        def recorded_step(*args, **kwargs):
            rates.append(optimizer.param_groups[0]["lr"])
            return step(*args, **kwargs)

        optimizer.step = recorded_step
        return optimizer, scheduler, interval

    monkeypatch.setattr(loop, "configure_optimizers", recording)
    return rates, tiny_search(**settings).result


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_the_final_architecture_trains_at_the_scaled_learning_rates(monkeypatch, schedule):
    """final_lr_scale=0.25, shrink_epochs=2 of 4: each step of the last two epochs runs at a quarter of
    the rate the same step runs at without it, all along the schedule (the cosine decay, OneCycle's
    warm-up and decay); the shrinking epochs' steps are unchanged."""
    settings = dict(lambda_=0.05, epochs=4, shrink_epochs=2, evaluator_kwargs=dict(schedule=schedule))
    plain, _ = _learning_rates(monkeypatch, **settings)
    scaled, result = _learning_rates(monkeypatch, final_lr_scale=0.25, **settings)
    shrinking = 2 * 96 // EVALUATOR["batch_size"]
    assert len(plain) == len(scaled) == 2 * shrinking
    assert len(set(plain[shrinking:])) > 3  # the schedule moves
    assert scaled[:shrinking] == plain[:shrinking]
    assert scaled[shrinking:] == pytest.approx([0.25 * rate for rate in plain[shrinking:]], rel=1e-12)
    assert result["final_lr_scale"] == 0.25


def test_resume_in_the_training_phase_runs_only_the_epochs_left(tmp_path):
    """Stopped after epoch 3 (training phase), the resumed search trains one epoch with the
    training-phase optimizer restored, and ends where an uninterrupted search ends."""

    class Stop(Exception):
        pass

    def stop_after_3(info):
        if info["epoch"] == 3:
            raise Stop

    settings = dict(lambda_=0.05, epochs=4, shrink_epochs=2, final_lr_scale=0.5)
    with pytest.raises(Stop):
        tiny_search(checkpoint_dir=tmp_path, on_epoch_end=stop_after_3, **settings)
    steps = []
    evaluator = tiny_evaluator(**EVALUATOR)
    original = evaluator.module.training_step

    def counted(batch, i):
        steps.append(i)
        return original(batch, i)

    evaluator.module.training_step = counted
    resumed = tiny_search(evaluator=evaluator, checkpoint_dir=tmp_path, resume=True, **settings)
    assert len(steps) == 96 // EVALUATOR["batch_size"]  # one epoch, not four
    whole = tiny_search(**settings)
    assert resumed.result["arch"] == whole.result["arch"]
    for (name, a), b in zip(
        resumed.model.state_dict().items(), whole.model.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, msg=name)


def test_the_exported_network_is_the_ema_with_recalibrated_bn_statistics(tmp_path):
    """The search exports the EMA network (the last checkpoint holds it beside the raw one), whose BN
    statistics the last prune step re-estimated: with as many recalibration batches as the epoch has, the
    stem BN's running mean is the mean of its own stem convolution over the 96 training images (equal
    batches: the mean of the batch means), not a moving average of the training steps' batches."""
    strategy = tiny_search(lambda_=0.05, epochs=1, recalibration_batches=6, checkpoint_dir=tmp_path)
    net = strategy.model
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    exported = net.state_dict()
    assert list(exported) == list(saved["ema"])
    for name, value in exported.items():
        assert torch.equal(value, saved["ema"][name]), name
    raw_differs = [
        n for n, v in exported.items() if v.is_floating_point() and not torch.equal(v, saved["model"][n])
    ]
    assert any(n.endswith(".weight") for n in raw_differs), (
        "the EMA equals the raw network: the check is void"
    )
    images = tiny_digits(EVALUATOR["n_train"], seed=1).tensors[0]
    with torch.no_grad():
        expected = net.stem[0](images).mean((0, 2, 3))
    torch.testing.assert_close(net.stem[1].running_mean, expected, rtol=1e-4, atol=1e-5)


def test_after_shrinking_the_exported_bn_statistics_are_the_ema_of_the_live_ones():
    """Training phase (epoch 2 of 2): the exported stem BN's running mean is the EMA, rebuilt here
    from its definition (decay min(0.9, (1 + n) / (10 + n)) from the phase's first step, started
    at the live network's value then), of the live network's running mean after each training step,
    not a recalibration on ``recalibration_batches`` batches (as after a prune step), which would
    give the mean of the stem convolution over those batches."""
    evaluator = tiny_evaluator(**EVALUATOR)
    module, original = evaluator.module, evaluator.module.training_step
    before, after = [], []

    def recorded(batch, i):
        before.append(module.model.stem[1].running_mean.detach().clone())
        out = original(batch, i)
        after.append(module.model.stem[1].running_mean.detach().clone())
        return out

    module.training_step = recorded
    strategy = tiny_search(
        evaluator=evaluator, lambda_=0.05, epochs=2, shrink_epochs=1, recalibration_batches=6
    )
    steps = EVALUATOR["n_train"] // EVALUATOR["batch_size"]
    assert len(after) == 2 * steps
    expected = before[steps]  # the EMA starts as a copy of the network the phase trains
    for n, live in enumerate(after[steps:], start=1):
        decay = min(STRATEGY["ema_decay"], (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * live
    exported = strategy.model.stem[1].running_mean
    torch.testing.assert_close(exported, expected, rtol=1e-5, atol=1e-6)
    images = tiny_digits(EVALUATOR["n_train"], seed=1).tensors[0]
    with torch.no_grad():
        recalibrated = strategy.model.stem[0](images).mean((0, 2, 3))
    assert not torch.allclose(exported, recalibrated, rtol=1e-3, atol=1e-4), "the two would not differ"


def test_budget_mode_lands_within_five_percent(checked_rebuilds):
    space = HRNASSpace.from_preset("tiny")
    full = space.freeze(space.max_sample()).cost(SIZE).macs
    target = int(0.45 * full)
    result = tiny_search(lambda_=0.02, target_macs=target).result
    assert len(checked_rebuilds) >= 2  # the live and the EMA network at each prune step that removed units
    error = (result["macs"] - target) / target
    assert abs(error) <= 0.05, (result["macs"], target)
    assert result["target"]["side"] == ("below" if error < 0 else "above" if error > 0 else "exact")
    assert result["target"]["within_tolerance"]


def test_degeneration_exports_and_reloads_through_nni(tmp_path, free_port):
    """Lambda so large that whole blocks vanish: still a valid network, exported and reloaded exactly."""
    space = HRNASSpace.from_preset("tiny")
    strategy = ProgressiveShrinking(**{**STRATEGY, "lambda_": 50.0})
    experiment = NasExperiment(space, tiny_evaluator(**EVALUATOR), strategy)
    experiment.config.experiment_working_directory = str(tmp_path / "nni")
    try:
        experiment.run(port=free_port)
        arch = experiment.export_top_models(formatter="dict")[0]
        model = experiment.export_top_models(formatter="instance")[0]
    finally:
        experiment.stop()
    empty = [b for b, blk in model.blocks.items() if not blk.paths and blk.transformer is None]
    assert len(empty) >= 5, arch  # whole blocks are their shortcut
    assert sum(arch.values()) < 0.2 * sum(space.max_sample().values())
    rebuilt = space.freeze(arch)  # the arch dict is a sample of the space
    assert rebuilt.arch == model.arch
    result = dict(strategy.result, config=dataclasses.asdict(space.config))
    save_searched(tmp_path / "run", arch, model, result)
    reloaded = load_searched_model(tmp_path / "run")
    x = torch.randn(2, *SIZE)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x), model(x), rtol=0, atol=0)
    assert json.loads((tmp_path / "run" / "result.json").read_text())["macs"] == model.cost(SIZE).macs
    assert model.cost(SIZE).macs == torch_counted_macs(model, x[:1])


def _nan_loss_at_call(module, call: int) -> None:
    """Make the module's ``call``-th training step return a NaN loss."""
    original = type(module).training_step
    calls = {"n": 0}

    def training_step(self, batch, batch_idx):
        calls["n"] += 1
        loss = original(self, batch, batch_idx)
        return loss * float("nan") if calls["n"] == call else loss

    module.training_step = types.MethodType(training_step, module)


def test_nan_loss_stops_naming_step_and_keeps_checkpoint(tmp_path):
    evaluator = tiny_evaluator(**EVALUATOR)
    _nan_loss_at_call(evaluator.module, 6 + 3)  # 9th call: epoch 1, batch 2
    with pytest.raises(
        SearchDiverged, match=r"epoch 1, batch 2 .*" + CHECKPOINT_NAME + r" \(end of epoch 1\)"
    ):
        tiny_search(evaluator, lambda_=0.05, checkpoint_dir=tmp_path)
    saved = torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)
    assert saved["state"]["epoch"] == 1  # the last good checkpoint is kept as it was


def _count_training_steps(module) -> dict:
    original = type(module).training_step
    calls = {"n": 0}

    def training_step(self, batch, batch_idx):
        calls["n"] += 1
        return original(self, batch, batch_idx)

    module.training_step = types.MethodType(training_step, module)
    return calls


# budget mode, so that the lambda scale moves, and a cosine schedule, so that the scheduler state matters
RESUMED = dict(lambda_=0.05, target_macs=700_000)
COSINE = dict(schedule="cosine", n_train=48, n_val=16)  # 3 training steps an epoch


def test_resume_after_a_nan_stop_continues_where_it_stopped(tmp_path):
    """In-process resume: the resumed search runs only the epoch left, and its optimizer, scheduler, EMA,
    lambda scale, counters and RNG equal those of an uninterrupted search, tensor for tensor."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    reference = tiny_search(
        evaluator_kwargs=COSINE, checkpoint_dir=ref, on_epoch_end=copy_each_epoch(ref), **RESUMED
    ).result
    evaluator = tiny_evaluator(**{**EVALUATOR, **COSINE})
    _nan_loss_at_call(evaluator.module, 8)  # epoch 2 (0-based), its second step
    with pytest.raises(SearchDiverged):
        tiny_search(evaluator, checkpoint_dir=run, on_epoch_end=copy_each_epoch(run), **RESUMED)
    stopped = torch.load(run / CHECKPOINT_NAME, weights_only=True)
    assert stopped["state"]["epoch"] == 2
    assert_same_search_state(stopped, torch.load(ref / "epoch2.pt", weights_only=True))
    assert stopped["state"]["lambda_scale"] != 1.0  # the budget moved it: restoring it matters

    evaluator = tiny_evaluator(**{**EVALUATOR, **COSINE})
    calls = _count_training_steps(evaluator.module)
    resumed = tiny_search(evaluator, checkpoint_dir=run, resume=True, **RESUMED).result
    assert calls["n"] == 3  # the last epoch only
    assert resumed["resumed_at_epoch"] == 2 and reference["resumed_at_epoch"] is None
    assert_same_search_state(
        torch.load(run / CHECKPOINT_NAME, weights_only=True), torch.load(ref / "epoch3.pt", weights_only=True)
    )
    assert resumed["arch"] == reference["arch"] and resumed["metric"] == reference["metric"]
    assert resumed["search_cost"]["images_seen"] == reference["search_cost"]["images_seen"] == 3 * 48


def test_bad_settings_are_clear_errors():
    for kwargs, match in [
        ({"lambda_": -1e-4}, "lambda_"),
        ({"eps": 0.0}, "eps"),
        ({"eps": 1.0}, "eps"),
        ({"prune_every": 0}, "prune_every"),
        ({"prune_every": 1.5}, "prune_every"),
        ({"target_macs": -5}, "target_macs"),
        ({"lambda_": float("nan")}, "lambda_"),
    ]:
        with pytest.raises(ValueError, match=match):
            ProgressiveShrinking(**kwargs)


def test_target_below_the_reachable_minimum_is_refused():
    with pytest.raises(ValueError, match=r"below what this network can reach.*stem, shortcuts and head"):
        tiny_search(lambda_=0.05, target_macs=1000)


def test_corrupt_and_mismatched_checkpoints_are_refused_and_kept(tmp_path):
    tiny_search(lambda_=0.05, epochs=1, checkpoint_dir=tmp_path)
    path = tmp_path / CHECKPOINT_NAME
    good = path.read_bytes()
    with pytest.raises(CheckpointError, match="already exists"):  # no silent overwrite
        tiny_search(lambda_=0.05, epochs=1, checkpoint_dir=tmp_path)
    with pytest.raises(CheckpointError, match=r"another search; differs in lambda"):
        tiny_search(lambda_=0.1, epochs=1, checkpoint_dir=tmp_path, resume=True)
    assert path.read_bytes() == good
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        tiny_search(lambda_=0.05, epochs=1, checkpoint_dir=tmp_path, resume=True)
    assert path.stat().st_size == len(good) // 2  # left in place for the user


def test_sigkill_and_resume_continues_where_it_was_killed(tmp_path):
    """A search process killed with SIGKILL at a chosen training step (epoch 2, its second step)
    resumes from the end of epoch 2: it runs only the steps left, and ends in the state of an
    uninterrupted search, tensor for tensor."""
    ref, run = tmp_path / "ref", tmp_path / "run"
    base = dict(epochs=4, evaluator=dict(schedule="cosine"), **{"lambda": 0.05, "target_macs": 700_000})
    done = run_worker(dict(base, dir=str(ref)))
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    killed = run_worker(dict(base, dir=str(run), kill_at_call=2 * 3 + 2))
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-3000:]
    assert not (run / "out.json").exists()
    at_kill = torch.load(run / CHECKPOINT_NAME, weights_only=True)
    assert at_kill["state"]["epoch"] == 2
    assert_same_search_state(at_kill, torch.load(ref / "epoch2.pt", weights_only=True))

    resumed = run_worker(dict(base, dir=str(run), resume=True))
    assert resumed.returncode == 0, resumed.stderr.decode()[-3000:]
    assert training_calls(run) == 8 + 2 * 3  # 8 steps before the kill, then epochs 3 and 4 only
    out, reference = (json.loads((d / "out.json").read_text()) for d in (run, ref))
    assert out["resumed_at_epoch"] == 2
    assert_same_search_state(
        torch.load(run / CHECKPOINT_NAME, weights_only=True), torch.load(ref / "epoch4.pt", weights_only=True)
    )
    assert out["arch"] == reference["arch"] and out["metric"] == reference["metric"]


def test_path_overhead_removes_whole_paths():
    """Eq. 7 adapted to latency: at the same MACs (budget mode), a search that charges each kernel
    path a fixed overhead keeps far fewer paths than the MAC-only search."""
    runs = {po: tiny_search(lambda_=0.05, path_overhead=po, target_macs=500_000).result for po in (0.0, 2e5)}
    paths = {
        po: sum(1 for k, v in r["arch"].items() if v and not k.endswith("_tok")) for po, r in runs.items()
    }
    assert all(r["target"]["within_tolerance"] for r in runs.values())
    assert runs[2e5]["path_overhead"] == 2e5
    assert paths[2e5] < paths[0.0] / 2, paths


def test_min_path_width_leaves_no_thinner_path_in_the_searched_network():
    """At the same budget, the fine-grained search leaves paths of 1-3 channels; with a minimum
    width of 4 none is left, the budget is still met, and the run records the setting."""
    runs = {m: tiny_search(lambda_=0.05, target_macs=500_000, min_path_width=m).result for m in (1, 4)}
    thin = {m: sorted(v for v in r["arch"].values() if 0 < v < 4) for m, r in runs.items()}
    assert thin[1], "the plain search leaves thin paths here: the minimum has something to remove"
    assert thin[4] == []
    assert all(r["target"]["within_tolerance"] for r in runs.values())
    assert runs[4]["min_path_width"] == 4


@pytest.mark.parametrize("task_name", ["digits_cls", "digits_seg"])
def test_each_evaluation_starts_from_a_clean_metric(task_name):
    """The strategy evaluates after every prune step: each metric is that network's alone (a task
    that accumulates in validation_step resets in on_validation_epoch_start), checked by hand."""
    from nni_hrnas.strategy.loop import evaluate
    from nni_hrnas.tasks.registry import get_task

    spec = get_task(task_name)
    _, val = spec.make_datasets(smoke=True)
    loader = torch.utils.data.DataLoader(val, batch_size=16)
    space = HRNASSpace.from_preset(
        spec.default_preset, input_size=spec.input_size(True), num_outputs=spec.num_outputs
    )
    nets = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        nets.append(space.freeze(space.max_sample()).eval())
    module = spec.make_lightning_module()
    evaluate(module, nets[0], loader)
    after_another = evaluate(module, nets[1], loader)
    assert after_another == evaluate(spec.make_lightning_module(), nets[1], loader)
    if task_name == "digits_cls":
        with torch.no_grad():
            hits = sum(int((nets[1](x).argmax(1) == y).sum()) for x, y in loader)
        assert after_another == pytest.approx(hits / len(val))
