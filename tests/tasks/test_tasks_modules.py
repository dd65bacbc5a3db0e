import nni
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from nni.common.serializer import is_traceable
from nni.nas.evaluator.pytorch import DataLoader, Lightning
from tasks_nets import TinyCls, TinySeg

from nni_hrnas.data import DataRootError
from nni_hrnas.data.keypoint_utils import COCO_FLIP_PAIRS, flip_back
from nni_hrnas.tasks import get_task, task_names
from nni_hrnas.tasks.base import lr_factor
from nni_hrnas.tasks.metrics import MeanIoU

SMALL = dict(sizes=(64, 32))


def trainer(**kw):
    return pl.Trainer(
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        accelerator="cpu",
        **kw,
    )


class Oracle(torch.nn.Module):
    """Returns the ground-truth heatmaps of the image it is given (looked up in a data set)."""

    def __init__(self, dataset):
        super().__init__()
        items = [dataset[i] for i in range(len(dataset))]
        self.images = torch.stack([it[0] for it in items]).flatten(1)
        self.heat = torch.stack([it[1] for it in items])
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        idx = torch.cdist(x.flatten(1), self.images).argmin(dim=1)
        return self.heat[idx] + 0 * self.dummy


def test_registry_names_and_errors(monkeypatch):
    assert task_names() == [
        "cityscapes",
        "ade20k",
        "coco_keypoints",
        "imagenet",
        "kitti",
        "kitti_sim",
        "digits_seg",
        "digits_cls",
        "digits_kp",
    ]
    for name in task_names():
        spec = get_task(name)
        assert spec.name == name == spec.default_preset
        assert spec.kind in ("segmentation", "keypoints", "classification", "detection")
        assert len(spec.train_input_size) == 3 and spec.num_outputs > 0
    assert get_task("digits_seg").train_input_size == (1, 64, 64) and get_task("digits_seg").num_outputs == 11
    assert get_task("coco_keypoints").train_input_size == (3, 256, 192)
    with pytest.raises(ValueError, match="digits_seg.*digits_kp|valid tasks"):
        get_task("mnist")
    monkeypatch.delenv("CITYSCAPES_ROOT", raising=False)
    with pytest.raises(DataRootError, match="CITYSCAPES_ROOT"):
        get_task("cityscapes").make_datasets(None)


def test_evaluator_is_traced_and_reports_to_nni(monkeypatch):
    reports = {"intermediate": [], "final": []}
    monkeypatch.setattr(nni, "get_current_parameter", lambda: {"lambda": 1.0})
    monkeypatch.setattr(nni, "report_intermediate_result", reports["intermediate"].append)
    monkeypatch.setattr(nni, "report_final_result", reports["final"].append)
    spec = get_task("digits_cls")
    ev = spec.make_evaluator(
        None, epochs=2, batch_size=16, dataset_kwargs=SMALL, cost_fn=lambda m: {"macs": 1234, "params": 99}
    )
    assert isinstance(ev, Lightning) and is_traceable(ev.trainer)
    assert isinstance(ev.train_dataloaders, DataLoader) and is_traceable(ev.train_dataloaders)
    assert is_traceable(ev.module)
    torch.manual_seed(0)
    ev.evaluate(TinyCls())
    assert len(reports["intermediate"]) == 2 and all(isinstance(v, float) for v in reports["intermediate"])
    final = reports["final"][-1]
    assert final["default"] == reports["intermediate"][-1] == final["top1"]
    assert final["macs"] == 1234 and final["params"] == 99 and "top5" in final
    assert ev.module.final_result == final


def test_smoke_mode_shrinks(monkeypatch):
    monkeypatch.setenv("HRNAS_SMOKE", "1")
    spec = get_task("digits_seg")
    ev = spec.make_evaluator(TinySeg(), epochs=50)
    assert ev.trainer.max_epochs == 1
    assert len(ev.train_dataloaders.dataset) <= 256
    ev.evaluate(TinySeg())
    res = ev.module.final_result
    assert set(res) >= {"default", "miou", "params"} and "macs" not in res
    assert res["params"] == sum(p.numel() for p in TinySeg().parameters())


