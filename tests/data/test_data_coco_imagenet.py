import json

import numpy as np
import pytest
import torch
from data_layouts import COCO_KP_NAMES, IMAGENET_CLASSES, IMAGENET_COLORS, joint_code

from nni_hrnas.data import DataFormatError, DataRootError
from nni_hrnas.data.coco_keypoints import COCOKeypoints
from nni_hrnas.data.common import IMAGENET_MEAN, IMAGENET_STD
from nni_hrnas.data.imagenet import ImageNet
from nni_hrnas.data.keypoint_utils import COCO_FLIP_PAIRS, heatmap_maxima


def rgb_of(image: torch.Tensor) -> np.ndarray:
    x = image.numpy() * IMAGENET_STD[:, None, None] + IMAGENET_MEAN[:, None, None]
    return np.round(x * 255.0)


def joint_colours(image, joints, weight):
    """Red value of the crop at each (visible, inside) transformed joint."""
    red = rgb_of(image)[0]
    h, w = red.shape
    out = {}
    for j, (x, y) in enumerate(joints.numpy()):
        xi, yi = int(round(x)), int(round(y))
        if weight[j] > 0 and 1 <= xi < w - 1 and 1 <= yi < h - 1:
            out[j] = red[yi, xi]
    return out


def test_coco_val_crops_align_with_joints(coco_root):
    ds = COCOKeypoints(str(coco_root), "val")
    assert len(COCO_KP_NAMES) == 17
    assert len(ds) == 4  # 2 people x 2 images; crowd and keypoint-less people skipped
    for i in range(len(ds)):
        image, heat, weight, meta = ds[i]
        assert image.shape == (3, 256, 192) and heat.shape == (17, 64, 48) and weight.shape == (17, 1)
        assert weight[3] == 0 and weight[4] == 1  # v=0 is unlabelled, v=1 (occluded) still trains
        colours = joint_colours(image, meta["joints"], weight[:, 0])
        assert len(colours) >= 12
        for j, red in colours.items():
            assert abs(red - joint_code(j)) <= 6, (i, j, red)
        coords, _ = heatmap_maxima(heat[None].numpy())
        ok = weight[:, 0].numpy() > 0
        assert np.abs(coords[0][ok] * 4 - meta["joints"].numpy()[ok]).max() <= 4.0
    assert ds.coco_gt().getImgIds() == [397, 632]


def test_coco_train_augmentation_flips_pairs(coco_root):
    torch.manual_seed(3)
    ds = COCOKeypoints(str(coco_root), "train", image_size=(288, 384))
    perm = list(range(17))
    for a, b in COCO_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    seen_flip = seen_plain = 0
    for k in range(16):
        image, heat, weight, meta = ds[k % len(ds)]
        assert image.shape == (3, 384, 288) and heat.shape == (17, 96, 72)
        colours = joint_colours(image, meta["joints"], weight[:, 0])
        if len(colours) < 4:
            continue
        plain = all(abs(r - joint_code(j)) <= 8 for j, r in colours.items())
        flipped = all(abs(r - joint_code(perm[j])) <= 8 for j, r in colours.items())
        assert plain or flipped, colours
        seen_plain += plain and not flipped
        seen_flip += flipped and not plain
    assert seen_flip and seen_plain


def test_coco_detection_results(coco_root, tmp_path):
    dets = [
        {"image_id": 397, "category_id": 1, "bbox": [30.0, 20.0, 100.0, 200.0], "score": 0.9},
        {"image_id": 397, "category_id": 1, "bbox": [5.0, 5.0, 10.0, 10.0], "score": 0.01},
        {"image_id": 632, "category_id": 3, "bbox": [1.0, 1.0, 10.0, 10.0], "score": 0.99},
        {"image_id": 632, "category_id": 1, "bbox": [170.0, 30.0, 90.0, 190.0], "score": 0.8},
    ]
    path = tmp_path / "COCO_val2017_detections_AP_H_56_person.json"
    path.write_text(json.dumps(dets))
    ds = COCOKeypoints(str(coco_root), "val", detections=str(path), det_score_thresh=0.05)
    assert len(ds) == 2
    _, heat, weight, meta = ds[0]
    assert float(meta["score"]) == pytest.approx(0.9) and weight.sum() == 0
    path.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 1.0}]))
    with pytest.raises(DataFormatError, match="image ids"):
        COCOKeypoints(str(coco_root), "val", detections=str(path))
    path.write_text(json.dumps([{"image_id": 397, "bbox": [0, 0, 5, 5]}]))
    with pytest.raises(DataFormatError, match="category_id"):
        COCOKeypoints(str(coco_root), "val", detections=str(path))


def test_coco_bad_input(coco_root, monkeypatch, tmp_path):
    monkeypatch.delenv("COCO_ROOT", raising=False)
    with pytest.raises(DataRootError, match="COCO_ROOT"):
        COCOKeypoints(None)
    with pytest.raises(DataRootError, match="person_keypoints_val2017.json"):
        COCOKeypoints(str(tmp_path), "val")
    missing = coco_root / "val2017" / "000000000632.jpg"
    missing.unlink()
    with pytest.raises(DataFormatError, match="000000000632.jpg"):
        COCOKeypoints(str(coco_root), "val")
    with pytest.warns(RuntimeWarning, match="missing"):
        ds = COCOKeypoints(str(coco_root), "val", on_error="skip")
    assert len(ds) == 2
    # a truncated image fails loudly, naming it
    img = coco_root / "val2017" / "000000000397.jpg"
    img.write_bytes(img.read_bytes()[:200])
    ds.on_error = "raise"
    with pytest.raises(DataFormatError, match="000000000397.jpg"):
        ds[0]


def test_imagenet_folders(imagenet_root):
    train = ImageNet(str(imagenet_root), "train", size=64)
    val = ImageNet(str(imagenet_root), "val", size=64)
    assert train.classes == list(IMAGENET_CLASSES) and len(train) == 6 and len(val) == 6
    assert val.samples[0][0].name == "ILSVRC2012_val_00000293.JPEG"
    for ds in (train, val):
        for i in range(len(ds)):
            image, target = ds[i]
            assert image.shape == (3, 64, 64) and target.dtype == torch.long
            mean_rgb = rgb_of(image).reshape(3, -1).mean(axis=1)
            assert np.abs(mean_rgb - np.array(IMAGENET_COLORS[int(target)])).max() < 8


def test_imagenet_bad_layouts(imagenet_root, monkeypatch):
    monkeypatch.delenv("IMAGENET_ROOT", raising=False)
    with pytest.raises(DataRootError, match="IMAGENET_ROOT"):
        ImageNet(None)
    loose = imagenet_root / "val" / "ILSVRC2012_val_00000001.JPEG"
    loose.write_bytes((imagenet_root / "val" / IMAGENET_CLASSES[0]).glob("*.JPEG").__next__().read_bytes())
    with pytest.raises(DataFormatError, match="ILSVRC2012_val_00000001.JPEG"):
        ImageNet(str(imagenet_root), "val")
    loose.unlink()
    (imagenet_root / "train" / "n09999999").mkdir()
    with pytest.raises(DataFormatError, match="n09999999"):
        ImageNet(str(imagenet_root), "train")
