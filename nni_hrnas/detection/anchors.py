"""PointPillars' anchor head, read from a dense (B, A * 10, H, W) output: anchors, targets, losses, decoding.

Per anchor the channels are: a class logit (channels 0..A-1), 7 box residuals (A..8A-1), 2
direction logits (8A..10A-1). Box residuals follow SECOND: centre offsets over the anchor's
diagonal (z over its height), log size ratios, and an angle difference that the loss compares
through its sine (sin(p - t) = sin p cos t - cos p sin t), so a box turned by pi costs nothing
there; the direction bin tells the two apart. Anchors are matched to the ground truth by their
axis-aligned BEV IoU (boxes turned to the nearest of 0 and 90 degrees), as PointPillars does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from search_spaces.ops.pillars import MAPS_PER_ANCHOR as PER_ANCHOR
from search_spaces.ops.pillars import PillarSettings

BOX_CODE = 7


@dataclass(frozen=True)
class AnchorSettings:
    """One class's anchors (published car values) and the loss settings of PointPillars."""

    size: tuple[float, float, float] = (3.9, 1.6, 1.56)  # l, w, h
    z_centre: float = -1.0
    rotations: tuple[float, ...] = (0.0, math.pi / 2)
    positive_iou: float = 0.6
    negative_iou: float = 0.45
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    box_weight: float = 2.0
    direction_weight: float = 0.2
    smooth_l1_beta: float = 1.0 / 9.0

    @property
    def per_location(self) -> int:
        """Anchors per location: one per rotation."""
        return len(self.rotations)

    @property
    def num_outputs(self) -> int:
        """Output channels the head needs: class, 7 box residuals and 2 direction logits per anchor."""
        return self.per_location * PER_ANCHOR


