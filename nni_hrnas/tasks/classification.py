"""Classification: label-smoothed cross-entropy, top-1 / top-5 accuracy."""

from __future__ import annotations

from typing import Any

import nni
import torch
import torch.nn.functional as F

from .base import TaskModule


@nni.trace
class ClassificationModule(TaskModule):
    """Model: (B, C, H, W) -> logits (B, num_classes). Metric: top-1 (``val_top1``); top-5 is
    reported too. Defaults follow the official ImageNet setting (RMSprop, lr 0.016 per 256 images,
    exponential decay 0.97 every 2.4 epochs, label smoothing 0.1, weight decay 1e-5)."""

    metric_name = "top1"

    def __init__(
        self,
        num_classes: int,
        label_smoothing: float = 0.1,
        optimizer: str = "rmsprop",
        learning_rate: float = 0.016,
        weight_decay: float = 1e-5,
        schedule: str = "exp",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            schedule=schedule,
            **kwargs,
        )
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self._correct = torch.zeros(2, dtype=torch.long)
        self._seen = 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self):
        self._correct = torch.zeros(2, dtype=torch.long)
        self._seen = 0

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        self.log("val_loss", F.cross_entropy(logits, y), prog_bar=False)
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        hit = (top == y[:, None]).cpu()
        self._correct += torch.stack([hit[:, 0].sum(), hit.any(dim=1).sum()])
        self._seen += len(y)

    def validation_state(self) -> Any:
        """This process's (top-1, top-5) correct counts and the samples seen."""
        return self._correct.clone(), self._seen

    def merge_validation_states(self, states: list[Any]) -> None:
        """The counts of all processes: the sums of theirs."""
        self._correct = sum((c for c, _ in states), torch.zeros(2, dtype=torch.long))
        self._seen = sum(n for _, n in states)

    def compute_metric(self) -> float:
        """Top-1 accuracy (top-5 in ``extra_metrics``)."""
        seen = max(self._seen, 1)
        self.extra_metrics = {"top5": float(self._correct[1]) / seen}
        return float(self._correct[0]) / seen
