"""Layer constructors that the ops build from.

The ops are plain PyTorch. A search space hands them another :class:`LayerFactory` whose
constructors accept NNI choices for widths (``MutableConv2d`` and friends), so the supernet and
every frozen network come from the same code. Only layers whose size depends on a searched
width go through the factory; everything else is plain ``torch.nn``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

#: A width: an ``int`` in a plain network, or a search-space choice in a model space.
Width = Any


def is_removed(width: Width) -> bool:
    """True if ``width`` is the integer 0, i.e. the path it sizes is absent from the network."""
    return isinstance(width, int) and width == 0


class TokenQueries(nn.Module):
    """The decoder's learnable queries S (n x s^2), one row per token.

    It is called with the identity matrix of size s^2 and returns S^T (s^2 x n). A plain network
    returns its parameter directly; a model space uses a linear layer on the identity instead,
    which NNI's one-shot strategies know how to slice (they have no mixed op for a bare parameter).
    """

    def __init__(self, num_tokens: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_tokens, dim))
        nn.init.normal_(self.weight, std=dim**-0.5)

    def forward(self, eye: torch.Tensor) -> torch.Tensor:
        return self.weight.t()


@dataclass(frozen=True)
class LayerFactory:
    """Constructors for the layers whose sizes are searched.

    ``conv2d`` and ``batchnorm2d`` take the ``torch.nn`` signatures; ``queries(num_tokens, dim)``
    returns a module mapping ``eye(dim)`` to the (dim, num_tokens) query matrix.
    """

    conv2d: Callable[..., nn.Module] = nn.Conv2d
    batchnorm2d: Callable[..., nn.Module] = nn.BatchNorm2d
    queries: Callable[[Width, int], nn.Module] = TokenQueries


#: Plain PyTorch layers: what every frozen (searched) network is built from.
TORCH_LAYERS = LayerFactory()
