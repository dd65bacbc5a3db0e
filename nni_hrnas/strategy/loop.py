"""The training loop of the search, on Lightning Fabric: devices, precision and data parallelism.

:func:`search_worker` runs in every process of a search (one, or one per device). Fabric places the
network and batches, applies the precision (autocast, and the gradient scaler of ``16-mixed``) and
wraps the network for data parallelism; the loop itself is ours because the network is replaced at
every prune step: after a rebuild the new network is set up with Fabric again and the optimizer,
whose state :func:`~.prune.slice_optimizer_` sliced in place, is wrapped again.

All ranks stay in step:

* the data: each epoch one seeded permutation, sharded by rank (``DistributedSampler`` with the
  epoch's seed; in one process the same order as a plain shuffled loader);
* the prune decision: BN statistics are recalibrated on the rank's share of the calibration
  batches and averaged over the ranks, weighted by batches (so they equal a one-process
  recalibration on the same batches), and rank zero's keep decision is broadcast;
* evaluation: each rank validates a disjoint shard of the validation set (no padding), and the
  task module merges what every rank accumulated (``TaskModule.gather_validation``) before it
  computes its metric, so mIoU, top-1 and OKS AP are those of the whole validation set;
* costs: images are summed over the ranks; the checkpoint and the epoch callback are rank zero's;
  a NaN loss on any rank stops every rank at the same step.
"""

from __future__ import annotations

import copy
import ctypes
import logging
import os
import pickle
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from lightning_fabric import Fabric
from lightning_fabric.strategies import DDPStrategy
from torch import nn

from ..threads import enter_forked_rank
from .checkpoint import save_checkpoint
from .ema import EMA
from .policy import PruningPolicy
from .prune import rebuild, recalibrate_bn, slice_optimizer_, units_removed
from .run_state import RunState, rng_state, set_rng_state
from .units import clip_zero_crossings_, mean_unit_work, penalty

if TYPE_CHECKING:  # annotations only: the loop just calls the task module's methods (Lightning not imported)
    from pytorch_lightning import LightningModule

_logger = logging.getLogger("nni_hrnas.strategy")

ACCELERATORS = ("auto", "cpu", "cuda", "gpu")
STRATEGIES = ("auto", "ddp")
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


class SearchDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass(frozen=True)
class DeviceSettings:
    """Where the search trains: Fabric's ``accelerator``, ``devices``, ``num_nodes``, ``strategy``, ``precision``.

    ``devices`` x ``num_nodes`` processes train data-parallel, each on the evaluator's batch size (the
    global batch grows with them). On one machine the processes are forked from this one; on several,
    start one process per device with ``torchrun`` or SLURM and pass the same flags to each.
    ``channels_last`` stores the live network and its inputs channels-last: 1.6x the training throughput
    of the default layout on the CPU (``benchmarks/bench_fabric.py``), so it is the default.
    """

    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.accelerator not in ACCELERATORS:
            raise ValueError(
                f"invalid --accelerator {self.accelerator!r}: choose one of {', '.join(ACCELERATORS)}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(f"invalid strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        precision = {"32": "32-true", "bf16": "bf16-mixed", "16": "16-mixed"}.get(
            str(self.precision), str(self.precision)
        )
        if precision not in PRECISIONS:
            raise ValueError(f"invalid --precision {self.precision!r}: choose one of {', '.join(PRECISIONS)}")
        object.__setattr__(self, "precision", precision)
        for name in ("devices", "num_nodes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"invalid --{name.replace('_', '-')} {value!r}: expected an integer >= 1")

    @property
    def world_size(self) -> int:
        """The number of processes: devices per node times nodes."""
        return self.devices * self.num_nodes

    def resolved_accelerator(self) -> str:
        """'cuda' or 'cpu': what ``auto`` picks on this machine."""
        if self.accelerator == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return "cuda" if self.accelerator == "gpu" else self.accelerator

    def check_machine(self) -> None:
        """Raise ``ValueError`` (naming the flag and the fix) if this machine cannot run these settings."""
        accelerator = self.resolved_accelerator()
        if accelerator == "cuda":
            if not torch.cuda.is_available():
                raise ValueError(
                    f"--accelerator {self.accelerator}: no CUDA device is available on this machine; "
                    "use --accelerator cpu (or auto), or run where torch.cuda.is_available() is True"
                )
            count = torch.cuda.device_count()
            if self.devices > count:
                raise ValueError(
                    f"--devices {self.devices}: this machine has {count} CUDA device(s); use "
                    f"--devices {count} or fewer"
                )
        else:
            cores = os.cpu_count() or 1
            if self.devices > cores:
                raise ValueError(
                    f"--devices {self.devices}: this machine has {cores} CPU core(s), one process "
                    f"each; use --devices {cores} or fewer (or --accelerator cuda on a GPU machine)"
                )
            if self.precision == "16-mixed":
                raise ValueError(
                    "--precision 16-mixed needs a CUDA GPU (fp16 autocast); on the CPU use "
                    "--precision bf16-mixed or 32-true"
                )
        if self.num_nodes > 1 and not any(k in os.environ for k in ("WORLD_SIZE", "SLURM_NTASKS")):
            raise ValueError(
                f"--num-nodes {self.num_nodes}: start one process per device on every node with "
                "torchrun (or SLURM) and the same flags; see the README section on GPUs"
            )

    def flags(self) -> dict[str, Any]:
        """The user-facing settings, as :class:`~nni_hrnas.search.SearchSettings` keyword arguments."""
        return {
            "accelerator": self.accelerator,
            "devices": self.devices,
            "num_nodes": self.num_nodes,
            "precision": self.precision,
            "channels_last": self.channels_last,
        }

    def trainer_kwargs(self) -> dict[str, Any]:
        """The same settings for a Lightning ``Trainer`` (NNI's evaluators), several devices forked from here."""
        return {
            "accelerator": self.resolved_accelerator(),
            "devices": self.devices,
            "num_nodes": self.num_nodes,
            "precision": self.precision,
            **({"strategy": "ddp_fork"} if self.world_size > 1 else {}),
        }

    def fabric(self) -> Fabric:
        """The ``lightning_fabric.Fabric`` of these settings (processes are started by ``launch``)."""
        strategy: Any = "auto"
        if self.world_size > 1:
            # forked from this process (no pickling, and the caller gets rank zero's result back); under
            # torchrun or SLURM the processes exist already and Fabric uses them instead
            strategy = DDPStrategy(start_method="fork")
        return Fabric(
            accelerator=self.resolved_accelerator(),
            devices=self.devices,
            num_nodes=self.num_nodes,
            strategy=strategy,
            precision=self.precision,
        )


class _TrainerShim:
    """What ``configure_optimizers`` of the task modules reads from a Lightning trainer."""

    def __init__(self, max_epochs: int, steps_per_epoch: int) -> None:
        self.max_epochs = max_epochs
        self.estimated_stepping_batches = max_epochs * steps_per_epoch
        self.sanity_checking = False
        self.barebones = True


def configure_optimizers(
    module: LightningModule, epochs: int, steps_per_epoch: int, lr_scale: float = 1.0
) -> tuple[torch.optim.Optimizer, Any, str]:
    """``(optimizer, scheduler or None, interval)`` from the task module's ``configure_optimizers``,
    every learning rate of its schedule times ``lr_scale``."""
    module._trainer = _TrainerShim(epochs, steps_per_epoch)
    try:
        optimizer, scheduler, interval = _optimizer_config(module.configure_optimizers())
    finally:
        module._trainer = None
    if lr_scale != 1.0:
        _scale_learning_rates(optimizer, scheduler, lr_scale)
    return optimizer, scheduler, interval


def _scale_learning_rates(optimizer: torch.optim.Optimizer, scheduler: Any, factor: float) -> None:
    """Multiply every learning rate a schedule starts from or returns to by ``factor``: the groups'
    current, initial and OneCycle bounds, and the base rates that LambdaLR and its kind multiply."""
    for group in optimizer.param_groups:
        for key in ("lr", "initial_lr", "max_lr", "min_lr"):
            if key in group:
                group[key] = group[key] * factor
    if scheduler is not None and hasattr(scheduler, "base_lrs"):
        scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]


def _optimizer_config(config: Any) -> tuple[torch.optim.Optimizer, Any, str]:
    """``(optimizer, scheduler or None, interval)`` from what a Lightning ``configure_optimizers`` returned."""
    if isinstance(config, torch.optim.Optimizer):
        return config, None, "step"
    if isinstance(config, (list, tuple)) and len(config) == 2 and isinstance(config[0], (list, tuple)):
        optimizers, schedulers = config
        config = {"optimizer": optimizers[0], "lr_scheduler": schedulers[0] if schedulers else None}
    elif isinstance(config, (list, tuple)):
        config = {"optimizer": config[0]}
    if not isinstance(config, dict) or "optimizer" not in config:
        raise TypeError(
            f"configure_optimizers returned {type(config).__name__}; ProgressiveShrinking "
            "supports an optimizer, a dict with 'optimizer' or ([optimizer], [scheduler])"
        )
    sched = config.get("lr_scheduler")
    if isinstance(sched, dict):
        return config["optimizer"], sched.get("scheduler"), sched.get("interval", "epoch")
    return config["optimizer"], sched, "epoch"


def _rank_world(fabric) -> tuple[int, int]:
    return (0, 1) if fabric is None else (fabric.global_rank, fabric.world_size)


def _batch_input(batch):
    return batch[0] if isinstance(batch, (tuple, list)) else batch


@torch.no_grad()
def average_bn_statistics(model: nn.Module, seen: int, fabric: Fabric | None) -> None:
    """Average the BN statistics over the ranks, weighted by the batches each saw (``seen``).

    After a recalibration with ``momentum=None`` (the mean of the per-batch statistics) the weighted
    average equals the recalibration of one process on all the ranks' batches; with ``seen=1`` it is
    the plain mean of the ranks' statistics (the training phase's EMA). One collective.
    """
    if fabric is None or fabric.world_size < 2:
        return
    bns = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    flat = [torch.full((1,), float(seen), device=fabric.device, dtype=torch.float64)]
    for m in bns:
        flat += [m.running_mean.double().flatten() * seen, m.running_var.double().flatten() * seen]
    total = fabric.all_reduce(torch.cat(flat), reduce_op="sum")
    count = max(float(total[0]), 1.0)
    offset = 1
    for m in bns:
        n = m.running_mean.numel()
        m.running_mean.copy_((total[offset : offset + n] / count).view_as(m.running_mean))
        m.running_var.copy_((total[offset + n : offset + 2 * n] / count).view_as(m.running_var))
        m.num_batches_tracked.fill_(int(count))
        offset += 2 * n


def evaluate(
    module: LightningModule,
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    fabric: Fabric | None = None,
) -> float:
    """The task metric of ``model`` on the whole validation set of ``loader``.

    With several processes each validates every ``world``-th sample (a disjoint shard, no padding) and
    the task module merges all ranks' results (``gather_validation``) before ``compute_metric``.
    """
    rank, world = _rank_world(fabric)
    module.set_model(model)
    if fabric is not None:  # the task's metric states (torchmetrics) live where the outputs are
        module.to(fabric.device)
    model.eval()
    if hasattr(module, "on_validation_epoch_start"):  # tasks that reset their metric state there
        module.on_validation_epoch_start()
    if world > 1:
        indices = list(range(rank, len(loader.dataset), world))
        loader = torch.utils.data.DataLoader(
            loader.dataset,
            batch_size=loader.batch_size or 1,
            sampler=indices,
            collate_fn=loader.collate_fn,
            num_workers=loader.num_workers,
        )
    values = []
    autocast = fabric.autocast() if fabric is not None else torch.autocast("cpu", enabled=False)
    with torch.no_grad(), autocast:
        for i, batch in enumerate(loader):
            out = module.validation_step(fabric.to_device(batch) if fabric is not None else batch, i)
            if torch.is_tensor(out) and out.numel() == 1:
                values.append(float(out))
    if world > 1:
        if hasattr(module, "gather_validation"):
            module.gather_validation()
        else:  # a module that returns one number per batch: the mean over all ranks' batches
            gathered: list[Any] = [None] * world
            torch.distributed.all_gather_object(gathered, values)
            values = [v for part in gathered for v in part]
    if hasattr(module, "compute_metric"):
        return float(module.compute_metric())
    return float(np.mean(values)) if values else float("nan")


@dataclass
class SearchJob:
    """Everything a search process needs: built once by the NNI adapter, shared by every rank."""

    build: Callable[[dict[str, int]], nn.Module]  # arch dict -> network
    supernet_arch: dict[str, int]
    module: Any  # the task's Lightning module (training_step, validation_step, compute_metric, optimizers)
    train_loader: torch.utils.data.DataLoader
    val_loader: torch.utils.data.DataLoader
    policy: PruningPolicy
    epochs: int
    seed: int
    ema_decay: float
    recalibration_batches: int
    fingerprint: dict[str, Any]
    final_lr_scale: float = 1.0  # the training phase's learning rates, times the shrinking phase's
    checkpoint_path: Path | None = None
    payload: dict[str, Any] | None = None  # the checkpoint to resume from, already checked
    on_epoch_end: Callable[[dict[str, Any]], None] | None = None
    channels_last: bool = True
    handoff: Path | None = None  # ranks forked by this process: rank zero pickles its outcome here


@dataclass
class SearchOutcome:
    """What rank zero hands back: the searched (EMA) network's arch and weights, and the run state;
    or the error that stopped every rank."""

    arch: dict[str, int] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    resumed_at_epoch: int | None = None
    error: BaseException | None = None


def search_worker(fabric: Fabric, job: SearchJob) -> SearchOutcome:
    """The search in one process (Fabric's ``launch`` runs it on every rank)."""
    if fabric.world_size > 1:
        _die_with_parent()
        if fabric.device.type == "cpu":
            enter_forked_rank(fabric.world_size)
    try:
        outcome = _SearchLoop(fabric, job).run()
    except (SearchDiverged, _Stopped) as exc:  # every rank stops at the same step: hand the error back
        outcome = SearchOutcome(error=exc.error if isinstance(exc, _Stopped) else exc)
    if job.handoff is None:
        return outcome
    # Fabric's launcher reads the return value only after every rank has exited, through a pipe that a
    # large value would fill (deadlock): the weights go through a file, the return value is its name
    if fabric.is_global_zero:
        with open(job.handoff, "wb") as f:
            pickle.dump(outcome, f)
    return str(job.handoff)


def _die_with_parent() -> None:
    """A rank forked by Fabric ends with the launching process, even one killed with SIGKILL (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the collective timeout ends an orphaned rank instead
        pass


class _Stopped(Exception):
    """The epoch callback raised on rank zero; every rank stops and rank zero hands ``error`` back."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class _SearchLoop:
    """One rank's search: :meth:`run` is start (or resume), then per epoch train, prune or evaluate,
    checkpoint and report."""

    def __init__(self, fabric, job: SearchJob) -> None:
        self.fabric, self.job = fabric, job
        self.rank, self.world = _rank_world(fabric)
        self.policy = job.policy
        self.raw_optimizer = None
        self.optimizer = None
        self.scheduler: Any = None  # the phase's learning-rate schedule, stepped per "step" or "epoch"
        self.interval = "epoch"
        self.ema: EMA | None = None
        self.model: nn.Module | None = None  # the live network
        self.wrapped: nn.Module | None = None  # the same, set up by Fabric (device, precision, DDP)
        self.groups: list = []  # the live network's unit groups (what the penalty weighs)
        self.state = RunState()
        self.steps_per_epoch = 1
        self.last_good = "none (no epoch finished)"  # named when the loss diverges

    # ---- seeds and data -------------------------------------------------------------------------

    def _seed(self, epoch: int, salt: int = 0) -> int:
        return (self.job.seed * 1_000_003 + epoch * 7919 + salt) % (2**31 - 1)

    def _reseed(self, epoch: int, per_rank: bool = True) -> None:
        # per rank: augmentations differ between the shards (rank 0 draws what one process draws)
        s = self._seed(epoch, 104_729 * self.rank if per_rank else 0)
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)

    def _loader(self, epoch: int, salt: int = 0, shard: bool = True) -> torch.utils.data.DataLoader:
        source = self.job.train_loader
        world = self.world if shard else 1
        sampler = torch.utils.data.DistributedSampler(
            source.dataset,
            num_replicas=world,
            rank=self.rank if shard else 0,
            shuffle=True,
            seed=self._seed(epoch, salt),
            drop_last=world > 1,
        )
        return torch.utils.data.DataLoader(
            source.dataset,
            batch_size=source.batch_size or 1,
            sampler=sampler,
            drop_last=bool(source.drop_last),
            collate_fn=source.collate_fn,
            num_workers=source.num_workers,
            pin_memory=self.fabric.device.type == "cuda",
        )

    def _calibration_inputs(self, epoch: int) -> list[torch.Tensor]:
        """This rank's share (every ``world``-th) of the epoch's first ``recalibration_batches`` batches."""
        inputs = []
        for i, batch in enumerate(self._loader(epoch, salt=17, shard=False)):
            if i >= self.job.recalibration_batches:
                break
            if i % self.world == self.rank:
                inputs.append(self._to_device(_batch_input(batch)))
        return inputs

    def _to_device(self, batch):
        batch = self.fabric.to_device(batch)
        if self.job.channels_last:
            x = _batch_input(batch)
            if torch.is_tensor(x) and x.ndim == 4:
                x = x.contiguous(memory_format=torch.channels_last)
                batch = (x, *batch[1:]) if isinstance(batch, (tuple, list)) else x
        return batch

    # ---- model set-up -----------------------------------------------------------------------------

    def _setup(self, model: nn.Module) -> None:
        """(Again, after a rebuild:) set the live network and the optimizer up with Fabric."""
        if self.job.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.wrapped = self.fabric.setup_module(model)
        self.optimizer = self.fabric.setup_optimizers(self.raw_optimizer)
        self.job.module.set_model(self.wrapped)

    def _macs_params(self, model: nn.Module) -> tuple[int, int]:
        cost = model.cost(self.policy.input_size)
        return int(cost.macs), int(cost.params)

    def _all_sum(self, value: float) -> float:
        if self.world < 2:
            return value
        return float(
            self.fabric.all_reduce(
                torch.tensor(value, dtype=torch.float64, device=self.fabric.device), reduce_op="sum"
            )
        )

    def _log(self, *args) -> None:
        if self.rank == 0:
            _logger.info(*args)

    # ---- the search -------------------------------------------------------------------------------

    def run(self) -> SearchOutcome:
        """The whole search on this rank; rank zero's outcome is the searched (EMA) network."""
        resumed_at = self._start()
        while self.state.epoch < self.job.epochs:
            epoch = self.state.epoch
            started = time.perf_counter()
            lam = self._train_epoch(epoch)
            self._end_of_epoch(epoch, lam)
            self.state.epoch = epoch + 1
            self.state.wall_seconds += time.perf_counter() - started
            self._save_checkpoint()
            self._report_epoch(lam)
        weights = {k: v.detach().cpu().clone() for k, v in self.ema.model.state_dict().items()}
        return SearchOutcome(
            arch=dict(self.ema.model.arch),
            weights=weights,
            state=self.state.as_dict(),
            resumed_at_epoch=resumed_at,
        )

    def _start(self) -> int | None:
        """The supernet (fresh) or the checkpoint's network, optimizer, EMA and state (resumed): the
        epoch resumed at, or None."""
        job, policy, payload = self.job, self.policy, self.job.payload
        self.steps_per_epoch = max(len(self._loader(0)), 1)
        state = RunState()
        if payload is None:
            self._reseed(-1, per_rank=False)  # the same initial weights on every rank
            model = job.build(dict(job.supernet_arch))
            state.normaliser = mean_unit_work(policy.unit_groups(model))
            state.start_macs = self._macs_params(model)[0]
        else:
            model = job.build(dict(payload["arch"]))
            model.load_state_dict(payload["model"])
        start = 0 if payload is None else int(payload["state"]["epoch"])
        phase_epoch = min(start, job.epochs - 1)
        self._begin_phase(
            model,
            policy.phase_epochs(phase_epoch, job.epochs),
            job.final_lr_scale if policy.in_training_phase(phase_epoch, job.epochs) else 1.0,
        )
        if payload is not None:
            self.raw_optimizer.load_state_dict(payload["optimizer"])
            if self.scheduler is not None and payload.get("scheduler") is not None:
                self.scheduler.load_state_dict(payload["scheduler"])
            self.ema.model.load_state_dict(payload["ema"])
            self.ema.updates = int(payload["ema_updates"])
            state = RunState(**payload["state"])
            if "rng" in payload:
                set_rng_state(payload["rng"])
            self._log("resumed the search from %s at epoch %d", job.checkpoint_path, state.epoch)
            self.last_good = f"{job.checkpoint_path} (end of epoch {state.epoch})"
        else:
            macs, params = self._macs_params(model)
            state.trajectory.append(
                {
                    "step": 0,
                    "epoch": 0,
                    "macs": macs,
                    "params": params,
                    "metric": None,
                    "units_removed": 0,
                    "lambda": 0.0,
                }
            )
        self.state = state
        self.groups = policy.unit_groups(self.model)
        return state.epoch if payload is not None else None

    def _begin_phase(self, model: nn.Module, phase_epochs: int, lr_scale: float = 1.0) -> None:
        """``model`` becomes the live network, with an optimizer, schedule (its learning rates times
        ``lr_scale``) and EMA of its own for ``phase_epochs``."""
        module = self.job.module
        module.set_model(model)
        self.raw_optimizer, self.scheduler, self.interval = configure_optimizers(
            module, phase_epochs, self.steps_per_epoch, lr_scale
        )
        self._setup(model)
        self.ema = EMA(self.model, self.job.ema_decay)

    def _train_epoch(self, epoch: int) -> float:
        """One pass over this rank's shard of the training data; counts the images and MACs processed.
        Returns the penalty weight of the last step."""
        state = self.state
        self._reseed(epoch)
        self.model.train()
        macs_now = self._macs_params(self.model)[0]
        images, lam = 0, 0.0
        for i, batch in enumerate(self._loader(epoch)):
            batch = self._to_device(batch)
            lam = self.policy.lambda_at(epoch + i / self.steps_per_epoch, state.lambda_scale, self.job.epochs)
            self._train_step(batch, epoch, i, lam)
            images += len(_batch_input(batch))
        if self.scheduler is not None and self.interval == "epoch":
            self.scheduler.step()
        images_all = int(self._all_sum(images))
        state.images_seen += images_all
        state.mac_epochs += macs_now
        state.macs_processed += float(macs_now) * images_all
        return lam

    def _train_step(self, batch: Any, epoch: int, i: int, lam: float) -> None:
        """Task loss plus ``lam`` times the penalty, one optimizer step, exact zeros kept, EMA updated."""
        state, groups = self.state, self.groups
        out = self.job.module.training_step(batch, i)
        task_loss = out["loss"] if isinstance(out, dict) else out
        loss = task_loss + lam * penalty(groups, state.normaliser) if lam > 0 else task_loss
        bad = ~torch.isfinite(loss.detach())
        if self.world > 1:  # any rank's NaN stops all of them at this step
            bad = self.fabric.all_reduce(bad.float(), reduce_op="sum") > 0
        if bool(bad):
            raise SearchDiverged(
                f"the search loss is {loss.item()} (task loss {task_loss.item()}) on some rank at epoch "
                f"{epoch}, batch {i} (global step {state.global_step}); the last good checkpoint is "
                f"{self.last_good}, kept as it was. Lower the learning rate or lambda and resume"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.fabric.backward(loss)
        before = [g.bn.weight.detach().clone() for g in groups] if lam > 0 else None
        self.optimizer.step()
        if before is not None:
            clip_zero_crossings_(groups, before, lam, state.normaliser)
        if self.scheduler is not None and self.interval == "step":
            self.scheduler.step()
        self.ema.update(self.model)
        state.global_step += 1

    def _end_of_epoch(self, epoch: int, lam: float) -> None:
        """Shrinking phase: a prune step when due, and after the last one the training phase begins;
        training phase: an evaluation when due."""
        job, policy = self.job, self.policy
        if policy.prunes_after(epoch, job.epochs):
            self._prune_step(epoch, lam)
            if epoch + 1 == policy.shrink_end(job.epochs) < job.epochs:
                # the final architecture: trained afresh (optimizer, schedule, EMA) for the epochs left;
                # a copy, so that no parameter keeps the hooks of the data-parallel wrapper it had
                self._begin_phase(
                    copy.deepcopy(self.model), job.epochs - policy.shrink_end(job.epochs), job.final_lr_scale
                )
                self.groups = policy.unit_groups(self.model)
        elif policy.evaluates_after(epoch, job.epochs):
            self._evaluate_step(epoch)

    def _save_checkpoint(self) -> None:
        """Rank zero writes the checkpoint of the epoch just finished (when the search has a checkpoint path)."""
        path, ema = self.job.checkpoint_path, self.ema
        if path is None or not self.fabric.is_global_zero:
            return
        save_checkpoint(
            path,
            {
                "fingerprint": self.job.fingerprint,
                "arch": dict(self.model.arch),
                "model": self.model.state_dict(),
                "ema": ema.model.state_dict(),
                "ema_updates": ema.updates,
                "optimizer": self.raw_optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "state": self.state.as_dict(),
                "rng": rng_state(),
            },
        )
        self.last_good = f"{path} (end of epoch {self.state.epoch})"

    def _report_epoch(self, lam: float) -> None:
        """Log the epoch and call the epoch callback."""
        state = self.state
        macs, params = self._macs_params(self.model)
        self._log(
            "epoch %d/%d: %s MACs, %s %.4f, lambda %.3g",
            state.epoch,
            self.job.epochs,
            f"{macs:,}",
            getattr(self.job.module, "metric_name", "metric"),
            state.metric,
            lam,
        )
        self._epoch_callback(macs, params, lam)

    def _epoch_callback(self, macs: int, params: int, lam: float) -> None:
        """Rank zero calls ``on_epoch_end``; what it raises stops every rank after this epoch."""
        state, error = self.state, None
        if self.job.on_epoch_end is not None and self.rank == 0:
            evaluated = state.trajectory[-1]["epoch"] == state.epoch
            try:
                self.job.on_epoch_end(
                    {
                        "epoch": state.epoch,
                        "epochs": self.job.epochs,
                        "macs": macs,
                        "params": params,
                        "metric": state.metric if evaluated else float("nan"),
                        "lambda": lam,
                    }
                )
            except Exception as exc:  # noqa: BLE001 - handed back to the caller as it was raised
                error = exc
        if self.world > 1 and self.job.on_epoch_end is not None:
            error = self.fabric.broadcast(error, src=0)
        if error is not None:
            raise _Stopped(error)

    def _recalibrate(self, model: nn.Module, inputs: list[torch.Tensor]) -> None:
        """BN statistics re-estimated on ``inputs`` (this rank's share) and averaged over the ranks."""
        with self.fabric.autocast():
            recalibrate_bn(model, inputs)
        average_bn_statistics(model, len(inputs), self.fabric)

    def _evaluate_ema(self) -> None:
        self.state.metric = evaluate(self.job.module, self.ema.model, self.job.val_loader, self.fabric)
        self.job.module.set_model(self.wrapped)

    def _evaluate_step(self, epoch: int) -> None:
        """Evaluate the EMA network in the training phase with its own BN statistics (the EMA of the live
        network's running statistics, averaged over the ranks), not recalibrated as after a prune: the
        architecture no longer changes, and a recalibration on ``recalibration_batches`` batches (32
        images on the CPU tasks) is noisier than the running average; it cost digits_cls 0.04 top-1."""
        state = self.state
        average_bn_statistics(self.ema.model, 1, self.fabric)
        self._evaluate_ema()
        macs, params = self._macs_params(self.model)
        state.trajectory.append(
            {
                "step": state.prune_step,
                "epoch": epoch + 1,
                "macs": macs,
                "params": params,
                "metric": state.metric,
                "units_removed": 0,
                "lambda": 0.0,
            }
        )

    def _prune_step(self, epoch: int, lam: float) -> None:
        """One prune step; the last of the shrinking phase lands on the budget."""
        job, policy, fabric, state, ema = self.job, self.policy, self.fabric, self.state, self.ema
        shrink_end = policy.shrink_end(job.epochs)
        inputs = self._calibration_inputs(epoch)
        self._recalibrate(self.model, inputs)
        groups = policy.unit_groups(self.model)
        keep = policy.keep(groups, self.model, last=epoch + 1 == shrink_end)
        if self.world > 1:  # one decision for all ranks, whatever their float round-off
            keep = fabric.broadcast({k: v.cpu() for k, v in keep.items()}, src=0)
        removed = units_removed(groups, keep)
        if removed:
            new = rebuild(self.model, keep)
            slice_optimizer_(self.raw_optimizer, self.model, new, keep)
            ema.replace(rebuild(ema.model, keep))
            self._setup(new)
            groups = policy.unit_groups(self.model)
        self.groups = groups
        self._recalibrate(ema.model, inputs)
        self._evaluate_ema()
        macs, params = self._macs_params(self.model)
        state.prune_step += 1
        state.trajectory.append(
            {
                "step": state.prune_step,
                "epoch": epoch + 1,
                "macs": macs,
                "params": params,
                "metric": state.metric,
                "units_removed": removed,
                "lambda": lam,
            }
        )
        state.lambda_scale = policy.next_lambda_scale(
            state.lambda_scale, macs, state.start_macs, epoch, shrink_end
        )
