import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from data_layouts import ade20k_root, cityscapes_root, coco_root, imagenet_root  # noqa: E402, F401
