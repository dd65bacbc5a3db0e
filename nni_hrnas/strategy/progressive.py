"""ProgressiveShrinking: the HR-NAS search (paper Sec. 3.3) as an NNI strategy.

Used like NNI's own strategies::

    exp = NasExperiment(space, evaluator, ProgressiveShrinking(lambda_=1.4e-4, epochs=10, prune_every=2))
    exp.run()
    arch = exp.export_top_models(formatter='dict')[0]      # space.freeze(arch) rebuilds it
    model = exp.export_top_models(formatter='instance')[0]  # the searched network with its trained weights

It is a one-shot strategy (so NNI runs it in-process with the sequential engine and no web
server), but it does not turn the space into NNI mixed operations: it trains the space's largest
network as a plain PyTorch network, and physically shrinks it as it goes. The evaluator's
Lightning module supplies the task: its ``training_step`` (the task loss), ``validation_step`` and
``compute_metric`` (the metric) and ``configure_optimizers``. The training loop is the strategy's
own (not a Lightning ``Trainer``), because the network, the optimizer state and the EMA are
replaced at every prune step and because a killed search must resume exactly.

A search has two phases. **Shrinking** (the first ``shrink_epochs``, all epochs by default, as
in the paper): each epoch, loss = task + lambda(t) * sum_i cost_i |gamma_i| (costs at the training input size,
normalised so the supernet's mean unit cost is 1; token costs recomputed from the tokens still
alive), lambda ramping linearly from 0 over ``warmup_epochs``. Every ``prune_every`` epochs and
after the last: BN statistics recalibrated on a few training batches, units with |gamma| < eps
removed, smaller network rebuilt (weights, optimizer state and EMA sliced by index), the EMA
network evaluated. **Training** (the epochs after ``shrink_epochs``, if any): the final
architecture is trained with the task loss alone, with an optimizer, learning-rate schedule and
EMA set up afresh for those epochs, so that the search returns a trained network rather than a
freshly pruned one; the EMA network is evaluated every ``prune_every`` epochs and at the end. With ``target_macs`` the penalty is scaled up or down to follow a path to the
target, no prune step goes below it (it removes fewer of the units under eps instead), and if
the MACs are still above the target after the last shrinking epoch, that step removes the least
important units until they are at or just under it. Either way the result lands within one unit's
cost of the target; ``result['target']`` says on which side and how far.
"""

from __future__ import annotations

import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nni.nas.evaluator.pytorch import Lightning
from nni.nas.oneshot.pytorch.strategy import OneShotStrategy
from nni.nas.space import ModelStatus, RawFormatModelSpace
from torch import nn

from .checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint, save_checkpoint
from .ema import EMA
from .prune import (
    budget_keep,
    ranked_units,
    rebuild,
    recalibrate_bn,
    slice_optimizer_,
    threshold_keep,
    units_removed,
    widths_after,
)
from .units import WidthCost, clip_zero_crossings_, mean_unit_macs, penalty, unit_groups

_logger = logging.getLogger(__name__)


class SearchDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class _TrainerShim:
    """What ``configure_optimizers`` of the task modules reads from a Lightning trainer."""

    def __init__(self, max_epochs: int, steps_per_epoch: int) -> None:
        self.max_epochs = max_epochs
        self.estimated_stepping_batches = max_epochs * steps_per_epoch
        self.sanity_checking = False
        self.barebones = True


@dataclass
class _State:
    epoch: int = 0  # the next epoch to run
    global_step: int = 0
    prune_step: int = 0
    lambda_scale: float = 1.0
    normaliser: float = 1.0
    start_macs: int = 0
    wall_seconds: float = 0.0
    images_seen: int = 0
    mac_epochs: float = 0.0
    macs_processed: float = 0.0
    metric: float = float("nan")
    trajectory: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def minimum_macs(space, input_size: tuple[int, int, int]) -> int:
    """The fewest MACs a search of ``space`` can reach: every unit removed (stem, shortcuts and head)."""
    from search_spaces import HRNASNetwork

    with torch.device("meta"):
        empty = HRNASNetwork(space.config, {k: 0 for k in space.max_sample()})
    return int(empty.cost(tuple(input_size)).macs)


