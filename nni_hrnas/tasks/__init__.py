"""Tasks: Lightning modules usable as NNI evaluators, their metrics, and the task registry.

``get_task(name)`` gives a :class:`TaskSpec` for ``cityscapes, ade20k, coco_keypoints, imagenet,
kitti, kitti_sim, digits_seg, digits_cls, digits_kp``; its ``make_evaluator(...)`` builds the NNI
``Lightning`` evaluator around :class:`SegmentationModule`, :class:`KeypointsModule`,
:class:`ClassificationModule` or (3D detection) ``detection.DetectionModule``.
"""

from .classification import ClassificationModule
from .keypoints import KeypointsModule
from .registry import TASKS, SearchDefaults, TaskSpec, TrainingRecipe, get_task, task_names
from .segmentation import SegmentationModule

__all__ = [
    "TASKS",
    "ClassificationModule",
    "KeypointsModule",
    "SearchDefaults",
    "SegmentationModule",
    "TaskSpec",
    "TrainingRecipe",
    "get_task",
    "task_names",
]