def test_keypoints_oracle_gets_full_ap_on_digits():
    spec = get_task("digits_kp")
    _, val = spec.make_datasets(None, seed=0, **SMALL)
    module = spec.make_lightning_module(flip_test=False)
    module.set_model(Oracle(val))
    trainer().validate(module, DataLoader(val, batch_size=8))
    # 16x16 heatmaps limit an exact predictor to about 0.89 AP on the full validation set
    assert module.final_result["default"] > 0.8
    assert module.final_result["ap50"] == pytest.approx(1.0)


def test_keypoints_oracle_on_coco_layout(coco_root):
    spec = get_task("coco_keypoints")
    _, val = spec.make_datasets(str(coco_root), smoke=False)
    module = spec.make_lightning_module(flip_test=False)
    module.set_model(Oracle(val))
    trainer().validate(module, DataLoader(val, batch_size=2))
    # heatmap maxima mapped back through the crop transform land on the annotated joints
    assert module.final_result["default"] > 0.9


def test_flip_back_swaps_pairs():
    heat = torch.rand(2, 17, 8, 6)
    back = flip_back(heat.flip(-1), COCO_FLIP_PAIRS)
    perm = list(range(17))
    for a, b in COCO_FLIP_PAIRS:
        perm[a], perm[b] = b, a
    assert torch.equal(back, heat[:, perm])
    assert np.array_equal(flip_back(heat.numpy()[..., ::-1], COCO_FLIP_PAIRS), heat[:, perm].numpy())


class MirroredConvs(torch.nn.Module):
    """Mirror-symmetric by construction: joint ``b`` of a left/right pair is joint ``a``'s 3x3 filter
    mirrored, unpaired joints have mirror-symmetric filters ('same' padding, stride 1), so the heatmaps of
    a flipped image are the flipped heatmaps with the pairs swapped."""

    def __init__(self, pairs, joints=17, channels=3):
        super().__init__()
        w = torch.randn(joints, channels, 3, 3, generator=torch.Generator().manual_seed(0))
        paired = {j for pair in pairs for j in pair}
        for k in range(joints):
            if k not in paired:
                w[k] = (w[k] + w[k].flip(-1)) / 2
        for a, b in pairs:
            w[b] = w[a].flip(-1)
        self.weight = torch.nn.Parameter(w)

    def forward(self, x):
        return torch.nn.functional.conv2d(x, self.weight, padding=1)


class ShiftRight(torch.nn.Module):
    """Asymmetric: each heatmap is its input channel moved one pixel to the right (zeros enter on the left)."""

    def forward(self, x):
        return torch.nn.functional.pad(x, (1, 0))[..., :-1]


def test_flip_test_of_a_mirror_symmetric_network_is_its_plain_output():
    module = get_task("coco_keypoints").make_lightning_module(flip_test=True, shift_heatmap=False)
    net = MirroredConvs(COCO_FLIP_PAIRS)
    module.set_model(net)
    x = torch.randn(2, 3, 12, 10, generator=torch.Generator().manual_seed(1))
    plain = net(x)
    assert not torch.allclose(plain, plain.flip(-1), atol=1e-3)  # the heatmaps themselves are not symmetric
    with torch.no_grad():
        torch.testing.assert_close(module.predict_heatmaps(x), plain, rtol=1e-5, atol=1e-5)
    # HRNet's one-pixel shift of the flipped half: column j takes column j - 1, column 0 stays
    module.shift_heatmap = True
    shifted = plain.clone()
    shifted[..., 1:] = plain[..., :-1]
    with torch.no_grad():
        torch.testing.assert_close(module.predict_heatmaps(x), (plain + shifted) / 2, rtol=1e-5, atol=1e-5)


