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


def _moved_by_numpy(raw: np.ndarray, label: np.ndarray, dy: int, dx: int):
    """The reference: np.roll, then the band that wrapped round blanked (grey 0, background)."""
    image, moved = np.roll(raw, (dy, dx), (0, 1)).astype(np.float64), np.roll(label, (dy, dx), (0, 1))
    for axis, d in ((0, dy), (1, dx)):
        band = [slice(None), slice(None)]
        band[axis] = slice(0, d) if d > 0 else slice(d, None) if d < 0 else slice(0, 0)
        image[tuple(band)], moved[tuple(band)] = 0, 0
    return (image / 255 - digits.DIGITS_MEAN) / digits.DIGITS_STD, moved


def test_seg_training_canvases_move_with_their_labels_and_validation_stays(tmp_path, monkeypatch):
    monkeypatch.setenv("HRNAS_CACHE", str(tmp_path))
    train, val = digits.digits_seg(seed=0, sizes=(4, 4))
    a = digits.load_arrays("seg", seed=0, sizes=(4, 4))
    for i in range(4):
        image, label = val[i]
        assert np.array_equal(label.numpy(), a["val_y"][i])
        assert np.allclose(
            image[0].numpy(), _moved_by_numpy(a["val_x"][i], a["val_y"][i], 0, 0)[0], atol=1e-6
        )
    shift = digits.SEG_TRAIN_SHIFT
    references = {
        (dy, dx): _moved_by_numpy(a["train_x"][2], a["train_y"][2], dy, dx)
        for dy in range(-shift, shift + 1)
        for dx in range(-shift, shift + 1)
    }
    torch.manual_seed(0)
    offsets = []
    for _ in range(30):
        image, label = train[2]
        found = [
            offset
            for offset, (ref_image, ref_label) in references.items()
            if np.array_equal(label.numpy(), ref_label)
            and np.allclose(image[0].numpy(), ref_image, atol=1e-6)
        ]
        assert found, "a training item is no shift of its stored canvas within SEG_TRAIN_SHIFT"
        offsets.append(found[0])
    assert len(set(offsets)) > 10 and any(max(abs(dy), abs(dx)) > shift // 2 for dy, dx in offsets)
    torch.manual_seed(0)  # a seeded run draws the same offsets
    assert np.array_equal(train[2][1].numpy(), references[offsets[0]][1])
