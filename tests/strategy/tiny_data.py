"""A small deterministic segmentation set for the `tiny` preset, from scikit-learn's real digits.

Each 3x32x32 image holds one handwritten digit (8x8, upscaled x2 to 16x16) pasted at a seeded
position, with a colour tint that depends on the digit; labels per pixel: 0 background,
1 digit 0-4, 2 digit 5-9, 255 on the faint rim.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset


def tiny_digits(n: int, seed: int = 0, offset: int = 0) -> TensorDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    idx = (np.arange(n) * 7 + offset) % len(digits.images)
    x = np.zeros((n, 3, 32, 32), np.float32)
    y = np.zeros((n, 32, 32), np.int64)
    for j, i in enumerate(idx):
        img = np.kron(digits.images[i] / 16.0, np.ones((2, 2)))
        r, c = rng.integers(0, 17, size=2)
        d = int(digits.target[i])
        tint = np.array([1.0, 0.5 + 0.05 * d, 1.0 - 0.05 * d], np.float32)
        x[j, :, r : r + 16, c : c + 16] = tint[:, None, None] * img[None]
        lab = np.where(img > 0.35, 1 + (d >= 5), np.where(img > 0.1, 255, 0))
        y[j, r : r + 16, c : c + 16] = lab
    x += rng.normal(0, 0.05, x.shape).astype(np.float32)
    return TensorDataset(torch.from_numpy((x - 0.1) / 0.3), torch.from_numpy(y))


def tiny_evaluator(n_train: int = 128, n_val: int = 64, batch_size: int = 32, epochs: int = 2, **module_kw):
    """An NNI Lightning evaluator: the project's segmentation module (3 classes) on :func:`tiny_digits`."""
    from nni.nas.evaluator.pytorch import DataLoader, Lightning, Trainer

    from nni_hrnas.tasks.segmentation import SegmentationModule

    kw = dict(num_classes=3, optimizer="adamw", learning_rate=3e-3, weight_decay=1e-4, schedule="constant")
    kw.update(module_kw)
    module = SegmentationModule(**kw)
    train = DataLoader(tiny_digits(n_train, seed=1), batch_size=batch_size, shuffle=True, drop_last=True)
    val = DataLoader(tiny_digits(n_val, seed=2, offset=1000), batch_size=batch_size)
    trainer = Trainer(
        max_epochs=epochs,
        enable_progress_bar=False,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    return Lightning(module, trainer, train_dataloaders=train, val_dataloaders=val)
