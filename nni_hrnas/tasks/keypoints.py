"""Top-down keypoint estimation: joints MSE on heatmaps with target weights, OKS AP, flip test."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import nni
import numpy as np
import torch

from ..data.keypoint_utils import COCO_FLIP_PAIRS, COCO_SIGMAS, final_predictions, flip_back
from .base import TaskModule
from .metrics import keypoint_results, oks_ap


def joints_mse_loss(
    pred: torch.Tensor, target: torch.Tensor, target_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """HRNet's JointsMSELoss: 0.5 * mean over joints of the MSE of (weighted) heatmaps."""
    b, k = pred.shape[:2]
    p = pred.reshape(b, k, -1)
    t = target.reshape(b, k, -1)
    if target_weight is not None:
        w = target_weight.reshape(b, k, 1)
        p, t = p * w, t * w
    return 0.5 * ((p - t) ** 2).mean()


def _unwrap_dataset(dl):
    if isinstance(dl, (list, tuple)):
        dl = dl[0]
    ds = getattr(dl, "dataset", None)
    while ds is not None and not hasattr(ds, "coco_gt") and hasattr(ds, "dataset"):
        ds = ds.dataset
    return ds


@nni.trace
class KeypointsModule(TaskModule):
    """Model: (B, C, H, W) -> heatmaps (B, K, H/4, W/4).

    Validation predicts with a flip test (the flipped input's heatmaps, flipped back with the
    joint pairs swapped and shifted one pixel as HRNet does, are averaged in), maps heatmap maxima
    back to image coordinates, rescores, applies OKS NMS and computes the OKS AP with pycocotools
    against the validation data set's ``coco_gt()`` (``val_ap``; AP50/AP75/AR reported too).
    Defaults follow the official COCO setting (Adam 1e-3, steps at epochs 170 and 200).
    """

    metric_name = "ap"

    def __init__(
        self,
        num_joints: int = 17,
        flip_test: bool = True,
        flip_pairs: Sequence[Sequence[int]] = COCO_FLIP_PAIRS,
        sigmas: Sequence[float] | None = None,
        shift_heatmap: bool = True,
        use_target_weight: bool = True,
        oks_nms_thresh: float | None = 0.9,
        optimizer: str = "adam",
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-8,
        schedule: str = "multistep",
        milestones: Sequence[float] = (170, 200),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            schedule=schedule,
            milestones=milestones,
            **kwargs,
        )
        self.num_joints = num_joints
        self.flip_test = flip_test
        self.flip_pairs = tuple(tuple(p) for p in flip_pairs)
        self.sigmas = np.asarray(COCO_SIGMAS if sigmas is None else sigmas, dtype=np.float64)
        if len(self.sigmas) != num_joints:
            raise ValueError(f"{len(self.sigmas)} OKS sigmas for {num_joints} joints")
        self.shift_heatmap = shift_heatmap
        self.use_target_weight = use_target_weight
        self.oks_nms_thresh = oks_nms_thresh
        self._outputs: list[dict] = []
        self.coco_gt = None  # set it to evaluate against another ground truth than the val data set's

    def _heatmaps(self, x):
        out = self.model(x)
        if out.shape[1] != self.num_joints:
            raise ValueError(
                f"the model gives {out.shape[1]} heatmaps, the task has {self.num_joints} joints"
            )
        return out

    def training_step(self, batch, batch_idx):
        x, target, weight, _ = batch
        loss = joints_mse_loss(self._heatmaps(x), target, weight if self.use_target_weight else None)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def on_validation_epoch_start(self):
        self._outputs = []

    def predict_heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """The model's heatmaps of ``x``, averaged with those of the flipped input under ``flip_test``."""
        out = self._heatmaps(x)
        if self.flip_test:
            flipped = flip_back(self._heatmaps(x.flip(-1)), self.flip_pairs)
            if self.shift_heatmap:
                flipped[..., 1:] = flipped[..., :-1].clone()
            out = (out + flipped) * 0.5
        return out

    def validation_step(self, batch, batch_idx):
        x, target, weight, meta = batch
        heat = self.predict_heatmaps(x)
        self.log("val_loss", joints_mse_loss(heat, target, weight), prog_bar=False)
        coords, maxvals = final_predictions(
            heat.float().cpu().numpy(), meta["center"].cpu().numpy(), meta["scale"].cpu().numpy()
        )
        self._outputs.append(
            dict(
                coords=coords,
                maxvals=maxvals,
                image_id=meta["image_id"].cpu().numpy(),
                score=meta["score"].cpu().numpy(),
                area=meta["area"].cpu().numpy(),
            )
        )

    def _ground_truth(self):
        if self.coco_gt is not None:
            return self.coco_gt
        ds = _unwrap_dataset(self.trainer.val_dataloaders)
        if ds is None or not hasattr(ds, "coco_gt"):
            raise RuntimeError(
                "KeypointsModule needs the validation data set to provide coco_gt() "
                "(or set module.coco_gt) to compute the OKS AP."
            )
        return ds.coco_gt()

    def validation_state(self) -> Any:
        """This process's predictions (one dict of arrays per batch)."""
        return list(self._outputs)

    def merge_validation_states(self, states: list[Any]) -> None:
        """The predictions of all processes, concatenated."""
        self._outputs = [o for part in states for o in part]

    def compute_metric(self) -> float:
        """COCO keypoint AP (OKS) of the predictions, after HRNet's rescoring and OKS NMS."""
        if not self._outputs:
            return 0.0
        cat = {k: np.concatenate([o[k] for o in self._outputs]) for k in self._outputs[0]}
        results = keypoint_results(
            cat["coords"],
            cat["maxvals"],
            cat["image_id"],
            cat["score"],
            cat["area"],
            sigmas=self.sigmas,
            nms_thresh=self.oks_nms_thresh,
        )
        stats = oks_ap(self._ground_truth(), results, sigmas=self.sigmas, image_ids=cat["image_id"])
        self.extra_metrics = {"ap50": stats["AP50"], "ap75": stats["AP75"], "ar": stats["AR"]}
        self._outputs = []
        return stats["AP"]
