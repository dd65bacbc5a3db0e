"""Fixtures that write small data sets in the real layouts (file names, label encodings, JSON fields
as the real data sets have them). Images encode their labels in the red channel so that tests
can check image/label alignment after loading."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Cityscapes label ids used in the fixtures and their train ids (cityscapesscripts' table)
CS_IDS = {7: 0, 8: 1, 26: 13, 11: 2, 0: 255, 1: 255}
CS_CODE = {i: 20 + 9 * k for k, i in enumerate(CS_IDS)}  # red value per label id


def block_label(h: int, w: int, ids, seed: int) -> np.ndarray:
    """A label map of 8x8-pixel blocks drawn from ``ids``."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice(list(ids), size=(h // 8, w // 8))
    return np.kron(blocks, np.ones((8, 8), dtype=np.int64)).astype(np.uint8)


def encode(label: np.ndarray, code: dict[int, int]) -> np.ndarray:
    lut = np.zeros(256, np.uint8)
    for k, v in code.items():
        lut[k] = v
    red = lut[label]
    return np.stack([red, np.full_like(red, 60), np.full_like(red, 90)], axis=-1)


@pytest.fixture
def cityscapes_root(tmp_path: Path) -> Path:
    root = tmp_path / "cityscapes"
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for c, city in enumerate(cities):
            for frame in range(2):
                stem = f"{city}_{c:06d}_{frame * 19 + 19:06d}"
                img_dir = root / "leftImg8bit" / split / city
                gt_dir = root / "gtFine" / split / city
                img_dir.mkdir(parents=True, exist_ok=True)
                gt_dir.mkdir(parents=True, exist_ok=True)
                label = block_label(64, 128, list(CS_IDS), seed=100 * c + 10 * frame + len(split))
                Image.fromarray(encode(label, CS_CODE)).save(img_dir / f"{stem}_leftImg8bit.png")
                Image.fromarray(label, mode="L").save(gt_dir / f"{stem}_gtFine_labelIds.png")
                # the other gtFine files of the real data set, which the loader must ignore
                Image.fromarray(encode(label, CS_CODE)).save(gt_dir / f"{stem}_gtFine_color.png")
                Image.fromarray(label.astype(np.uint16) * 1000).save(
                    gt_dir / f"{stem}_gtFine_instanceIds.png"
                )
                (gt_dir / f"{stem}_gtFine_polygons.json").write_text(
                    '{"imgHeight": 64, "imgWidth": 128, "objects": []}'
                )
    return root


ADE_IDS = (0, 1, 3, 13, 150)
ADE_CODE = {i: 10 + 40 * k for k, i in enumerate(ADE_IDS)}


@pytest.fixture
def ade20k_root(tmp_path: Path) -> Path:
    root = tmp_path / "ade"
    base = root / "ADEChallengeData2016"
    for split, prefix, n in (("training", "ADE_train", 3), ("validation", "ADE_val", 2)):
        (base / "images" / split).mkdir(parents=True)
        (base / "annotations" / split).mkdir(parents=True)
        for i in range(1, n + 1):
            label = block_label(48, 64, ADE_IDS, seed=i + 10 * len(split))
            Image.fromarray(encode(label, ADE_CODE)).save(
                base / "images" / split / f"{prefix}_{i:08d}.jpg", quality=98
            )
            Image.fromarray(label, mode="L").save(base / "annotations" / split / f"{prefix}_{i:08d}.png")
    (base / "objectInfo150.txt").write_text("Idx\tRatio\tTrain\tVal\tName\n1\t0.1576\t11664\t1172\twall\n")
    (base / "sceneCategories.txt").write_text("ADE_train_00000001 airport_terminal\n")
    return root


COCO_KP_NAMES = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
]
COCO_SKELETON = [
    [16, 14],
    [14, 12],
    [17, 15],
    [15, 13],
    [12, 13],
    [6, 12],
    [7, 13],
    [6, 7],
    [6, 8],
    [7, 9],
    [8, 10],
    [9, 11],
    [2, 3],
    [1, 2],
    [1, 3],
    [2, 4],
    [3, 5],
    [4, 6],
    [5, 7],
]


def joint_code(j: int) -> int:
    return 20 + 13 * j


