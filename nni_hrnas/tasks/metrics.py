"""Metrics: mIoU (a torchmetrics confusion matrix), OKS AP (pycocotools), top-k accuracy."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torchmetrics
from numpy.typing import ArrayLike

from ..data.keypoint_utils import COCO_SIGMAS, oks_nms

if TYPE_CHECKING:
    from pycocotools.coco import COCO  # an optional extra: [coco]


class MeanIoU(torchmetrics.Metric):
    """Mean intersection over union from an accumulated confusion matrix.

    ``update(preds, target)`` takes logits (B, C, H, W) or labels (B, H, W) and targets (B, H, W);
    pixels whose target is ``ignore_index`` are left out. ``compute()`` averages the IoU over the
    classes that occur in the targets or predictions (as mmseg's nanmean), so a class absent from
    a small validation set does not count as 0.
    """

    full_state_update = False
    higher_is_better = True

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state(
            "confmat", default=torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum"
        )

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        if preds.dim() == target.dim() + 1:
            preds = preds.argmax(dim=1)
        keep = target != self.ignore_index
        t = target[keep].long()
        p = preds[keep].long()
        if t.numel() and (t.min() < 0 or t.max() >= self.num_classes):
            raise ValueError(
                f"target holds class ids outside [0, {self.num_classes}) other than "
                f"ignore_index={self.ignore_index}"
            )
        idx = t * self.num_classes + p
        self.confmat += torch.bincount(idx, minlength=self.num_classes**2).view(self.num_classes, -1)

    def per_class(self) -> torch.Tensor:
        """The IoU of each class (NaN for a class absent from both prediction and target)."""
        return iou_from_confusion(self.confmat)

    def compute(self) -> torch.Tensor:
        iou = self.per_class()
        return torch.nanmean(iou) if torch.isfinite(iou).any() else torch.tensor(0.0)


def iou_from_confusion(confmat: torch.Tensor) -> torch.Tensor:
    """Per-class IoU (NaN for classes absent from both targets and predictions)."""
    conf = confmat.double()
    tp = conf.diag()
    union = conf.sum(0) + conf.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def topk_accuracy(logits: torch.Tensor, target: torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Share of samples whose target is among the k highest logits, for each k."""
    maxk = min(max(ks), logits.shape[1])
    top = logits.topk(maxk, dim=1).indices
    hit = top == target[:, None]
    return {k: hit[:, : min(k, maxk)].any(dim=1).float().mean().item() for k in ks}


OKS_STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def oks_ap(
    coco_gt: COCO,
    results: list[dict],
    sigmas: np.ndarray | None = None,
    image_ids: Sequence[int] | None = None,
) -> dict[str, float]:
    """COCO keypoint AP (OKS) of ``results`` (COCO results format: image_id, category_id,
    keypoints [x, y, score] * K, score) against the pycocotools ``coco_gt``.

    ``sigmas`` default to COCO's 17 per-joint sigmas. ``image_ids`` restricts the evaluation (e.g. to
    the images seen in a partial validation). No results give AP 0.
    """
    from pycocotools.cocoeval import COCOeval

    if not results:
        return dict.fromkeys(OKS_STAT_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(list(results))
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.useSegm = None
        if sigmas is not None:
            ev.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        if image_ids is not None:
            ev.params.imgIds = sorted(set(int(i) for i in image_ids))
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(max(v, 0.0)) for name, v in zip(OKS_STAT_NAMES, ev.stats, strict=False)}


def keypoint_results(
    coords: np.ndarray,
    maxvals: np.ndarray,
    image_ids: ArrayLike,
    box_scores: ArrayLike,
    areas: ArrayLike,
    sigmas: np.ndarray = COCO_SIGMAS,
    in_vis_thresh: float = 0.2,
    nms_thresh: float | None = 0.9,
    category_id: int = 1,
) -> list[dict]:
    """HRNet's post-processing: rescore (box score x mean confident joint score), OKS NMS per image,
    and the COCO results format."""
    coords = np.asarray(coords, dtype=np.float64)
    maxvals = np.asarray(maxvals, dtype=np.float64)
    conf = maxvals > in_vis_thresh
    mean_conf = np.where(
        conf.any(axis=1), (maxvals * conf).sum(axis=1) / np.maximum(conf.sum(axis=1), 1), 0.0
    )
    scores = mean_conf * np.asarray(box_scores, dtype=np.float64)
    image_ids = np.asarray(image_ids).astype(np.int64)
    areas = np.asarray(areas, dtype=np.float64)
    poses = np.concatenate([coords, maxvals[..., None]], axis=-1)  # (N, K, 3)
    out = []
    for img in np.unique(image_ids):
        idx = np.nonzero(image_ids == img)[0]
        keep = idx
        if nms_thresh is not None and len(idx) > 1:
            keep = idx[oks_nms(poses[idx], scores[idx], areas[idx], np.asarray(sigmas), nms_thresh)]
        for i in keep:
            out.append(
                dict(
                    image_id=int(img),
                    category_id=category_id,
                    keypoints=[float(v) for v in poses[i].reshape(-1)],
                    score=float(scores[i]),
                )
            )
    return out
