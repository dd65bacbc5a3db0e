import numpy as np
import torch

from nni_hrnas.data import digits


def test_digits_seg_deterministic_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path))
    a = digits.load_arrays("seg", seed=3, sizes=(40, 20))
    files = list(tmp_path.glob("digits_seg_*.npz"))
    assert len(files) == 1
    b = digits.load_arrays("seg", seed=3, sizes=(40, 20))  # from the cache
    files[0].unlink()
    c = digits.load_arrays("seg", seed=3, sizes=(40, 20))  # rebuilt
    for k in a:
        assert np.array_equal(a[k], b[k]) and np.array_equal(a[k], c[k])
    d = digits.load_arrays("seg", seed=4, sizes=(40, 20))
    assert not np.array_equal(a["train_x"], d["train_x"])
    x, y = a["train_x"], a["train_y"]
    assert x.shape == (40, 64, 64) and y.shape == (40, 64, 64) and x.dtype == np.uint8
    assert set(np.unique(y)) <= set(range(11)) | {255}
    # labelled digit pixels are ink; background is mostly dark, clutter makes some of it bright
    ink = (y >= 1) & (y <= 10)
    assert x[ink].mean() > 100 and x[y == 0].mean() < 40
    assert (x[y == 0] > 100).any()  # clutter strokes labelled background
    assert 0.6 < (y == 0).mean() < 0.95
    # several digits per canvas at varied sizes
    per_canvas = [len(set(np.unique(m)) - {0, 255}) for m in y]
    assert np.mean(per_canvas) >= 2


def test_digits_datasets_shapes(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path))
    train, val = digits.digits_seg(seed=0, sizes=(16, 8))
    image, label = train[0]
    assert image.shape == (1, 64, 64) and image.dtype == torch.float32 and label.shape == (64, 64)
    train, val = digits.digits_cls(seed=0, sizes=(16, 8))
    image, target = train[0]
    assert image.shape == (1, 32, 32) and 0 <= int(target) < 10 and len(val) == 8
    train, val = digits.digits_kp(seed=0, sizes=(16, 8))
    image, heat, weight, meta = val[0]
    assert image.shape == (1, 64, 64) and heat.shape == (4, 16, 16) and weight.shape == (4, 1)
    # the heatmap peaks sit on the keypoints, which sit on ink
    peaks = heat.reshape(4, -1).argmax(1)
    py, px = peaks // 16, peaks % 16
    kp = meta["joints"].numpy()
    assert np.abs(px.numpy() * 4 - kp[:, 0]).max() <= 2.5 and np.abs(py.numpy() * 4 - kp[:, 1]).max() <= 2.5
    raw = image[0].numpy() * digits.DIGITS_STD + digits.DIGITS_MEAN
    assert all(raw[int(round(y)), int(round(x))] > 0.2 for x, y in kp)
    gt = val.coco_gt()
    assert len(gt.getAnnIds()) == 8 and gt.loadCats(1)[0]["keypoints"] == ["top", "bottom", "left", "right"]


def test_validation_uses_unseen_digit_instances():
    train_idx, val_idx = digits._split_instances(0, 1797)
    assert len(set(train_idx) & set(val_idx)) == 0 and len(train_idx) + len(val_idx) == 1797
