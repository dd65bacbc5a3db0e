"""3D car detection (PointPillars head): focal + smooth-L1 + direction losses, KITTI AP as the metric."""

from __future__ import annotations

import dataclasses
from typing import Any

import nni
import numpy as np

from search_spaces.ops.pillars import PillarSettings

from ..detection.anchors import AnchorSettings, DecodeSettings, decode_detections, detection_loss
from ..detection.kitti_eval import Detections, kitti_ap
from .base import TaskModule


def _settings(cls, value):
    if value is None:
        return cls()
    return cls(**value) if isinstance(value, dict) else value


@nni.trace
class DetectionModule(TaskModule):
    """Model: packed pillars (B, P, K) -> anchor outputs (B, A * 10, H, W) over the pillar range.

    Validation decodes the detections (NMS in BEV), projects them into the image with each
    frame's calibration (2D boxes for the difficulty and DontCare rules) and computes the KITTI
    AP for cars against the validation set's labels: ``val_ap3d_moderate`` (R40) is the metric;
    BEV and 3D AP at every difficulty, R40 and R11, are reported too. The frames' labels and
    calibrations come from ``val_frames`` (the validation data set: ``annotations(i)`` and
    ``calibration(i)``), which the task registry sets.
    """

    metric_name = "ap3d_moderate"

    def __init__(
        self,
        pillars: PillarSettings | dict | None = None,
        anchors: AnchorSettings | dict | None = None,
        post: DecodeSettings | dict | None = None,
        optimizer: str = "adamw",
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-2,
        schedule: str = "onecycle",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            optimizer=optimizer,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            schedule=schedule,
            **kwargs,
        )
        self.pillars = _settings(PillarSettings, pillars)
        self.anchors = _settings(AnchorSettings, anchors)
        self.post = _settings(DecodeSettings, post)
        self.val_frames: Any = None
        self._outputs: list[tuple[int, np.ndarray, np.ndarray]] = []

    def training_step(self, batch, batch_idx):
        packed, gt, _ = batch
        losses = detection_loss(self.model(packed), gt, self.anchors, self.pillars)
        self.log("train_loss", losses["loss"], prog_bar=True)
        return losses["loss"]

    def on_validation_epoch_start(self):
        self._outputs = []

    def validation_step(self, batch, batch_idx):
        packed, gt, index = batch
        out = self.model(packed)
        self.log("val_loss", detection_loss(out, gt, self.anchors, self.pillars)["loss"])
        for i, (boxes, scores) in zip(
            index.tolist(), decode_detections(out, self.anchors, self.pillars, self.post), strict=True
        ):
            self._outputs.append((int(i), boxes.cpu().double().numpy(), scores.cpu().double().numpy()))

    def validation_state(self) -> Any:
        """This process's detections (frame index, boxes, scores) per frame."""
        return list(self._outputs)

    def merge_validation_states(self, states: list[Any]) -> None:
        """The detections of all processes, concatenated."""
        self._outputs = [o for part in states for o in part]

    def evaluate_outputs(self, outputs: list[Any]) -> dict[str, float]:
        """KITTI AP of ``[(frame index, boxes, scores)]`` against ``val_frames``."""
        if self.val_frames is None:
            raise RuntimeError(
                "DetectionModule needs val_frames (the validation data set) to compute the KITTI AP"
            )
        gts, dets = [], []
        for index, boxes, scores in sorted(outputs, key=lambda o: o[0]):
            calib = self.val_frames.calibration(index)
            gts.append(self.val_frames.annotations(index))
            image_size = getattr(self.val_frames, "image_size", None)
            bbox = calib.boxes_to_image(boxes, image_size) if image_size else calib.boxes_to_image(boxes)
            dets.append(Detections(boxes, scores, bbox))
        ap = kitti_ap(gts, dets)
        return {k: (0.0 if np.isnan(v) else v) for k, v in ap.items()}

    def compute_metric(self) -> float:
        """Moderate 3D AP (R40) for cars, the other APs in ``extra_metrics``."""
        if not self._outputs:
            return 0.0
        ap = self.evaluate_outputs(self._outputs)
        self.extra_metrics = {
            "ap_bev_moderate": ap["bev_moderate_R40"],
            "ap3d_easy": ap["3d_easy_R40"],
            "ap3d_hard": ap["3d_hard_R40"],
            "ap_bev_easy": ap["bev_easy_R40"],
            "ap_bev_hard": ap["bev_hard_R40"],
            "ap3d_moderate_r11": ap["3d_moderate_R11"],
            "ap_bev_moderate_r11": ap["bev_moderate_R11"],
        }
        self._outputs = []
        return ap["3d_moderate_R40"]

    def settings_dict(self) -> dict[str, Any]:
        """The pillar, anchor and decoding settings as plain dicts."""
        return {
            "pillars": dataclasses.asdict(self.pillars),
            "anchors": dataclasses.asdict(self.anchors),
            "post": dataclasses.asdict(self.post),
        }