def make_anchors(
    settings: AnchorSettings,
    pillars: PillarSettings,
    height: int,
    width: int,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """(H * W * A, 7) anchors at the centres of an H x W map over the pillar range (row-major, then rotation)."""
    x0, x1 = pillars.x_range
    y0, y1 = pillars.y_range
    xs = x0 + (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * (x1 - x0) / width
    ys = y0 + (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * (y1 - y0) / height
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    a = settings.per_location
    out = torch.zeros(height, width, a, BOX_CODE, device=device)
    out[..., 0] = xx[..., None]
    out[..., 1] = yy[..., None]
    out[..., 2] = settings.z_centre
    out[..., 3:6] = torch.tensor(settings.size, device=device)
    out[..., 6] = torch.tensor(settings.rotations, device=device)
    return out.reshape(-1, BOX_CODE)


def split_outputs(out: torch.Tensor, per_location: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(B, A*10, H, W) -> class logits (B, HWA), box residuals (B, HWA, 7), direction logits (B, HWA, 2),
    in the anchors' order."""
    b, c, h, w = out.shape
    a = per_location
    if c != a * PER_ANCHOR:
        raise ValueError(
            f"the network gives {c} output channels; {a} anchors per location need {a * PER_ANCHOR}"
        )
    out = out.permute(0, 2, 3, 1)  # B, H, W, C
    cls = out[..., :a].reshape(b, -1)
    box = out[..., a : a * 8].reshape(b, h, w, a, BOX_CODE).reshape(b, -1, BOX_CODE)
    direction = out[..., a * 8 :].reshape(b, h, w, a, 2).reshape(b, -1, 2)
    return cls, box, direction


def _nearest_bev(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4) axis-aligned x1, y1, x2, y2 of boxes turned to the nearest of 0 / 90 degrees."""
    turned = torch.abs(torch.remainder(boxes[:, 6] + math.pi / 2, math.pi) - math.pi / 2) > math.pi / 4
    length = torch.where(turned, boxes[:, 4], boxes[:, 3])
    width = torch.where(turned, boxes[:, 3], boxes[:, 4])
    return torch.stack(
        [
            boxes[:, 0] - length / 2,
            boxes[:, 1] - width / 2,
            boxes[:, 0] + length / 2,
            boxes[:, 1] + width / 2,
        ],
        1,
    )


def nearest_bev_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, M) IoU of the boxes turned axis-aligned (to the nearest of 0 / 90 degrees), as PointPillars
    matches anchors."""
    ra, rb = _nearest_bev(a), _nearest_bev(b)
    iw = (
        torch.minimum(ra[:, None, 2], rb[None, :, 2]) - torch.maximum(ra[:, None, 0], rb[None, :, 0])
    ).clamp(min=0)
    ih = (
        torch.minimum(ra[:, None, 3], rb[None, :, 3]) - torch.maximum(ra[:, None, 1], rb[None, :, 1])
    ).clamp(min=0)
    inter = iw * ih
    area_a = (ra[:, 2] - ra[:, 0]) * (ra[:, 3] - ra[:, 1])
    area_b = (rb[:, 2] - rb[:, 0]) * (rb[:, 3] - rb[:, 1])
    return inter / (area_a[:, None] + area_b[None] - inter).clamp(min=1e-9)


def encode(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """(N, 7) residuals of ``boxes`` against their ``anchors`` (SECOND's encoding: centre over the anchor's
    diagonal or height, log size ratios, angle difference); :func:`decode` inverts it."""
    diag = torch.sqrt(anchors[:, 3] ** 2 + anchors[:, 4] ** 2)
    return torch.stack(
        [
            (boxes[:, 0] - anchors[:, 0]) / diag,
            (boxes[:, 1] - anchors[:, 1]) / diag,
            (boxes[:, 2] - anchors[:, 2]) / anchors[:, 5],
            torch.log(boxes[:, 3] / anchors[:, 3]),
            torch.log(boxes[:, 4] / anchors[:, 4]),
            torch.log(boxes[:, 5] / anchors[:, 5]),
            boxes[:, 6] - anchors[:, 6],
        ],
        1,
    )


def decode(codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Boxes from the residuals ``codes`` of :func:`encode` (size ratios clamped at e^5)."""
    diag = torch.sqrt(anchors[..., 3] ** 2 + anchors[..., 4] ** 2)
    return torch.stack(
        [
            codes[..., 0] * diag + anchors[..., 0],
            codes[..., 1] * diag + anchors[..., 1],
            codes[..., 2] * anchors[..., 5] + anchors[..., 2],
            torch.exp(codes[..., 3].clamp(max=5)) * anchors[..., 3],
            torch.exp(codes[..., 4].clamp(max=5)) * anchors[..., 4],
            torch.exp(codes[..., 5].clamp(max=5)) * anchors[..., 5],
            codes[..., 6] + anchors[..., 6],
        ],
        -1,
    )


def direction_bin(yaw: torch.Tensor) -> torch.Tensor:
    """0 for headings in [0, pi), 1 for [pi, 2 pi) (mod 2 pi)."""
    return (torch.remainder(yaw, 2 * math.pi) >= math.pi).long()


def assign(
    anchors: torch.Tensor, gt: torch.Tensor, settings: AnchorSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels (K,) 1 positive / 0 negative / -1 ignored, and the matched ground truth (K, 7)."""
    labels = torch.zeros(len(anchors), dtype=torch.long, device=anchors.device)
    matched = torch.zeros(len(anchors), BOX_CODE, device=anchors.device)
    if len(gt) == 0:
        return labels, matched
    iou = nearest_bev_iou(anchors, gt)  # (K, G)
    best, which = iou.max(1)
    labels[(best >= settings.negative_iou)] = -1
    labels[best >= settings.positive_iou] = 1
    # every box gets its best anchor(s), however low the IoU
    top = iou.max(0).values
    forced = ((iou == top[None]) & (top[None] > 0)).nonzero()
    labels[forced[:, 0]] = 1
    which[forced[:, 0]] = forced[:, 1]
    matched = gt[which]
    return labels, matched


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float, gamma: float
) -> torch.Tensor:
    """The element-wise focal loss (Lin et al. 2017) of ``logits`` against 0/1 ``targets``, not reduced."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    a_t = alpha * targets + (1 - alpha) * (1 - targets)
    return a_t * (1 - p_t) ** gamma * ce


def detection_loss(
    out: torch.Tensor, gt_padded: torch.Tensor, settings: AnchorSettings, pillars: PillarSettings
) -> dict[str, torch.Tensor]:
    """Focal class loss, smooth-L1 box loss with the sine angle and direction cross-entropy, each
    normalised by the positive anchors; ``gt_padded`` is (B, G, 8) ``[valid, box]``."""
    cls, box, direction = split_outputs(out, settings.per_location)
    anchors = make_anchors(settings, pillars, out.shape[2], out.shape[3], out.device)
    labels, matched = zip(*(assign(anchors, g[g[:, 0] > 0, 1:], settings) for g in gt_padded), strict=True)
    labels, matched = torch.stack(labels), torch.stack(matched)
    pos = labels == 1
    num_pos = pos.sum().clamp(min=1).float()
    care = labels >= 0
    cls_loss = (
        sigmoid_focal_loss(cls, pos.float(), settings.focal_alpha, settings.focal_gamma) * care
    ).sum() / num_pos
    anchors_b = anchors[None].expand_as(matched)
    target = encode(matched[pos], anchors_b[pos])
    pred = box[pos]
    # the angle through its sine: sin(p - t) = sin p cos t - cos p sin t
    pred = torch.cat([pred[:, :6], (torch.sin(pred[:, 6]) * torch.cos(target[:, 6]))[:, None]], 1)
    target = torch.cat([target[:, :6], (torch.cos(box[pos][:, 6]) * torch.sin(target[:, 6]))[:, None]], 1)
    box_loss = F.smooth_l1_loss(pred, target, beta=settings.smooth_l1_beta, reduction="sum") / num_pos
    dir_loss = F.cross_entropy(direction[pos], direction_bin(matched[pos][:, 6]), reduction="sum") / num_pos
    total = cls_loss + settings.box_weight * box_loss + settings.direction_weight * dir_loss
    return {"loss": total, "cls": cls_loss.detach(), "box": box_loss.detach(), "dir": dir_loss.detach()}


@dataclass(frozen=True)
class DecodeSettings:
    """Post-processing: the best ``pre_nms`` anchors above ``score_threshold``, rotated BEV NMS at
    ``nms_iou``, at most ``max_detections`` per frame."""

    score_threshold: float = 0.05
    pre_nms: int = 200
    nms_iou: float = 0.1
    max_detections: int = 50


def decode_detections(
    out: torch.Tensor,
    settings: AnchorSettings,
    pillars: PillarSettings,
    post: DecodeSettings = DecodeSettings(),
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per frame: boxes (M, 7) and scores (M,), after NMS, headings set by the direction bin."""
    from .boxes import rotated_nms

    cls, box, direction = split_outputs(out.detach().float(), settings.per_location)
    anchors = make_anchors(settings, pillars, out.shape[2], out.shape[3], out.device)
    results = []
    for b in range(out.shape[0]):
        scores = torch.sigmoid(cls[b])
        k = min(post.pre_nms, len(scores))
        top_scores, idx = scores.topk(k)
        keep = top_scores >= post.score_threshold
        top_scores, idx = top_scores[keep], idx[keep]
        boxes = decode(box[b, idx], anchors[idx])
        # heading: the angle mod pi, turned by pi where the direction bin says so
        flip = direction[b, idx].argmax(-1).float()
        yaw = torch.remainder(boxes[:, 6], math.pi) + math.pi * flip
        boxes[:, 6] = torch.remainder(yaw + math.pi, 2 * math.pi) - math.pi
        if len(boxes):
            kept = torch.as_tensor(
                rotated_nms(
                    boxes.cpu().double().numpy(),
                    top_scores.cpu().double().numpy(),
                    post.nms_iou,
                    post.max_detections,
                ),
                device=boxes.device,
            )
            boxes, top_scores = boxes[kept], top_scores[kept]
        results.append((boxes, top_scores))
    return results
