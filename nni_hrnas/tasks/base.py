"""The common part of the task modules: optimisers and schedules, NNI reporting, costs."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import nni
import torch
from nni.nas.evaluator.pytorch import LightningModule

_logger = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "onecycle", "cosine", "poly", "multistep", "exp")
CostFn = Callable[[torch.nn.Module], dict]


def count_params(model: torch.nn.Module) -> int:
    """The number of parameters of ``model``."""
    return int(sum(p.numel() for p in model.parameters()))


def build_optimizer(
    params_module: torch.nn.Module,
    name: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    no_decay_1d: bool = True,
    eps: float | None = None,
    alpha: float = 0.9,
) -> torch.optim.Optimizer:
    """``no_decay_1d`` leaves BN weights and biases out of weight decay (the official 'mnas' method).

    'rmsprop' follows the official ImageNet setting (alpha 0.9, momentum 0.9, eps 1e-3 *inside* the
    square root, approximated by torch's outside eps = sqrt(1e-3))."""
    name = name.lower()
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {name!r}")
    decay, no_decay = [], []
    for p in params_module.parameters():
        if not p.requires_grad:
            continue
        (no_decay if no_decay_1d and p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    # one fused kernel over all parameters instead of a loop over them: the search space's networks have
    # ~2,000 small tensors, and the per-tensor loop took a fifth of a CPU training step (5x slower)
    fast = {"fused": True} if name != "rmsprop" else {"foreach": True}
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov, **fast)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, eps=eps or 1e-8, **fast)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, eps=eps or 1e-8, **fast)
    return torch.optim.RMSprop(
        groups, lr=lr, alpha=alpha, momentum=momentum, eps=eps or math.sqrt(1e-3), **fast
    )


