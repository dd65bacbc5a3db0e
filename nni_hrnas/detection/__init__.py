"""3D detection building blocks: oriented boxes and their IoUs, rotated NMS, KITTI AP."""

from .boxes import bev_iou, corners_3d, iou_3d, rotated_nms
from .kitti_eval import Annotations, Detections, kitti_ap

__all__ = ["Annotations", "Detections", "bev_iou", "corners_3d", "iou_3d", "kitti_ap", "rotated_nms"]
