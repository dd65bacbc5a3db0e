"""Fixtures writing small data sets in the real layouts (see data_layouts.py)."""

from data_layouts import ade20k_root, cityscapes_root, coco_root, imagenet_root  # noqa: F401
