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
own, on Lightning Fabric (not a Lightning ``Trainer``), because the network, the optimizer state and
the EMA are replaced at every prune step and because a killed search must resume exactly.

The pieces, each readable on its own: this module is the NNI adapter (what NNI calls), the
training loop is :mod:`.loop` (Fabric: devices, precision, data parallelism), the pruning policy
is :mod:`.policy` (units, penalty, eps, budget, lambda scale) and the run state is
:mod:`.run_state` (counters, trajectory, checkpoint contents).

A search has two phases. **Shrinking** (the first ``shrink_epochs``, all epochs by default, as
in the paper): each epoch, loss = task + lambda(t) * sum_i cost_i |gamma_i| (costs at the training
input size, normalised so the supernet's mean unit cost is 1; token costs recomputed from the
tokens still alive), lambda ramping linearly from 0 over ``warmup_epochs``. Every ``prune_every``
epochs and after the last: BN statistics recalibrated on a few training batches, units with
|gamma| < eps removed, smaller network rebuilt (weights, optimizer state and EMA sliced by index),
the EMA network evaluated. **Training** (the epochs after ``shrink_epochs``, if any): the final
architecture is trained with the task loss alone, with an optimizer, learning-rate schedule and
EMA set up afresh for those epochs, so that the search returns a trained network rather than a
freshly pruned one; the EMA network is evaluated every ``prune_every`` epochs and at the end, with
the EMA of the live network's BN statistics (no recalibration: the architecture is fixed). With
``target_macs`` the penalty is scaled up or down to follow a path to the target, no prune step
goes below it (it removes fewer of the units under eps instead), and if the MACs are still above
the target after the last shrinking epoch, that step removes the least important units until they
are at or under it, then puts back the most important of those while they stay at or under it (a
unit that took a whole path below ``min_path_width`` would leave the rest unspent). Either way the
result lands within one unit's cost of the target, or with ``min_path_width`` within one path's: where the last step's floor would stay more than
``target_tolerance`` above the target (the next unit below eps would remove a whole path), it
lands at or under the target instead. ``result.target`` says on which side and how far.
"""

from __future__ import annotations

import inspect
import logging
import pickle
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from nni.nas.evaluator.pytorch import Lightning
from nni.nas.oneshot.pytorch.strategy import OneShotStrategy
from nni.nas.space import ModelStatus, RawFormatModelSpace
from torch import nn

from nni_hrnas.run_folder import SearchResult
from search_spaces.costs import UNIT_COSTS

from .checkpoint import CHECKPOINT_NAME, CheckpointError
from .interface import ShrinkableSpace
from .loop import DeviceSettings, SearchDiverged, SearchJob, SearchOutcome, search_worker
from .policy import PruningPolicy, check_number, minimum_macs
from .run_state import RunState, read_resumable

_logger = logging.getLogger(__name__)

__all__ = ["ProgressiveShrinking", "SearchDiverged", "minimum_macs"]


#: Constructor settings the resume fingerprint leaves out, as they do not change what the search
#: computes: where the checkpoint is written (``checkpoint_dir``), whether to continue it
#: (``resume``), an observer of each epoch (``on_epoch_end``), and where it trains (``devices``: of
#: those, only the world size changes the computation, the global batch and the data shards, and the
#: fingerprint holds it on its own; precision and memory layout may change on resume).
NOT_IN_FINGERPRINT = ("checkpoint_dir", "resume", "on_epoch_end", "devices")


def fingerprint_settings() -> list[str]:
    """The :class:`ProgressiveShrinking` arguments a resumed search must match (its signature but
    :data:`NOT_IN_FINGERPRINT`), in signature order."""
    return [
        name
        for name in inspect.signature(ProgressiveShrinking.__init__).parameters
        if name != "self" and name not in NOT_IN_FINGERPRINT
    ]


def fingerprint_defaults() -> dict[str, Any]:
    """The defaults of :func:`fingerprint_settings` by fingerprint key: what a key missing from a
    checkpoint written before that setting was fingerprinted stands for (``target_tolerance``,
    ``unit_cost``)."""
    parameters = inspect.signature(ProgressiveShrinking.__init__).parameters
    return {name.rstrip("_"): parameters[name].default for name in fingerprint_settings()}


class ProgressiveShrinking(OneShotStrategy):
    """Resource-aware fine-grained progressive shrinking (HR-NAS, CVPR 2021, Sec. 3.3).

    Args:
        lambda_: weight of the resource-aware L1 penalty (Eq. 7), >= 0.
        eps: units with |gamma| < eps are removed at each prune step; 0 < eps < 1.
        prune_every: epochs between prune steps (>= 1); the last epoch always ends with one.
        warmup_epochs: lambda ramps linearly from 0 to ``lambda_`` over these (fractional) epochs.
        epochs: search epochs (default: the evaluator trainer's ``max_epochs``).
        target_macs: optional MACs budget: the result lands next to it (just above when the
            search reached it early, within ``target_tolerance``; at or just below when the final
            step had to prune to it; ``result.target`` says which); a budget below the network's
            minimum (stem, shortcuts and head alone) is an error.
        input_size: (C, H, W) the unit costs are computed at (default: the training samples' size).
        ema_decay: decay of the weight EMA used for evaluation and export.
        recalibration_batches: training batches used to recalibrate BN statistics at each prune step.
        seed: seeds the weights, the data order and every random draw, per epoch.
        checkpoint_dir: where ``search_checkpoint.pt`` is written after every epoch (an existing
            one is never overwritten unless ``resume``).
        resume: continue from the checkpoint in ``checkpoint_dir`` (start fresh if there is none).
        target_tolerance: allowed relative distance to ``target_macs``.
        path_overhead: fixed cost of each kernel path and transformer in MAC-equivalents per image
            (Eq. 7 adapted to latency; :func:`nni_hrnas.latency.measure_path_overhead` measures it),
            shared by the path's remaining units so that removing whole paths pays. 0 (the default)
            is the paper's MAC-only cost.
        unit_cost: what a depthwise channel's penalty weight counts (:data:`search_spaces.costs.UNIT_COSTS`):
            ``exact`` (the default) the MACs removing it saves, its depthwise conv and its share of
            the expand and project convs, as the official code; ``paper`` the depthwise conv alone,
            k * k * h * w, Eq. 6 as printed. Tokens cost O_T(n') - O_T(n'-1) either way.
        elementwise_weight: MAC-equivalents of one BN or activation element, added to each unit's
            cost for the elements it carries (``benchmarks/bench_elementwise_weight.py`` fits it for a
            training step): on a CPU that memory-bound work can cost more time than a channel's
            MACs. 0 (the default) is the paper's MAC-only cost.
        min_path_width: the fewest channels (tokens) a kernel path (transformer) keeps: one that a prune
            step would leave thinner is removed whole. 1 (the default) is the paper's fine-grained
            shrinking; on a CPU a path of a few channels costs a training step nearly as much time
            as a wide one (its convolutions are launched whatever their width). With ``target_macs``
            a large minimum can land under the budget: the paths it removes are not given back.
        shrink_epochs: epochs of the shrinking phase (default: all ``epochs``, the paper's schedule);
            the remaining epochs train the final architecture without penalty or pruning.
        final_lr_scale: the learning rates of those remaining epochs' schedule, as a multiple of the
            task's (the shrinking phase's): the final architecture starts from the supernet's trained
            weights, as a pruned network is fine-tuned. 1 (the default) trains it with the task's own.
        on_epoch_end: called after every epoch, once its checkpoint is written, with a dict
            (``epoch``, ``epochs``, ``macs``, ``params``, ``metric``: NaN if no prune step evaluated it
            this epoch, ``lambda``). It may raise to stop the search (e.g. ``optuna.TrialPruned``):
            the exception reaches the caller and the checkpoint stays resumable. With several
            processes it runs in rank zero's process.
        devices: where and how the search trains (:class:`~nni_hrnas.strategy.loop.DeviceSettings`:
            accelerator, devices, num_nodes, strategy, precision); default one process, 32-bit, on
            the GPU when there is one.
    """

    def __init__(
        self,
        lambda_: float = 1.4e-4,
        eps: float = 1e-3,
        prune_every: int = 1,
        warmup_epochs: float = 0.0,
        epochs: int | None = None,
        target_macs: float | None = None,
        input_size: tuple[int, int, int] | None = None,
        ema_decay: float = 0.999,
        recalibration_batches: int = 10,
        seed: int = 0,
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        target_tolerance: float = 0.05,
        path_overhead: float = 0.0,
        unit_cost: str = "exact",
        elementwise_weight: float = 0.0,
        min_path_width: int = 1,
        shrink_epochs: int | None = None,
        final_lr_scale: float = 1.0,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        devices: DeviceSettings | None = None,
    ) -> None:
        super().__init__()
        check_number("lambda_", lambda_, low=0.0)
        check_number("eps", eps, low=0.0, high=1.0, low_open=True, high_open=True)
        check_number("prune_every", prune_every, low=1, integer=True)
        check_number("warmup_epochs", warmup_epochs, low=0.0)
        if epochs is not None:
            check_number("epochs", epochs, low=1, integer=True)
        if shrink_epochs is not None:
            check_number("shrink_epochs", shrink_epochs, low=1, integer=True)
        if target_macs is not None:
            check_number("target_macs", target_macs, low=0.0, low_open=True)
        check_number("ema_decay", ema_decay, low=0.0, high=1.0, high_open=True)
        check_number("recalibration_batches", recalibration_batches, low=1, integer=True)
        check_number("seed", seed, low=0, integer=True)
        check_number("target_tolerance", target_tolerance, low=0.0, high=1.0, low_open=True, high_open=True)
        check_number("path_overhead", path_overhead, low=0.0)
        check_number("elementwise_weight", elementwise_weight, low=0.0)
        check_number("min_path_width", min_path_width, low=1, integer=True)
        check_number("final_lr_scale", final_lr_scale, low=0.0, low_open=True)
        if unit_cost not in UNIT_COSTS:
            raise ValueError(f"unit_cost must be {' or '.join(UNIT_COSTS)}, got {unit_cost!r}")
        if input_size is not None and (len(tuple(input_size)) != 3 or any(int(v) < 1 for v in input_size)):
            raise ValueError(f"input_size must be (channels, height, width), got {input_size!r}")
        self.lambda_, self.eps, self.prune_every = float(lambda_), float(eps), int(prune_every)
        self.warmup_epochs, self.epochs = float(warmup_epochs), None if epochs is None else int(epochs)
        self.target_macs = None if target_macs is None else int(target_macs)
        self.input_size = None if input_size is None else tuple(int(v) for v in input_size)
        self.ema_decay, self.recalibration_batches = float(ema_decay), int(recalibration_batches)
        self.seed, self.resume, self.target_tolerance = int(seed), bool(resume), float(target_tolerance)
        self.path_overhead, self.unit_cost = float(path_overhead), unit_cost
        self.elementwise_weight = float(elementwise_weight)
        self.min_path_width = int(min_path_width)
        self.shrink_epochs = None if shrink_epochs is None else int(shrink_epochs)
        self.final_lr_scale = float(final_lr_scale)
        self.on_epoch_end = on_epoch_end
        self.devices = devices or DeviceSettings()
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.result: SearchResult | None = None
        self.model: nn.Module | None = None
        self.is_global_zero = True  # False in the other processes of a search launched by torchrun / SLURM
        self._final: RawFormatModelSpace | None = None

    # ---- NNI strategy interface ---------------------------------------------------------------

    def extra_repr(self) -> str:
        return (
            f"lambda_={self.lambda_}, eps={self.eps}, prune_every={self.prune_every}, "
            f"warmup_epochs={self.warmup_epochs}, shrink_epochs={self.shrink_epochs}, "
            f"target_macs={self.target_macs}"
        )

    def _initialize(self, model_space, engine):
        if not isinstance(model_space, RawFormatModelSpace):
            raise TypeError(
                "ProgressiveShrinking needs the raw model format (NasExperiment picks it for one-shot "
                f"strategies); got {type(model_space).__name__}"
            )
        space = model_space.model_space
        if not isinstance(space, ShrinkableSpace):
            raise TypeError(
                f"ProgressiveShrinking searches an HRNASSpace (a space with the members of "
                f"nni_hrnas.strategy.interface.ShrinkableSpace), got {type(space).__name__}"
            )
        evaluator = model_space.evaluator
        if not isinstance(evaluator, Lightning):
            raise TypeError(
                f"ProgressiveShrinking needs an NNI Lightning evaluator, got {type(evaluator).__name__}"
            )
        if evaluator.train_dataloaders is None or evaluator.val_dataloaders is None:
            raise ValueError("the evaluator needs both training and validation data loaders")
        self._space, self._evaluator = space, evaluator
        if self.input_size is None:
            self.input_size = self._sample_input_size()
        self._supernet_arch = dict(space.max_sample())
        self.minimum_macs = minimum_macs(space, self.input_size)
        if self.target_macs is not None and self.target_macs < self.minimum_macs:
            raise ValueError(
                f"target_macs={self.target_macs:,} is below what this network can reach: the stem, shortcuts and "
                f"head alone cost {self.minimum_macs:,} MACs at input size {self.input_size} (every searched "
                f"unit removed); ask for at least {self.minimum_macs:,}"
            )
        if self.target_macs is not None:
            with torch.device("meta"):
                supernet_macs = self._build(dict(self._supernet_arch)).cost(self.input_size).macs
            if self.target_macs > supernet_macs:
                _logger.warning(
                    "target_macs=%s is above the supernet's %s MACs: nothing will be pruned below the "
                    "supernet, and the result stays under the target",
                    f"{self.target_macs:,}",
                    f"{supernet_macs:,}",
                )
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
        """Where the search checkpoint is written (None without ``checkpoint_dir``)."""
        return None if self.checkpoint_dir is None else self.checkpoint_dir / CHECKPOINT_NAME

    # ---- helpers ------------------------------------------------------------------------------

    def _sample_input_size(self) -> tuple[int, int, int]:
        dataset = self._evaluator.train_dataloaders.dataset
        x = dataset[0]
        x = x[0] if isinstance(x, (tuple, list)) else x
        return tuple(int(v) for v in x.shape)

    def _build(self, arch: dict[str, int]) -> nn.Module:
        return self._space.build_network(arch)

    def _round_up(self, label: str, count: int) -> int:
        return self._space.round_up({label: count})[label]

    def policy(self) -> PruningPolicy:
        """The pruning policy of this search (``_initialize`` must have run: it needs the space)."""
        granular = self._space.granular
        return PruningPolicy(
            lambda_=self.lambda_,
            eps=self.eps,
            prune_every=self.prune_every,
            warmup_epochs=self.warmup_epochs,
            input_size=self.input_size,
            target_macs=self.target_macs,
            target_tolerance=self.target_tolerance,
            path_overhead=self.path_overhead,
            unit_cost=self.unit_cost,
            elementwise_weight=self.elementwise_weight,
            min_path_width=self.min_path_width,
            round_up=self._round_up if granular else None,
            shrink_epochs=self.shrink_epochs,
        )

    def _fingerprint(self, epochs: int) -> dict[str, Any]:
        """What a resumed search must share with the checkpoint: every constructor setting but
        :data:`NOT_IN_FINGERPRINT` (read from the signature, so a new setting is compared without being
        listed here), by its public name (``lambda`` for ``lambda_``), plus the space's config, the
        epochs resolved from the evaluator and the world size (from ``devices``)."""
        values = {name: getattr(self, name) for name in fingerprint_settings()}
        values["epochs"] = epochs
        values["input_size"] = list(self.input_size)
        return {
            "config": repr(self._space.config),
            **{name.rstrip("_"): value for name, value in values.items()},
            "world_size": self.devices.world_size,
        }

    def _macs_params(self, model: nn.Module) -> tuple[int, int]:
        cost = model.cost(self.input_size)
        return int(cost.macs), int(cost.params)

    def _resume_payload(self, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
        """The checkpoint to continue from, checked before any process starts training."""
        path = self.checkpoint_path
        if path is None or not path.exists():
            if self.resume:
                _logger.info("no checkpoint at %s: starting a fresh search", path)
            return None
        if not self.resume:
            raise CheckpointError(
                f"a search checkpoint already exists at {path}; resume it (resume=True, "
                "--resume) or use another output directory (nothing was overwritten)"
            )
        payload = read_resumable(path, fingerprint, fingerprint_defaults())
        try:  # the saved network must be one of this space's
            self._build(dict(payload["arch"])).load_state_dict(payload["model"])
        except (KeyError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"checkpoint {path} does not match this space: {exc}") from exc
        return payload

    # ---- the search ---------------------------------------------------------------------------

    def _search(self) -> None:
        evaluator, module = self._evaluator, self._evaluator.module
        epochs = self.epochs or int(evaluator.trainer.max_epochs or 1)
        self.devices.check_machine()
        if (
            self.devices.world_size > 1
            and not hasattr(module, "gather_validation")
            and hasattr(module, "compute_metric")
        ):
            raise TypeError(
                f"{type(module).__name__} cannot merge its validation results across processes: "
                "give it gather_validation() (see nni_hrnas.tasks.base.TaskModule) or search on one "
                "device (--devices 1)"
            )
        fingerprint = self._fingerprint(epochs)
        job = SearchJob(
            build=self._build,
            supernet_arch=dict(self._supernet_arch),
            module=module,
            train_loader=evaluator.train_dataloaders,
            val_loader=evaluator.val_dataloaders,
            policy=self.policy(),
            epochs=epochs,
            seed=self.seed,
            ema_decay=self.ema_decay,
            recalibration_batches=self.recalibration_batches,
            fingerprint=fingerprint,
            final_lr_scale=self.final_lr_scale,
            checkpoint_path=self.checkpoint_path,
            payload=self._resume_payload(fingerprint),
            on_epoch_end=self.on_epoch_end,
            channels_last=self.devices.channels_last,
        )
        fabric = self.devices.fabric()
        if isinstance(getattr(fabric.strategy, "launcher", None), _MultiProcessingLauncher):
            with tempfile.TemporaryDirectory(prefix="hrnas-search-") as tmp:
                job.handoff = Path(tmp) / "outcome.pkl"
                fabric.launch(search_worker, job)
                with open(job.handoff, "rb") as f:
                    outcome: SearchOutcome = pickle.load(f)  # written by our own rank zero a moment ago
        else:
            outcome = fabric.launch(search_worker, job)
        self.is_global_zero = fabric.is_global_zero
        if outcome.error is not None:
            raise outcome.error
        final = self._build(outcome.arch)
        final.load_state_dict(outcome.weights)
        final.eval()
        self.model = final
        state = RunState(**outcome.state)
        self.result = self._result(
            final, state, epochs, getattr(module, "metric_name", "metric"), outcome.resumed_at_epoch
        )
        frozen = RawFormatModelSpace(final, evaluator)
        frozen.sample = dict(final.arch)
        frozen.status = ModelStatus.Trained
        frozen.metrics.final = state.metric
        self._final = frozen

    def _result(
        self, model: nn.Module, state: RunState, epochs: int, metric_name: str, resumed_at_epoch: int | None
    ) -> SearchResult:
        macs, params = self._macs_params(model)
        d = self.devices
        target = self.policy().target_report(macs, state.lambda_scale)
        if target is not None and not target["within_tolerance"]:
            _logger.warning(
                "the search ended %.1f%% %s the target of %s MACs",
                100 * abs(target["relative_error"]),
                target["side"],
                f"{self.target_macs:,}",
            )
        return SearchResult(
            macs=macs,
            params=params,
            metric=state.metric,
            metric_name=metric_name,
            arch=dict(model.arch),
            arch_max=dict(self._supernet_arch),
            macs_max=state.start_macs,
            macs_min=self.minimum_macs,
            search_seconds=state.wall_seconds,
            lambda_=self.lambda_,
            eps=self.eps,
            prune_every=self.prune_every,
            warmup_epochs=self.warmup_epochs,
            epochs=epochs,
            seed=self.seed,
            input_size=tuple(self.input_size),
            strategy="hrnas",
            path_overhead=self.path_overhead,
            unit_cost=self.unit_cost,
            elementwise_weight=self.elementwise_weight,
            min_path_width=self.min_path_width,
            shrink_epochs=self.policy().shrink_end(epochs),
            final_lr_scale=self.final_lr_scale,
            search_cost=state.search_cost(),
            trajectory=state.trajectory,
            target_macs=self.target_macs,
            target=target,
            resumed_at_epoch=resumed_at_epoch,
            devices={
                "accelerator": d.resolved_accelerator(),
                "devices": d.devices,
                "num_nodes": d.num_nodes,
                "world_size": d.world_size,
                "precision": d.precision,
                "channels_last": d.channels_last,
            },
        )
