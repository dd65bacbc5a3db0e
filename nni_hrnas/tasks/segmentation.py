"""Semantic segmentation: cross-entropy (ignore 255) on logits upsampled to the label size, mIoU."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import nni
import torch
import torch.nn.functional as F

from .base import TaskModule
from .metrics import MeanIoU


@nni.trace
class SegmentationModule(TaskModule):
    """Model: (B, C, H, W) -> logits (B, num_classes, h, w) (any h, w: 1/4 for the HR-NAS head).

    Logits are upsampled bilinearly to the label size for the loss and for the prediction; the
    metric is the mIoU (``val_miou``) over the whole validation set. Defaults follow the official
    Cityscapes/ADE20K setting (AdamW, one-cycle schedule, weight decay 1e-5 without BN/bias).
    """

    metric_name = "miou"

    def __init__(
        self,
        num_classes: int,
        ignore_index: int = 255,
        optimizer: str = "adamw",
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        schedule: str = "onecycle",
        class_names: Sequence[str] | None = None,
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
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else None
        # merged across processes by gather_validation, not by torchmetrics (which would add it twice)
        self.val_miou = MeanIoU(num_classes, ignore_index, sync_on_compute=False)

    def _logits(self, x, size):
        logits = self.model(x)
        if logits.shape[1] != self.num_classes:
            raise ValueError(
                f"the model gives {logits.shape[1]} channels, the task has {self.num_classes} classes"
            )
        if logits.shape[-2:] != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self._logits(x, y.shape[-2:])
        loss = F.cross_entropy(logits, y, ignore_index=self.ignore_index)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self._logits(x, y.shape[-2:])
        self.log("val_loss", F.cross_entropy(logits, y, ignore_index=self.ignore_index), prog_bar=False)
        self.val_miou.update(logits.argmax(dim=1), y)

    def validation_state(self) -> Any:
        """This process's confusion matrix."""
        return self.val_miou.confmat.detach().cpu().clone()

    def merge_validation_states(self, states: list[Any]) -> None:
        """The confusion matrix of all processes: the sum of theirs."""
        self.val_miou.confmat.copy_(torch.stack(list(states)).sum(0).to(self.val_miou.confmat.device))

    def compute_metric(self) -> float:
        """mIoU over the classes present (per-class IoUs kept in ``per_class_iou``)."""
        value = float(self.val_miou.compute())
        per_class = self.val_miou.per_class().tolist()
        self.per_class_iou = per_class
        self.val_miou.reset()
        return value