def person_keypoints(x0: float, y0: float, w: float, h: float, rng) -> np.ndarray:
    """17 plausible joints inside a box (x, y, v)."""
    rel = np.array(
        [
            [0.5, 0.10],
            [0.42, 0.04],
            [0.58, 0.04],
            [0.36, 0.10],
            [0.64, 0.10],
            [0.3, 0.25],
            [0.7, 0.25],
            [0.25, 0.42],
            [0.75, 0.42],
            [0.22, 0.58],
            [0.78, 0.58],
            [0.38, 0.6],
            [0.62, 0.6],
            [0.38, 0.8],
            [0.62, 0.8],
            [0.38, 0.97],
            [0.62, 0.97],
        ]
    )
    pts = np.column_stack([x0 + rel[:, 0] * w, y0 + rel[:, 1] * h]) + rng.normal(0, 1.0, (17, 2))
    vis = np.full(17, 2.0)
    vis[3] = 0  # an unlabelled joint (x = y = v = 0 in COCO)
    vis[4] = 1  # a labelled but occluded joint
    pts[vis == 0] = 0
    return np.column_stack([np.round(pts), vis])


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    """COCO 2017 layout with person_keypoints_{train,val}2017.json and images whose joints are
    painted as 7x7 squares of a per-joint red value."""
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    rng = np.random.default_rng(0)
    ann_id = 1000
    for split, image_ids in (("train", (139, 285)), ("val", (397, 632))):
        (root / f"{split}2017").mkdir()
        images, anns = [], []
        for image_id in image_ids:
            height, width = 240, 320
            img = np.zeros((height, width, 3), np.uint8)
            img[..., 2] = 40
            boxes = [(30.0, 20.0, 100.0, 200.0), (170.0, 30.0, 90.0, 190.0)]
            for bx in boxes:
                kps = person_keypoints(*bx, rng)
                for j, (x, y, v) in enumerate(kps):
                    if v > 0:
                        xi, yi = int(x), int(y)
                        img[max(yi - 3, 0) : yi + 4, max(xi - 3, 0) : xi + 4, 0] = joint_code(j)
                ann_id += 1
                anns.append(
                    {
                        "segmentation": [[bx[0], bx[1], bx[0] + bx[2], bx[1], bx[0] + bx[2], bx[1] + bx[3]]],
                        "num_keypoints": int((kps[:, 2] > 0).sum()),
                        "area": bx[2] * bx[3] * 0.6,
                        "iscrowd": 0,
                        "keypoints": [float(v) for v in kps.reshape(-1)],
                        "image_id": image_id,
                        "bbox": list(bx),
                        "category_id": 1,
                        "id": ann_id,
                    }
                )
            # a crowd region and a person without keypoints: both skipped
            anns.append(
                {
                    "segmentation": {"counts": [0, 10], "size": [height, width]},
                    "num_keypoints": 0,
                    "area": 500.0,
                    "iscrowd": 1,
                    "keypoints": [0] * 51,
                    "image_id": image_id,
                    "bbox": [0.0, 0.0, 20.0, 25.0],
                    "category_id": 1,
                    "id": ann_id + 500,
                }
            )
            anns.append(
                {
                    "segmentation": [[5, 5, 15, 5, 15, 15]],
                    "num_keypoints": 0,
                    "area": 80.0,
                    "iscrowd": 0,
                    "keypoints": [0] * 51,
                    "image_id": image_id,
                    "bbox": [280.0, 200.0, 10.0, 12.0],
                    "category_id": 1,
                    "id": ann_id + 700,
                }
            )
            name = f"{image_id:012d}.jpg"
            Image.fromarray(img).save(root / f"{split}2017" / name, quality=100)
            images.append(
                {
                    "license": 3,
                    "file_name": name,
                    "coco_url": f"http://images.cocodataset.org/{split}2017/{name}",
                    "height": height,
                    "width": width,
                    "date_captured": "2013-11-14 17:02:52",
                    "flickr_url": "http://farm9.staticflickr.com/8186/8119368305_4e622c8349_z.jpg",
                    "id": image_id,
                }
            )
        data = {
            "info": {
                "description": "COCO 2017 Dataset",
                "url": "http://cocodataset.org",
                "version": "1.0",
                "year": 2017,
                "contributor": "COCO Consortium",
                "date_created": "2017/09/01",
            },
            "licenses": [
                {
                    "url": "http://creativecommons.org/licenses/by-nc-sa/2.0/",
                    "id": 3,
                    "name": "Attribution-NonCommercial-ShareAlike License",
                }
            ],
            "images": images,
            "annotations": anns,
            "categories": [
                {
                    "supercategory": "person",
                    "id": 1,
                    "name": "person",
                    "keypoints": COCO_KP_NAMES,
                    "skeleton": COCO_SKELETON,
                }
            ],
        }
        (root / "annotations" / f"person_keypoints_{split}2017.json").write_text(json.dumps(data))
    return root


IMAGENET_CLASSES = ("n01440764", "n01443537", "n01484850")
IMAGENET_COLORS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))


@pytest.fixture
def imagenet_root(tmp_path: Path) -> Path:
    root = tmp_path / "imagenet"
    val_no = 293
    for c, (wnid, color) in enumerate(zip(IMAGENET_CLASSES, IMAGENET_COLORS, strict=True)):
        for split in ("train", "val"):
            d = root / split / wnid
            d.mkdir(parents=True)
            for k in range(2):
                size = (120 + 10 * k, 90 + 20 * c)
                img = Image.new("RGB", size, color)
                if split == "train":
                    img.save(d / f"{wnid}_{10026 + k}.JPEG", quality=95)
                else:
                    img.save(d / f"ILSVRC2012_val_{val_no:08d}.JPEG", quality=95)
                    val_no += 1
    return root
