"""Data sets: Cityscapes, ADE20K, COCO keypoints, ImageNet folders, and the embedded digits sets.

Roots come from the argument, else the environment variables ``CITYSCAPES_ROOT``, ``ADE20K_ROOT``,
``COCO_ROOT``, ``IMAGENET_ROOT``. Files that cannot be used (truncated images, unknown label ids)
raise :class:`DataFormatError` naming the file, or, with ``on_error='skip'``, are skipped with a
warning; a sample is never served with a wrong label.
"""

from .common import IGNORE_INDEX, DataFormatError, DataRootError, smoke_mode

__all__ = ["IGNORE_INDEX", "DataFormatError", "DataRootError", "smoke_mode"]
