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
        self._pairs: tuple[int, list, list, list, list] | None = None

    def _tensor_pairs(self, model: nn.Module):
        """(EMA, live) tensors, floating point and other, cached while the live network is the same."""
        if self._pairs is None or self._pairs[0] != id(model):
            live = model.state_dict(keep_vars=False)
            ema_f, live_f, ema_o, live_o = [], [], [], []
            for name, value in self.model.state_dict().items():
                if value.dtype.is_floating_point:
                    ema_f.append(value)
                    live_f.append(live[name])
                else:
                    ema_o.append(value)
                    live_o.append(live[name])
            self._pairs = (id(model), ema_f, live_f, ema_o, live_o)
        return self._pairs[1:]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))
        ema_f, live_f, ema_o, live_o = self._tensor_pairs(model)
        torch._foreach_lerp_(ema_f, live_f, 1.0 - d)  # ema + (1 - d) (live - ema)
        for e, v in zip(ema_o, live_o, strict=True):
            e.copy_(v)

    def replace(self, model: nn.Module) -> None:
        """Swap in a rebuilt (smaller) EMA network."""
        model.requires_grad_(False)
        self.model = model
        self._pairs = None
