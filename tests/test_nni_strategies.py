"""NNI 3.0's own strategies run unchanged on the HR-NAS space (with search_spaces/nni_patches.py applied)."""

import nni
import nni.nas.strategy as strategies
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from nni.nas.evaluator import FunctionalEvaluator
from nni.nas.evaluator.pytorch import DataLoader, Lightning, LightningModule, Trainer
from nni.nas.experiment import NasExperiment, NasExperimentConfig
from nni.nas.nn.pytorch import ModelSpace, MutableConv2d
from sklearn.datasets import load_digits

from search_spaces import HRNASNetwork, HRNASSpace


def digit_segmentation(n: int = 24) -> torch.utils.data.TensorDataset:
    """Real handwritten digits, upsampled to 32x32 RGB; label 1 for ink of digits 0-4, 2 for 5-9."""
    digits = load_digits()
    images = np.kron(digits.images[:n] / 16.0, np.ones((4, 4)))
    x = torch.tensor(images, dtype=torch.float32)[:, None].expand(-1, 3, -1, -1).contiguous()
    ink = torch.tensor(images > 0.3)
    y = torch.where(ink, torch.tensor(digits.target[:n] >= 5).long()[:, None, None] + 1, 0)
    return torch.utils.data.TensorDataset(x, y)


class Segmentation(LightningModule):
    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(F.interpolate(self.model(x), size=y.shape[-2:], mode="bilinear"), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        pixel_acc = (
            (F.interpolate(self.model(x), size=y.shape[-2:], mode="bilinear").argmax(1) == y).float().mean()
        )
        self.log("val_acc", pixel_acc)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def lightning_evaluator() -> Lightning:
    data = digit_segmentation()
    trainer = Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return Lightning(
        Segmentation(),
        trainer,
        train_dataloaders=DataLoader(data, batch_size=8),
        val_dataloaders=DataLoader(data, batch_size=8),
    )


def evaluate_trial(model: HRNASNetwork) -> None:
    data = digit_segmentation(8)
    model.eval()
    with torch.no_grad():
        x, y = data.tensors
        acc = (
            (F.interpolate(model(x), size=y.shape[-2:], mode="bilinear").argmax(1) == y).float().mean().item()
        )
    nni.report_final_result(acc - model.cost().macs / 1e8)


@pytest.mark.parametrize("name", ["Random", "RegularizedEvolution", "TPE"])
def test_multi_trial_strategies(name, free_port, tmp_path):
    space = HRNASSpace.from_preset("tiny")
    strategy = {
        "Random": lambda: strategies.Random(dedup=False),
        "RegularizedEvolution": lambda: strategies.RegularizedEvolution(population_size=2, sample_size=1),
        "TPE": lambda: strategies.TPE(),
    }[name]()
    config = NasExperimentConfig("sequential", "simplified")
    config.max_trial_number = 3
    config.experiment_working_directory = str(tmp_path)  # not the user's ~/nni-experiments
    experiment = NasExperiment(space, FunctionalEvaluator(evaluate_trial), strategy, config)
    try:
        experiment.run(port=free_port)
        top = experiment.export_top_models(top_k=2, formatter="dict")
    finally:
        experiment.stop()
    assert any(tmp_path.iterdir())  # the experiment's folder is the test's, not ~/nni-experiments
    assert len(top) == 2
    choices = space.choices()
    x = torch.randn(2, 3, 32, 32)
    for arch in top:
        assert set(arch) == set(choices) and all(arch[k] in choices[k] for k in arch)  # a sample of the space
        net = space.freeze(arch).eval()  # every exported architecture rebuilds as a plain, working network
        with torch.no_grad():
            out = net(x)
        assert out.shape == (2, 3, 8, 8) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["RandomOneShot", "DARTS", "GumbelDARTS"])
def test_one_shot_strategies(name, free_port, tmp_path):
    space = HRNASSpace.from_preset("tiny")
    strategy = getattr(strategies, name)()
    experiment = NasExperiment(space, lightning_evaluator(), strategy)
    experiment.config.experiment_working_directory = str(tmp_path)  # not the user's ~/nni-experiments
    try:
        experiment.run(port=free_port)
        arch = experiment.export_top_models(formatter="dict")[0]
    finally:
        experiment.stop()
    assert any(tmp_path.iterdir())  # the experiment's folder is the test's, not ~/nni-experiments
    assert set(arch) == set(space.choices())
    net = space.freeze(arch).eval()
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 3, 8, 8)


def test_compat_freeze_of_bias_free_mixed_conv():
    # NNI 3.0's MixedOperation.freeze loads {'bias': None} and fails for bias=False convs.
    class Space(ModelSpace):
        def __init__(self):
            super().__init__()
            self.conv = MutableConv2d(4, nni.choice("width", [2, 4]), 1, bias=False)

        def forward(self, x):
            return self.conv(x)

    supernet = strategies.RandomOneShot().mutate_model(Space())
    frozen = supernet.conv.freeze({"width": 2})
    assert frozen.bias is None and frozen.out_channels == 2
    assert torch.equal(frozen.weight, supernet.conv.weight[:2])


def test_one_shot_supernet_with_removed_paths_and_tokens():
    # Path sampling may draw width 0 (a removed kernel path or transformer): the supernet must
    # then compute exactly what the frozen network with those paths removed computes.
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

    space = HRNASSpace.from_preset("tiny")
    supernet = strategies.RandomOneShot().mutate_model(space)
    sample = {
        label: (0 if label.endswith(("_k5", "_tok")) else values[-1])
        for label, values in space.choices().items()
    }
    memo = dict(sample)
    for module in supernet.modules():
        if isinstance(module, BaseSuperNetModule):
            module.resample(memo)
    frozen = space.freeze(sample)
    loaded = frozen.load_state_dict(
        {
            k.removeprefix("network."): v
            for k, v in supernet.state_dict().items()
            if k.removeprefix("network.") in frozen.state_dict()
        },
        strict=False,
    )
    assert not loaded.missing_keys
    x = torch.randn(2, 3, 32, 32)
    supernet.eval(), frozen.eval()
    assert torch.allclose(supernet(x), frozen(x), atol=1e-5)
