import numpy as np
import pytest
import torch
from data_layouts import ADE_CODE, CS_CODE, CS_IDS
from PIL import Image

from nni_hrnas.data import DataFormatError, DataRootError
from nni_hrnas.data.ade20k import ADE20K
from nni_hrnas.data.cityscapes import Cityscapes
from nni_hrnas.data.common import IMAGENET_MEAN, IMAGENET_STD
from nni_hrnas.data.segmentation import SegPipeline


def red_of(image: torch.Tensor) -> np.ndarray:
    """Undo the normalisation and return the red channel as 0..255."""
    r = image[0].numpy() * IMAGENET_STD[0] + IMAGENET_MEAN[0]
    return np.round(r * 255.0)


def expected_from_red(
    red: np.ndarray, code: dict[int, int], mapping: dict[int, int], tol: float
) -> np.ndarray:
    out = np.full(red.shape, -1, np.int64)
    for raw, value in code.items():
        out[np.abs(red - value) <= tol] = mapping[raw]
    return out


def test_cityscapes_layout_and_train_ids(cityscapes_root):
    train = Cityscapes(str(cityscapes_root), "train")
    val = Cityscapes(str(cityscapes_root), "val")
    assert len(train) == 4 and len(val) == 2
    assert all(
        p[0].name.endswith("_leftImg8bit.png") and p[1].name.endswith("_gtFine_labelIds.png")
        for p in train.pairs
    )
    for i in range(len(val)):
        image, label = val[i]
        assert image.shape == (3, 64, 128) and label.shape == (64, 128) and label.dtype == torch.int64
        expected = expected_from_red(red_of(image), CS_CODE, CS_IDS, tol=1)
        assert (expected >= 0).all()
        assert torch.equal(label, torch.from_numpy(expected))
    assert set(torch.unique(label).tolist()) <= {0, 1, 2, 13, 255}


def test_cityscapes_training_pipeline_keeps_alignment(cityscapes_root, monkeypatch):
    torch.manual_seed(0)
    pipe = SegPipeline(scale=(64, 128), crop=(48, 96), ratio_range=(0.5, 2.0), photometric=False)
    ds = Cityscapes(str(cityscapes_root), "train", pipeline=pipe)
    for i in range(8):
        image, label = ds[i % len(ds)]
        assert image.shape == (3, 48, 96) and label.shape == (48, 96)
        expected = expected_from_red(red_of(image), CS_CODE, CS_IDS, tol=1)
        valid = (expected >= 0) & (label.numpy() != 255) | ((expected == 255) & (label.numpy() == 255))
        known = expected >= 0
        # bilinear image vs nearest label: they may differ only on block borders
        agree = (expected[known] == label.numpy()[known]).mean()
        assert agree > 0.9, agree
        assert valid.any()
    # photometric distortion runs and keeps shapes
    ds.pipeline = SegPipeline(scale=(64, 128), crop=(48, 96))
    image, label = ds[0]
    assert image.shape == (3, 48, 96) and torch.isfinite(image).all()


def test_cityscapes_smaller_than_crop_is_padded_with_ignore(cityscapes_root):
    pipe = SegPipeline(scale=(64, 128), crop=(200, 300), ratio_range=(1.0, 1.0), photometric=False)
    image, label = Cityscapes(str(cityscapes_root), "train", pipeline=pipe)[0]
    assert image.shape == (3, 200, 300)
    assert (label[64:, :] == 255).all()
    # padded at the right, then maybe flipped
    assert (label[:, 128:] == 255).all() or (label[:, :172] == 255).all()
    assert (label[:64] != 255).any()


def test_ade20k_reduce_zero_label(ade20k_root):
    val = ADE20K(str(ade20k_root), "val", pipeline=SegPipeline(scale=(48, 64), crop=(48, 64)))
    assert len(val) == 2 and val.pairs[0][0].name == "ADE_val_00000001.jpg"
    mapping = {0: 255, 1: 0, 3: 2, 13: 12, 150: 149}
    for i in range(len(val)):
        image, label = val[i]
        expected = expected_from_red(red_of(image), ADE_CODE, mapping, tol=8)
        inner = np.zeros_like(expected, dtype=bool)
        # JPEG blurs block borders: compare block centres
        inner[2::8, 2::8] = inner[5::8, 5::8] = True
        assert (expected[inner] == label.numpy()[inner]).all()
    # the root may also be the ADEChallengeData2016 folder itself
    assert len(ADE20K(str(ade20k_root / "ADEChallengeData2016"), "train")) == 3
    image, label = ADE20K(str(ade20k_root), "train", smoke=True)[0]
    assert image.shape == (3, 128, 128) and label.shape == (128, 128)


