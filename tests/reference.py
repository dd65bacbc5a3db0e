"""Independent references the tests check our numbers against (no code shared with search_spaces.costs)."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


def _cpu_flash_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # torch 2.13 counts aten._scaled_dot_product_flash_attention_for_cpu as 0: count its two
    # matrix products (QK^T and AV) at 2 FLOPs per MAC, as torch does for the CUDA kernels.
    b, h, lq, d = query_shape
    lk, dv = key_shape[-2], value_shape[-1]
    return 2 * b * h * lq * lk * d + 2 * b * h * lq * lk * dv


CPU_ATTENTION_MAPPING = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash_attention_flops
}


def torch_counted_macs(model: torch.nn.Module, x: torch.Tensor) -> int:
    """MACs of conv, linear, matmul and attention as torch's FlopCounterMode counts them (FLOPs / 2)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_MAPPING) as counter:
        model(x)
    return counter.get_total_flops() // 2


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine parameters, as after training (fresh BNs hide folding errors)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)