def _check_number(name: str, value: Any, low: float | None = None, high: float | None = None,
                  low_open: bool = False, high_open: bool = False, integer: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
        hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} {' and '.join(x for x in (lo, hi) if x)}, got {value!r}")


class ProgressiveShrinking(OneShotStrategy):
    """Resource-aware fine-grained progressive shrinking (HR-NAS, CVPR 2021, Sec. 3.3).

    Args:
        lambda_: weight of the resource-aware L1 penalty (Eq. 7), >= 0.
        eps: units with |gamma| < eps are removed at each prune step; 0 < eps < 1.
        prune_every: epochs between prune steps (>= 1); the last epoch always ends with one.
        warmup_epochs: lambda ramps linearly from 0 to ``lambda_`` over these (fractional) epochs.
        epochs: search epochs (default: the evaluator trainer's ``max_epochs``).
        target_macs: optional MACs budget: the result lands next to it (just above when the
            search reached it early, at or just below when the final step had to prune to it;
            ``result['target']`` says which), within ``target_tolerance``; a budget below the
            network's minimum (stem, shortcuts and head alone) is an error.
        input_size: (C, H, W) the unit costs are computed at (default: the training samples' size).
        ema_decay: decay of the weight EMA used for evaluation and export.
        recalibration_batches: training batches used to recalibrate BN statistics.
        seed: seeds the weights, the data order and every random draw, per epoch.
        checkpoint_dir: where ``search_checkpoint.pt`` is written after every epoch (an existing
            one is never overwritten unless ``resume``).
        resume: continue from the checkpoint in ``checkpoint_dir`` (start fresh if there is none).
        target_tolerance: allowed relative distance to ``target_macs``.
        path_overhead: fixed cost of each kernel path and transformer in MAC-equivalents per image
            (Eq. 7 adapted to latency; :func:`nni_hrnas.latency.measure_path_overhead` measures it),
            shared by the path's remaining units so that removing whole paths pays. 0 (the default)
            is the paper's MAC-only cost.
        shrink_epochs: epochs of the shrinking phase (default: all ``epochs``, the paper's schedule);
            the remaining epochs train the final architecture without penalty or pruning.
        on_epoch_end: called after every epoch, once its checkpoint is written, with a dict
            (``epoch``, ``epochs``, ``macs``, ``params``, ``metric``: NaN if no prune step evaluated it
            this epoch, ``lambda``). It may raise to stop the search (e.g. ``optuna.TrialPruned``):
            the exception reaches the caller and the checkpoint stays resumable.
    """

    def __init__(self, lambda_: float = 1.4e-4, eps: float = 1e-3, prune_every: int = 1,
                 warmup_epochs: float = 0.0, epochs: int | None = None, target_macs: float | None = None,
                 input_size: tuple[int, int, int] | None = None, ema_decay: float = 0.999,
                 recalibration_batches: int = 10, seed: int = 0, checkpoint_dir: str | Path | None = None,
                 resume: bool = False, target_tolerance: float = 0.05, path_overhead: float = 0.0,
                 shrink_epochs: int | None = None,
                 on_epoch_end: Callable[[dict[str, Any]], None] | None = None) -> None:
        super().__init__()
        _check_number("lambda_", lambda_, low=0.0)
        _check_number("eps", eps, low=0.0, high=1.0, low_open=True, high_open=True)
        _check_number("prune_every", prune_every, low=1, integer=True)
        _check_number("warmup_epochs", warmup_epochs, low=0.0)
        if epochs is not None:
            _check_number("epochs", epochs, low=1, integer=True)
        if shrink_epochs is not None:
            _check_number("shrink_epochs", shrink_epochs, low=1, integer=True)
        if target_macs is not None:
            _check_number("target_macs", target_macs, low=0.0, low_open=True)
        _check_number("ema_decay", ema_decay, low=0.0, high=1.0, high_open=True)
        _check_number("recalibration_batches", recalibration_batches, low=1, integer=True)
        _check_number("seed", seed, low=0, integer=True)
        _check_number("target_tolerance", target_tolerance, low=0.0, high=1.0, low_open=True, high_open=True)
        _check_number("path_overhead", path_overhead, low=0.0)
        if input_size is not None and (len(tuple(input_size)) != 3 or any(int(v) < 1 for v in input_size)):
            raise ValueError(f"input_size must be (channels, height, width), got {input_size!r}")
        self.lambda_, self.eps, self.prune_every = float(lambda_), float(eps), int(prune_every)
        self.warmup_epochs, self.epochs = float(warmup_epochs), None if epochs is None else int(epochs)
        self.target_macs = None if target_macs is None else int(target_macs)
        self.input_size = None if input_size is None else tuple(int(v) for v in input_size)
        self.ema_decay, self.recalibration_batches = float(ema_decay), int(recalibration_batches)
        self.seed, self.resume, self.target_tolerance = int(seed), bool(resume), float(target_tolerance)
        self.path_overhead = float(path_overhead)
        self.shrink_epochs = None if shrink_epochs is None else int(shrink_epochs)
        self.on_epoch_end = on_epoch_end
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.result: dict[str, Any] | None = None
        self.model: nn.Module | None = None
        self._final: RawFormatModelSpace | None = None

    # ---- NNI strategy interface ---------------------------------------------------------------

    def extra_repr(self) -> str:
        return (f"lambda_={self.lambda_}, eps={self.eps}, prune_every={self.prune_every}, "
                f"warmup_epochs={self.warmup_epochs}, shrink_epochs={self.shrink_epochs}, "
                f"target_macs={self.target_macs}")

    def _initialize(self, model_space, engine):
        if not isinstance(model_space, RawFormatModelSpace):
            raise TypeError("ProgressiveShrinking needs the raw model format (NasExperiment picks it for one-shot "
                            f"strategies); got {type(model_space).__name__}")
        space = model_space.model_space
        if not all(hasattr(space, a) for a in ("config", "max_sample", "freeze")):
            raise TypeError(f"ProgressiveShrinking searches an HRNASSpace, got {type(space).__name__}")
        evaluator = model_space.evaluator
        if not isinstance(evaluator, Lightning):
            raise TypeError(f"ProgressiveShrinking needs an NNI Lightning evaluator, got {type(evaluator).__name__}")
        if evaluator.train_dataloaders is None or evaluator.val_dataloaders is None:
            raise ValueError("the evaluator needs both training and validation data loaders")
        self._space, self._evaluator = space, evaluator
        if self.input_size is None:
            self.input_size = self._sample_input_size()
        self._supernet_arch = dict(space.max_sample())
        self.minimum_macs = self._minimum_macs()
        if self.target_macs is not None and self.target_macs < self.minimum_macs:
            raise ValueError(
                f"target_macs={self.target_macs:,} is below what this network can reach: the stem, shortcuts and "
                f"head alone cost {self.minimum_macs:,} MACs at input size {self.input_size} (every searched "
                f"unit removed); ask for at least {self.minimum_macs:,}")
        if self.target_macs is not None:
            with torch.device("meta"):
                supernet_macs = self._build(dict(self._supernet_arch)).cost(self.input_size).macs
            if self.target_macs > supernet_macs:
                _logger.warning("target_macs=%s is above the supernet's %s MACs: nothing will be pruned below the "
                                "supernet, and the result stays under the target", f"{self.target_macs:,}",
                                f"{supernet_macs:,}")
        return model_space

    def _run(self) -> None:
        with warnings.catch_warnings():  # the task module's self.log() has no trainer to log to here
            warnings.filterwarnings("ignore", message=r".*self\.log\(\).*")
            warnings.filterwarnings("ignore", message=r".*self\.trainer.*")
            self._search()

    def list_models(self, sort: bool = True, limit: int | None = 1) -> Iterator[RawFormatModelSpace]:
        """The searched network: ``.sample`` is its architecture dict, ``executable_model()`` the trained network."""
        if self._final is None:
            raise RuntimeError("ProgressiveShrinking has not finished a search yet")
        yield self._final

    def state_dict(self) -> dict:
        path = self.checkpoint_path
        return {"checkpoint": str(path)} if path is not None and path.exists() else {}

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict.get("checkpoint"):
            self.checkpoint_dir = Path(state_dict["checkpoint"]).parent
            self.resume = True

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT_NAME

    # ---- helpers ------------------------------------------------------------------------------

    def _sample_input_size(self) -> tuple[int, int, int]:
        dataset = self._evaluator.train_dataloaders.dataset
        x = dataset[0]
        x = x[0] if isinstance(x, (tuple, list)) else x
        return tuple(int(v) for v in x.shape)

    def _build(self, arch: dict[str, int]) -> nn.Module:
        from search_spaces import HRNASNetwork

        return HRNASNetwork(self._space.config, arch)

    def _minimum_macs(self) -> int:
        return minimum_macs(self._space, self.input_size)

    def _round_up(self, label: str, count: int) -> int:
        return self._space.round_up({label: count})[label]

    def _granular(self) -> bool:
        config = self._space.config
        return config.granularity > 1 or config.token_granularity > 1

    def _fingerprint(self, epochs: int) -> dict[str, Any]:
        return {"config": repr(self._space.config), "lambda": self.lambda_, "eps": self.eps,
                "prune_every": self.prune_every, "warmup_epochs": self.warmup_epochs, "epochs": epochs,
                "target_macs": self.target_macs, "seed": self.seed, "input_size": list(self.input_size),
                "ema_decay": self.ema_decay, "recalibration_batches": self.recalibration_batches,
                "path_overhead": self.path_overhead, "shrink_epochs": self.shrink_epochs}

    def _shrink_end(self, epochs: int) -> int:
        """The epoch the shrinking phase ends at (``epochs`` when the whole search shrinks)."""
        return epochs if self.shrink_epochs is None else min(self.shrink_epochs, epochs)

    def _seed(self, epoch: int, salt: int = 0) -> int:
        return (self.seed * 1_000_003 + epoch * 7919 + salt) % (2**31 - 1)

    def _reseed(self, epoch: int) -> None:
        s = self._seed(epoch)
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)

    def _loader(self, epoch: int, salt: int = 0) -> torch.utils.data.DataLoader:
        source = self._evaluator.train_dataloaders
        dataset = source.dataset
        g = torch.Generator().manual_seed(self._seed(epoch, salt))
        order = torch.randperm(len(dataset), generator=g).tolist()
        return torch.utils.data.DataLoader(dataset, batch_size=source.batch_size or 1, sampler=order,
                                           drop_last=bool(source.drop_last), collate_fn=source.collate_fn,
                                           num_workers=0)

    def _calibration_inputs(self, epoch: int) -> list[torch.Tensor]:
        inputs = []
        for batch in self._loader(epoch, salt=17):
            inputs.append(batch[0] if isinstance(batch, (tuple, list)) else batch)
            if len(inputs) >= self.recalibration_batches:
                break
        return inputs

    def _configure_optimizers(self, module, epochs: int, steps_per_epoch: int):
        module._trainer = _TrainerShim(epochs, steps_per_epoch)
        try:
            config = module.configure_optimizers()
        finally:
            module._trainer = None
        scheduler, interval = None, "step"
        if isinstance(config, torch.optim.Optimizer):
            return config, None, interval
        if isinstance(config, (list, tuple)) and len(config) == 2 and isinstance(config[0], (list, tuple)):
            optimizers, schedulers = config
            config = {"optimizer": optimizers[0], "lr_scheduler": schedulers[0] if schedulers else None}
        elif isinstance(config, (list, tuple)):
            config = {"optimizer": config[0]}
        if not isinstance(config, dict) or "optimizer" not in config:
            raise TypeError(f"configure_optimizers returned {type(config).__name__}; ProgressiveShrinking "
                            "supports an optimizer, a dict with 'optimizer' or ([optimizer], [scheduler])")
        sched = config.get("lr_scheduler")
        if isinstance(sched, dict):
            scheduler, interval = sched.get("scheduler"), sched.get("interval", "epoch")
        elif sched is not None:
            scheduler, interval = sched, "epoch"
        return config["optimizer"], scheduler, interval

    def _evaluate(self, module, model: nn.Module) -> float:
        module.set_model(model)
        model.eval()
        if hasattr(module, "on_validation_epoch_start"):  # tasks that reset their metric state there
            module.on_validation_epoch_start()
        values = []
        with torch.no_grad():
            for i, batch in enumerate(self._evaluator.val_dataloaders):
                out = module.validation_step(batch, i)
                if torch.is_tensor(out) and out.numel() == 1:
                    values.append(float(out))
        if hasattr(module, "compute_metric"):
            return float(module.compute_metric())
        return float(np.mean(values)) if values else float("nan")

    def _macs_params(self, model: nn.Module) -> tuple[int, int]:
        cost = model.cost(self.input_size)
        return int(cost.macs), int(cost.params)

    # ---- the search ---------------------------------------------------------------------------

    def _search(self) -> None:
        module = self._evaluator.module
        epochs = self.epochs or int(self._evaluator.trainer.max_epochs or 1)
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        steps_per_epoch = max(len(self._loader(0)), 1)
        shrink_end = self._shrink_end(epochs)
        fingerprint = self._fingerprint(epochs)
        path = self.checkpoint_path
        payload = None
        if path is not None and path.exists():
            if not self.resume:
                raise CheckpointError(f"a search checkpoint already exists at {path}; resume it (resume=True, "
                                      "--resume) or use another output directory (nothing was overwritten)")
            payload = load_checkpoint(path, fingerprint)
        elif self.resume:
            _logger.info("no checkpoint at %s: starting a fresh search", path)

        state = _State()
        if payload is None:
            self._reseed(-1)
            model = self._build(dict(self._supernet_arch))
            state.normaliser = mean_unit_macs(unit_groups(model, self.input_size, self.path_overhead))
            state.start_macs = self._macs_params(model)[0]
        else:
            try:
                model = self._build(dict(payload["arch"]))
                model.load_state_dict(payload["model"])
            except (KeyError, RuntimeError, TypeError) as exc:
                raise CheckpointError(f"checkpoint {path} does not match this space: {exc}") from exc
        module.set_model(model)
        # each phase has its own optimizer and schedule, set up for that phase's epochs
        training = payload is not None and shrink_end <= int(payload["state"]["epoch"]) < epochs
        phase_epochs = epochs - shrink_end if training else shrink_end
        optimizer, scheduler, interval = self._configure_optimizers(module, phase_epochs, steps_per_epoch)
        ema = EMA(model, self.ema_decay)
        if payload is not None:
            try:
                optimizer.load_state_dict(payload["optimizer"])
                if scheduler is not None and payload.get("scheduler") is not None:
                    scheduler.load_state_dict(payload["scheduler"])
                ema.model.load_state_dict(payload["ema"])
            except (KeyError, ValueError, RuntimeError) as exc:
                raise CheckpointError(f"checkpoint {path} is inconsistent: {exc}") from exc
            ema.updates = int(payload["ema_updates"])
            state = _State(**payload["state"])
            torch.set_rng_state(payload["torch_rng"])
            _logger.info("resumed the search from %s at epoch %d", path, state.epoch)
        else:
            macs, params = self._macs_params(model)
            state.trajectory.append({"step": 0, "epoch": 0, "macs": macs, "params": params, "metric": None,
                                     "units_removed": 0, "lambda": 0.0})

        groups = unit_groups(model, self.input_size, self.path_overhead)
        metric_name = getattr(module, "metric_name", "metric")
        last_good = f"{path} (end of epoch {state.epoch})" if payload is not None else "none (no epoch finished)"

        while state.epoch < epochs:
            epoch = state.epoch
            started = time.perf_counter()
            self._reseed(epoch)
            module.set_model(model)
            model.train()
            macs_now = self._macs_params(model)[0]
            images = 0
            lam = 0.0
            shrinking = epoch < shrink_end
            for i, batch in enumerate(self._loader(epoch)):
                t = epoch + i / steps_per_epoch
                ramp = 1.0 if self.warmup_epochs <= 0 else min(1.0, t / self.warmup_epochs)
                lam = self.lambda_ * state.lambda_scale * ramp if shrinking else 0.0
                out = module.training_step(batch, i)
                task_loss = out["loss"] if isinstance(out, dict) else out
                loss = task_loss + lam * penalty(groups, state.normaliser) if lam > 0 else task_loss
                if not torch.isfinite(loss):
                    raise SearchDiverged(
                        f"the search loss is {loss.item()} (task loss {task_loss.item()}) at epoch {epoch}, "
                        f"batch {i} (global step {state.global_step}); the last good checkpoint is {last_good}, "
                        "kept as it was. Lower the learning rate or lambda and resume")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                before = [g.bn.weight.detach().clone() for g in groups] if lam > 0 else None
                optimizer.step()
                if before is not None:
                    clip_zero_crossings_(groups, before, lam, state.normaliser)
                if scheduler is not None and interval == "step":
                    scheduler.step()
                ema.update(model)
                state.global_step += 1
                images += len(batch[0]) if isinstance(batch, (tuple, list)) else len(batch)
            if scheduler is not None and interval == "epoch":
                scheduler.step()
            state.images_seen += images
            state.mac_epochs += macs_now
            state.macs_processed += float(macs_now) * images

            if shrinking and ((epoch + 1) % self.prune_every == 0 or epoch + 1 == shrink_end):
                model, groups = self._prune_step(state, model, optimizer, ema, epoch, shrink_end, lam, module)
                if epoch + 1 == shrink_end < epochs:  # the final architecture: train it afresh
                    module.set_model(model)
                    optimizer, scheduler, interval = self._configure_optimizers(
                        module, epochs - shrink_end, steps_per_epoch)
                    ema = EMA(model, self.ema_decay)
            elif not shrinking and ((epoch + 1) % self.prune_every == 0 or epoch + 1 == epochs):
                self._evaluate_step(state, ema, epoch, module, model)
            state.epoch = epoch + 1
            state.wall_seconds += time.perf_counter() - started
            if path is not None:
                save_checkpoint(path, {
                    "fingerprint": fingerprint, "arch": dict(model.arch), "model": model.state_dict(),
                    "ema": ema.model.state_dict(), "ema_updates": ema.updates, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "state": state.as_dict(), "torch_rng": torch.get_rng_state()})
                last_good = f"{path} (end of epoch {state.epoch})"
            macs, params = self._macs_params(model)
            _logger.info("epoch %d/%d: %s MACs, %s %.4f, lambda %.3g", state.epoch, epochs, f"{macs:,}",
                         metric_name, state.metric, lam)
            if self.on_epoch_end is not None:
                evaluated = state.trajectory[-1]["epoch"] == state.epoch
                self.on_epoch_end({"epoch": state.epoch, "epochs": epochs, "macs": macs, "params": params,
                                   "metric": state.metric if evaluated else float("nan"), "lambda": lam})

        final = ema.model
        final.eval()
        self.model = final
        self.result = self._result(final, state, epochs, metric_name)
        frozen = RawFormatModelSpace(final, self._evaluator)
        frozen.sample = dict(final.arch)
        frozen.status = ModelStatus.Trained
        frozen.metrics.final = state.metric
        self._final = frozen

    def _evaluate_step(self, state: _State, ema: EMA, epoch: int, module, model: nn.Module) -> None:
        """Evaluate the EMA network in the training phase (BN statistics recalibrated as after a prune)."""
        recalibrate_bn(ema.model, self._calibration_inputs(epoch))
        state.metric = self._evaluate(module, ema.model)
        module.set_model(model)
        macs, params = self._macs_params(model)
        state.trajectory.append({"step": state.prune_step, "epoch": epoch + 1, "macs": macs, "params": params,
                                 "metric": state.metric, "units_removed": 0, "lambda": 0.0})

    def _prune_step(self, state: _State, model: nn.Module, optimizer, ema: EMA, epoch: int, epochs: int,
                    lam: float, module) -> tuple[nn.Module, list]:
        """One prune step; ``epochs`` is the end of the shrinking phase (the last step lands on a budget)."""
        inputs = self._calibration_inputs(epoch)
        recalibrate_bn(model, inputs)
        groups = unit_groups(model, self.input_size, self.path_overhead)
        round_up = self._round_up if self._granular() else None
        keep = threshold_keep(groups, self.eps, round_up)
        if self.target_macs is not None:
            width_cost = WidthCost(model, self.input_size)
            after = width_cost.macs(widths_after(model.arch, keep))
            last = epoch + 1 == epochs
            if after < self.target_macs:  # never prune below the budget: drop fewer of the units below eps
                below = [u for u in ranked_units(groups) if u[0] < self.eps]
                keep = budget_keep(groups, model.arch, width_cost, self.target_macs, below, "floor", round_up)
            elif last and after > self.target_macs:  # the final step lands at or just under the budget
                keep = budget_keep(groups, model.arch, width_cost, self.target_macs, ranked_units(groups),
                                   "ceiling", round_up)
        removed = units_removed(groups, keep)
        if removed:
            new = rebuild(model, keep)
            slice_optimizer_(optimizer, model, new, keep)
            ema.replace(rebuild(ema.model, keep))
            model = new
            module.set_model(model)
            groups = unit_groups(model, self.input_size, self.path_overhead)
        recalibrate_bn(ema.model, inputs)
        state.metric = self._evaluate(module, ema.model)
        module.set_model(model)
        macs, params = self._macs_params(model)
        state.prune_step += 1
        state.trajectory.append({"step": state.prune_step, "epoch": epoch + 1, "macs": macs, "params": params,
                                 "metric": state.metric, "units_removed": removed, "lambda": lam})
        if self.target_macs is not None:
            reach = max(epochs * 0.8, 1.0)
            desired = state.start_macs + (self.target_macs - state.start_macs) * min(1.0, (epoch + 1) / reach)
            if macs > desired * 1.02:
                state.lambda_scale = min(state.lambda_scale * 1.5, 1e4)
            elif macs < desired:
                state.lambda_scale = max(state.lambda_scale / 1.5, 1e-4)
        return model, groups

    def _result(self, model: nn.Module, state: _State, epochs: int, metric_name: str) -> dict[str, Any]:
        macs, params = self._macs_params(model)
        result: dict[str, Any] = {
            "macs": macs, "params": params, "metric": state.metric, "metric_name": metric_name,
            "arch": dict(model.arch), "arch_max": dict(self._supernet_arch),
            "macs_max": state.start_macs, "macs_min": self.minimum_macs,
            "search_seconds": state.wall_seconds, "lambda": self.lambda_, "eps": self.eps,
            "prune_every": self.prune_every, "warmup_epochs": self.warmup_epochs, "epochs": epochs,
            "seed": self.seed, "input_size": list(self.input_size), "strategy": "hrnas",
            "path_overhead": self.path_overhead, "shrink_epochs": self._shrink_end(epochs),
            "search_cost": {"wall_seconds": state.wall_seconds, "epochs": state.epoch,
                            "images_seen": state.images_seen, "mac_epochs": state.mac_epochs,
                            "macs_processed": state.macs_processed},
            "trajectory": state.trajectory, "target_macs": self.target_macs,
        }
        if self.target_macs is not None:
            error = (macs - self.target_macs) / self.target_macs
            result["target"] = {"macs": self.target_macs, "relative_error": error,
                                "side": "below" if error < 0 else ("above" if error > 0 else "exact"),
                                "within_tolerance": abs(error) <= self.target_tolerance,
                                "final_lambda_scale": state.lambda_scale}
            if abs(error) > self.target_tolerance:
                _logger.warning("the search ended %.1f%% %s the target of %s MACs", 100 * abs(error),
                                result["target"]["side"], f"{self.target_macs:,}")
        return result
