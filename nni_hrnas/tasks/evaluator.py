"""The evaluator every task hands to NNI: its ``Lightning`` evaluator, reusable across trials."""

from __future__ import annotations

from typing import Any

import nni
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer
from torch import nn


@nni.trace  # evaluators must be traceable: NNI re-creates and serialises them
class TaskEvaluator(Lightning):
    """NNI's ``Lightning`` evaluator that can evaluate one architecture after another.

    NNI's multi-trial engines (the sequential one in-process) call ``evaluate`` on the same
    evaluator for every trial. A Lightning ``Trainer`` that has reached ``max_epochs`` does not
    train again, so every trial after the first would be reported untrained, with the first
    trial's metric. The evaluator therefore keeps the ``Trainer``'s arguments and runs each
    ``evaluate`` after the first on a fresh one; the task module starts a fresh history in
    ``on_fit_start``.

    Args:
        module: the task's Lightning module.
        trainer_kwargs: arguments of the ``Trainer`` (``max_epochs``, ``accelerator``, ...).
        train_dataloaders, val_dataloaders: NNI's traced data loaders.
    """

    def __init__(
        self,
        module: LightningModule,
        trainer_kwargs: dict[str, Any],
        train_dataloaders: DataLoader | None = None,
        val_dataloaders: DataLoader | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            module,
            Trainer(**trainer_kwargs),
            train_dataloaders=train_dataloaders,
            val_dataloaders=val_dataloaders,
            **kwargs,
        )
        self.trainer_kwargs = dict(trainer_kwargs)

    def evaluate(self, model: nn.Module) -> Any:
        """Train and validate ``model`` as NNI's evaluator does, on a fresh ``Trainer`` after the first."""
        trainer = self.trainer
        if trainer.state.finished or trainer.fit_loop.epoch_progress.current.processed:
            self.trainer = Trainer(**self.trainer_kwargs)
        return super().evaluate(model)