def test_missing_root_names_env_var_and_source(monkeypatch, tmp_path):
    monkeypatch.delenv("CITYSCAPES_ROOT", raising=False)
    with pytest.raises(DataRootError, match="CITYSCAPES_ROOT") as err:
        Cityscapes(None)
    assert "cityscapes-dataset.com" in str(err.value)
    with pytest.raises(DataRootError, match="does not exist"):
        Cityscapes(str(tmp_path / "nowhere"))
    with pytest.raises(DataRootError, match="leftImg8bit"):
        Cityscapes(str(tmp_path))
    monkeypatch.setenv("ADE20K_ROOT", str(tmp_path))
    with pytest.raises(DataRootError, match="ADEChallengeData2016|images"):
        ADE20K()


def test_env_var_root(cityscapes_root, monkeypatch):
    monkeypatch.setenv("CITYSCAPES_ROOT", str(cityscapes_root))
    assert len(Cityscapes(split="val")) == 2


def test_unpaired_files_are_named(cityscapes_root, ade20k_root):
    city = cityscapes_root / "gtFine" / "val" / "frankfurt"
    label = next(city.glob("*_gtFine_labelIds.png"))
    label.rename(label.with_name("frankfurt_000000_999999_gtFine_labelIds.png"))
    with pytest.raises(DataFormatError) as err:
        Cityscapes(str(cityscapes_root), "val")
    msg = str(err.value)
    assert "have no label" in msg and "have no image" in msg and "frankfurt_000000_999999" in msg
    (ade20k_root / "ADEChallengeData2016" / "annotations" / "training" / "ADE_train_00000002.png").unlink()
    with pytest.raises(DataFormatError, match="ADE_train_00000002.jpg"):
        ADE20K(str(ade20k_root), "train")


def test_unknown_label_ids(cityscapes_root, ade20k_root):
    ds = Cityscapes(str(cityscapes_root), "val")
    bad = np.full((64, 128), 7, np.uint8)
    bad[0, 0] = 77
    Image.fromarray(bad, mode="L").save(ds.pairs[0][1])
    with pytest.raises(DataFormatError, match=r"\[77\]"):
        ds[0]
    skipping = Cityscapes(str(cityscapes_root), "val", on_error="skip")
    with pytest.warns(RuntimeWarning, match="Skipping sample 0"):
        image, label = skipping[0]
    assert torch.equal(label, skipping[1][1])  # the next usable sample, never a wrong label
    ade = ADE20K(str(ade20k_root), "val")
    Image.fromarray(np.full((48, 64), 151, np.uint8), mode="L").save(ade.pairs[1][1])
    with pytest.raises(DataFormatError, match="151"):
        ade[1]


def test_grayscale_rgba_and_truncated_images(cityscapes_root):
    ds = Cityscapes(str(cityscapes_root), "val")
    img_path = ds.pairs[0][0]
    rgb = np.asarray(Image.open(img_path))
    Image.fromarray(rgb[..., 0], mode="L").save(img_path)
    assert ds[0][0].shape == (3, 64, 128)
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba, mode="RGBA").save(img_path)
    image, _ = ds[0]
    assert image.shape == (3, 64, 128)
    assert np.allclose(red_of(image), rgb[..., 0], atol=1)
    data = img_path.read_bytes()
    img_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFormatError, match="truncated"):
        ds[0]
    skipping = Cityscapes(str(cityscapes_root), "val", on_error="skip")
    with pytest.warns(RuntimeWarning, match="leftImg8bit"):
        skipping[0]
    with pytest.raises(ValueError, match="on_error"):
        Cityscapes(str(cityscapes_root), "val", on_error="ignore")
