"""Exponential moving average of a network's weights and BN statistics, used for evaluation."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """A copy of ``model`` whose floating-point state follows ``decay * ema + (1 - decay) * live``.

    As the official code (and timm), the effective decay warms up as ``min(decay, (1 + n) / (10 + n))``
    over the first updates ``n``.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        live = model.state_dict()
        for name, value in self.model.state_dict().items():
            source = live[name]
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source.detach(), alpha=1.0 - d)
            else:
                value.copy_(source)

    def replace(self, model: nn.Module) -> None:
        """Swap in a rebuilt (smaller) EMA network."""
        model.requires_grad_(False)
        self.model = model