def lr_factor(
    schedule: str,
    epoch: float,
    total_epochs: float,
    warmup_epochs: float = 0.0,
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
    power: float = 0.9,
    exp_gamma: float = 0.97,
    exp_interval: float = 2.4,
) -> float:
    """The learning-rate multiplier at a (fractional) epoch, linear warm-up included."""
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return max(epoch / warmup_epochs, 1e-3)
    t = min(max((epoch - warmup_epochs) / max(total_epochs - warmup_epochs, 1e-9), 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if schedule == "poly":
        return (1.0 - t) ** power
    if schedule == "multistep":
        return gamma ** sum(1 for m in milestones if epoch >= m)
    if schedule == "exp":
        return exp_gamma ** math.floor(epoch / exp_interval)
    raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")


class TaskModule(LightningModule):
    """Base of the task modules: a NNI ``LightningModule`` (``set_model``) that

    - builds the optimiser and schedule from plain arguments (see :func:`build_optimizer`,
      :func:`lr_factor`; 'onecycle' is torch's OneCycleLR with div_factor 25 as the official code),
      stepped per batch;
    - logs ``val_<metric>`` (progress bar) and keeps ``history`` (one metric per validation);
    - inside an NNI trial reports every validation metric with ``nni.report_intermediate_result``
      and, at the end of ``fit`` (or of a ``validate``), ``nni.report_final_result`` with
      ``{'default': metric, 'params': ..., 'macs': ..., <extra metrics>}``; the same dict is kept in
      ``final_result`` outside trials.

    ``cost_fn(model) -> {'macs': ..., 'params': ...}`` supplies the costs; without it ``params`` is
    counted and ``macs`` is left out.
    """

    metric_name = "metric"

    def __init__(
        self,
        optimizer: str = "adamw",
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        momentum: float = 0.9,
        nesterov: bool = False,
        schedule: str = "cosine",
        warmup_epochs: float = 0.0,
        milestones: Sequence[float] = (),
        gamma: float = 0.1,
        no_decay_1d: bool = True,
        cost_fn: CostFn | None = None,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}")
        if optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {optimizer!r}")
        self.optim_config = dict(
            optimizer=optimizer,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            schedule=schedule,
            warmup_epochs=warmup_epochs,
            milestones=tuple(milestones),
            gamma=gamma,
            no_decay_1d=no_decay_1d,
        )
        self.cost_fn = cost_fn
        self.history: list[float] = []
        self.extra_metrics: dict[str, float] = {}
        self.final_result: dict[str, Any] | None = None

    def forward(self, x):
        return self.model(x)

    # ---- optimisation ------------------------------------------------------------------------
    def configure_optimizers(self):
        c = self.optim_config
        opt = build_optimizer(
            self.model,
            c["optimizer"],
            c["learning_rate"],
            c["weight_decay"],
            c["momentum"],
            c["nesterov"],
            c["no_decay_1d"],
        )
        if c["schedule"] == "constant" and not c["warmup_epochs"]:
            return opt
        total_steps = max(int(self.trainer.estimated_stepping_batches), 1)
        epochs = max(self.trainer.max_epochs or 1, 1)
        steps_per_epoch = max(total_steps / epochs, 1e-9)
        if c["schedule"] == "onecycle":
            sched = torch.optim.lr_scheduler.OneCycleLR(
                opt,
                max_lr=[g["lr"] for g in opt.param_groups],
                total_steps=total_steps + 1,
                div_factor=25.0,
                pct_start=min(0.3, max(c["warmup_epochs"] / epochs, 0.0)) or 0.3,
                cycle_momentum=False,
            )
        else:

            def factor(step: int) -> float:
                return lr_factor(
                    c["schedule"],
                    step / steps_per_epoch,
                    epochs,
                    c["warmup_epochs"],
                    c["milestones"],
                    c["gamma"],
                )

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---- metrics and reporting ---------------------------------------------------------------
    def compute_metric(self) -> float:  # pragma: no cover - abstract
        """The task metric over the validation data seen since the last reset (higher is better)."""
        raise NotImplementedError

    def on_fit_start(self):
        # one module can be fitted for several architectures in turn (NNI multi-trial engines)
        self.history = []
        self.final_result = None

    def validation_state(self) -> Any:  # pragma: no cover - abstract
        """What this process accumulated since ``on_validation_epoch_start`` (picklable, on the CPU)."""
        raise NotImplementedError

    def merge_validation_states(self, states: list[Any]) -> None:  # pragma: no cover - abstract
        """Replace this process's accumulated validation results by those of all ``states`` (rank order)."""
        raise NotImplementedError

    def gather_validation(self) -> None:
        """Merge the validation results of every process of a data-parallel run into each of them.

        A no-op in one process. With several (``torch.distributed`` initialised: the search's Fabric
        processes, or a DDP ``Trainer``), each process's :meth:`validation_state` is gathered and
        :meth:`merge_validation_states` makes ``compute_metric`` give the metric of the whole
        validation set (each process must have seen a disjoint part of it: a padded sampler counts
        its repeated samples twice). Every process must call it: it is a collective.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
            return
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, self.validation_state())
        self.merge_validation_states(states)

    def on_validation_epoch_end(self):
        self.gather_validation()
        value = float(self.compute_metric())
        self.log(f"val_{self.metric_name}", value, prog_bar=True)
        for k, v in self.extra_metrics.items():
            self.log(f"val_{k}", v)
        if self.trainer.sanity_checking:
            return
        self.history.append(value)
        if nni.get_current_parameter() is not None:
            nni.report_intermediate_result(value)

    def on_fit_end(self):
        from pytorch_lightning.trainer.states import TrainerFn

        if self.trainer.state.fn == TrainerFn.FITTING:
            self._final_report()

    def on_validation_end(self):
        from pytorch_lightning.trainer.states import TrainerFn

        if self.trainer.state.fn == TrainerFn.VALIDATING:
            self._final_report()

    def costs(self) -> dict[str, Any]:
        """The model's costs for the report: ``cost_fn(model)`` when given, else its parameter count."""
        if self.cost_fn is not None:
            return dict(self.cost_fn(self.model))
        return {"params": count_params(self.model)}

    def result_dict(self) -> dict[str, Any]:
        """What goes to NNI: the last metric as ``default`` and under its name, with the costs."""
        metric = self.history[-1] if self.history else float("nan")
        out: dict[str, Any] = {"default": metric, self.metric_name: metric}
        out.update(self.costs())
        out.update(self.extra_metrics)
        return out

    def _final_report(self):
        self.final_result = self.result_dict()
        _logger.info("final result: %s", self.final_result)
        if nni.get_current_parameter() is not None:
            nni.report_final_result(self.final_result)