def test_flip_test_of_an_asymmetric_network_by_hand():
    """ShiftRight on one-hot inputs, W = 8. Left eye (joint 1) at (2, 3): plain output at (2, 4); the
    flipped input has it at column 4, the net moves it to 5, flipped back that is column 2 and joint 2
    (the right eye), HRNet's shift moves it to column 3. Nose (joint 0, unpaired) at (1, 5): plain (1, 6);
    flipped: column 2 -> 3 -> back 4 -> shifted 5."""
    module = get_task("coco_keypoints").make_lightning_module(flip_test=True)
    module.set_model(ShiftRight())
    x = torch.zeros(1, 17, 4, 8)
    x[0, 1, 2, 3] = 1.0
    x[0, 0, 1, 5] = 1.0
    expected = torch.zeros(1, 17, 4, 8)
    expected[0, 1, 2, 4] = expected[0, 2, 2, 3] = 0.5
    expected[0, 0, 1, 6] = expected[0, 0, 1, 5] = 0.5
    assert torch.equal(module.predict_heatmaps(x), expected)
    module.flip_test = False
    plain = torch.zeros(1, 17, 4, 8)
    plain[0, 1, 2, 4] = plain[0, 0, 1, 6] = 1.0
    assert torch.equal(module.predict_heatmaps(x), plain)


def test_segmentation_on_cityscapes_layout(cityscapes_root):
    spec = get_task("cityscapes")
    ev = spec.make_evaluator(
        TinySeg(3, 19, 8), root=str(cityscapes_root), smoke=True, batch_size=2, num_workers=0
    )
    ev.evaluate(TinySeg(3, 19, 8))
    assert 0.0 <= ev.module.final_result["default"] <= 1.0
    assert ev.trainer.max_epochs == 1


def test_schedules():
    assert lr_factor("cosine", 0, 10) == pytest.approx(1.0) and lr_factor("cosine", 10, 10) == pytest.approx(
        0.0
    )
    assert lr_factor("poly", 5, 10) == pytest.approx(0.5**0.9)
    assert lr_factor("multistep", 180, 210, milestones=(170, 200)) == pytest.approx(0.1)
    assert lr_factor("exp", 4.8, 350) == pytest.approx(0.97**2)
    assert lr_factor("cosine", 0.5, 10, warmup_epochs=1) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="schedule"):
        get_task("digits_seg").make_lightning_module(schedule="bogus")


@pytest.mark.slow
def test_short_digits_seg_training_improves_miou():
    pl.seed_everything(0, verbose=False)
    spec = get_task("digits_seg")
    ev = spec.make_evaluator(
        None,
        epochs=6,
        batch_size=8,
        dataset_kwargs=dict(sizes=(1000, 160)),
        module_kwargs=dict(learning_rate=2e-3),
    )
    ev.evaluate(TinySeg(1, 11, 16))
    history = ev.module.history
    assert len(history) == 6
    background = MeanIoU(11)
    labels = ev.val_dataloaders.dataset.labels
    background.update(torch.zeros_like(labels), labels)
    assert history[-1] > history[0] + 0.05, history
    assert history[-1] > 1.5 * float(background.compute()), (history, float(background.compute()))


def test_one_evaluator_trains_every_architecture_it_is_given():
    """NNI's sequential multi-trial engine reuses the evaluator: the second architecture must be
    trained as if it were the first (same result as a fresh evaluator), not skipped."""
    spec = get_task("digits_cls")

    def evaluator():
        return spec.make_evaluator(None, epochs=1, batch_size=16, dataset_kwargs=SMALL)

    def net(seed):
        torch.manual_seed(seed)
        return TinyCls()

    shared = evaluator()
    torch.manual_seed(0)
    shared.evaluate(net(1))
    first = shared.module.final_result
    torch.manual_seed(0)
    shared.evaluate(net(2))
    second = shared.module.final_result
    assert shared.trainer.global_step > 0 and shared.module.history == [second["default"]]
    fresh = evaluator()
    torch.manual_seed(0)
    fresh.evaluate(net(2))
    assert second["default"] == fresh.module.final_result["default"] != first["default"]
